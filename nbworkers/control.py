"""Steering defined workers and crons while they run: pausing and resuming, concurrency and
rate, running a cron now, stopping a run going on, removing a name. Public as ``nw.pause``...
(``api`` re-exports them), on the shared runtime.
"""

from __future__ import annotations

from .current import runtime


def run_now(name: str) -> str:
    """Run cron ``name`` once now, leaving its next scheduled time where it was."""
    return runtime().run_now(name)


def next_run(name: str):
    """When cron ``name`` runs next, as a timezone-aware datetime; None while paused."""
    return runtime().next_run(name)


def pause(name: str) -> None:
    """Start no more runs of worker or cron ``name`` until ``resume``; kept across restarts."""
    runtime().pause(name)


def resume(name: str) -> None:
    """Lift the pause of ``name``."""
    runtime().resume(name)


def is_paused(name: str) -> bool:
    return runtime().is_paused(name)


def pause_reason(name: str) -> str | None:
    """Why ``name`` is paused: the storm guard's reason, or that you paused it; None if not."""
    return runtime().pause_reason(name)


def set_concurrency(name: str, concurrency: int) -> None:
    """Change how many runs of ``name`` may go at once, effective immediately."""
    runtime().set_concurrency(name, concurrency)


def set_rate(name: str, rate: str | None) -> None:
    """Let at most ``rate`` runs of worker ``name`` start in any window of a second, minute or
    hour (``"5/s"``, ``"300/m"``, ``"20/h"``) from now on; None lifts the limit. It holds until
    the worker's cell (or decorator) runs again, which sets its own ``--rate``."""
    runtime().set_rate(name, rate)


def stop(message_id: str, retry: bool = True, attempt: int | None = None) -> bool:
    """Stop the run of ``message_id`` (``"m12"``) going on now; True once asked.

    ``--executor processes``: its pool process is killed; ``dask``: its task is cancelled;
    ``threads``: ``nw.RunStopped`` is raised in the handler at its next Python bytecode (not
    inside ``time.sleep`` or C code: a handler can check ``message.stopping`` there). The run
    is a failed attempt whose error starts with "Stopped": ``retry=True`` lets the worker's
    ``--retries`` apply, ``retry=False`` makes it a dead letter at once. False if that
    message is not running (it ended, or there is no such message); a queued message raises
    ``NBWorkersError`` (``nw.cancel`` removes it). Called again once its run has ended, it
    stops the next attempt (a retry) if one runs; ``attempt=n`` stops only attempt ``n``
    (``message.attempt``), returning False if another runs now.
    """
    return runtime().stop_run(message_id, retry, attempt)


def remove(name: str, purge: bool = False) -> int:
    """Undefine worker or cron ``name``: no new run starts, a cron's schedule is dropped,
    runs going finish normally. Its queued messages stay, unhandled (``nw.unhandled()``),
    until ``name`` is defined again; ``purge=True`` drops them (as ``nw.purge``) and returns
    how many."""
    return runtime().remove(name, purge)
