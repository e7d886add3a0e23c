"""The public functions: ``emit``, ``worker``, ``pause``, ``traces``... on one shared runtime.

The runtime starts on first use, on the file the configuration names, so loading the
extension in a kernel that never uses it creates no file (``current.py`` keeps it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from . import current, handlers, schedule

# Steering defined workers and crons (control.py): nw.pause, nw.stop, nw.remove...
from .control import is_paused as is_paused
from .control import next_run as next_run
from .control import pause as pause
from .control import pause_reason as pause_reason
from .control import remove as remove
from .control import resume as resume
from .control import run_now as run_now
from .control import set_concurrency as set_concurrency
from .control import set_rate as set_rate
from .control import stop as stop

# The runtime of this process (current.py), reached as api.runtime(), api.shutdown()...
from .current import config as config
from .current import on_start as on_start
from .current import reopen as reopen
from .current import running as running
from .current import runtime as runtime
from .current import shutdown as shutdown
from .current import stop_for_exit as stop_for_exit
from .current import stopping as stopping
from .current import use_config as use_config
from .develop.live import live as live
from .develop.tryout import apply as apply
from .develop.tryout import try_code as try_code
from .engine import check_events
from .engine.failures import Failure
from .engine.policy import Policy
from .errors import ArgumentTypeError, ArgumentValueError
from .executors import child
from .trace import Trace


def emit(
    event,
    name: str,
    *,
    key: str | None = None,
    delay: float | None = None,
    at=None,
    priority: int = 0,
    ttl: float | None = None,
) -> str:
    """Queue ``event`` for the worker ``name`` and return the message id at once (``"m12"``:
    messages and traces, ``"t13"``, share one numbering, so a worker's ids have gaps).

    The value is snapshotted (pickled) now: later changes to it do not reach the worker.
    It is on disk within a few milliseconds, and always before the emitting cell finishes.

    ``key="..."``: if a message with this key is queued or running for ``name``, enqueue
    nothing and return that message's id. ``delay=seconds`` or ``at=datetime`` (naive: local
    time, or ``NBWorkers.timezone`` when set): the message waits until then (it counts as
    queued meanwhile). ``priority``: a whole number from -1000 to 1000 (default 0); among
    the worker's ready messages, higher runs first, first in first out within one.
    ``ttl=seconds``: if it is still queued that long after now, it does not run and becomes
    a dead letter with reason "expired" (default: the worker's ``--ttl``, if any).
    """
    if child.active:  # this process runs handlers for a kernel: a pool process or Dask
        remote = child.emitter()
        if remote is not None:
            return remote.emit(event, name, key=key, delay=delay, at=at, priority=priority, ttl=ttl)
    return current.emitting().emit(
        event, name, key=key, delay=delay, at=at, priority=priority, ttl=ttl
    )


def emit_many(
    events: Iterable,
    name: str,
    *,
    priority: int = 0,
    ttl: float | None = None,
    then: str | None = None,
) -> list[str]:
    """Queue every event (all or nothing) for ``name``; returns their message ids.
    ``priority`` and ``ttl`` apply to each, as for ``emit``.

    ``then="tally"``: once every one of these messages has ended (done, or a dead letter),
    worker ``tally`` receives one event ``{"results": [...], "errors": [...], "ids": [...]}``
    in this order (a failed one's result is None, a done one's error is None). Exactly once,
    across restarts. With no events, that event is emitted at once, with empty lists."""
    options = {"priority": priority, "ttl": ttl}
    if then is not None:
        options["then"] = then
    remote = child.emitter()
    if remote is not None:
        return remote.emit_many(list(check_events(events)), name, **options)
    return current.emitting().emit_many(events, name, **options)


def result(message_id: str, timeout: float | None = 30):
    """Wait for message ``message_id`` (what ``emit`` returned) to end, and return its result:
    a fresh copy of what its run returned. Raises ``nw.MessageFailed`` (with ``.traceback``)
    once it is a dead letter (not while retries are pending), ``TimeoutError`` if it has not
    ended within ``timeout`` seconds (None: wait for ever). Results are kept by id for
    ``NBWorkers.results_kept_s`` (an hour) after their message ends, across restarts.

    >>> mid = emit({"url": url}, "fetch")
    >>> page = nw.result(mid, timeout=60)
    """
    child.refuse_outside_kernel()
    return runtime().result(message_id, timeout)


def restart_processes() -> None:
    """Run the next runs of ``--executor processes`` workers in fresh pool processes (idle
    ones end now, busy ones after their run): after editing a module of yours that handlers
    import, so that they import it anew. Nothing queued is touched."""
    runtime().executors.pool.restart()


def use_dask(client) -> None:
    """Run the workers defined with ``executor="dask"`` (``--executor dask``) on ``client``,
    a ``distributed.Client``. Without it they use ``%config NBWorkers.dask_address``.

    >>> from distributed import Client, LocalCluster
    >>> nw.use_dask(Client(LocalCluster(n_workers=2)))
    """
    if type(client).__name__ != "Client" or not hasattr(client, "submit"):
        raise ArgumentTypeError(f"use_dask: give a distributed.Client, not {type(client).__name__}")
    current.use_dask_client(client)


def worker(
    name: str,
    concurrency: int | None = None,
    paused: bool = False,
    retries: int = 0,
    backoff: float = 1.0,
    timeout: float | None = None,
    executor: str = "threads",
    keep: int | None = None,
    ttl: float | None = None,
    rate: str | None = None,
    batch: int | None = None,
    batch_wait: float | None = None,
) -> Callable:
    """Decorator: make ``fn(event)`` (or ``fn(event, message)``) the handler of ``name``.

    ``retries``: run a failed message up to this many more times, waiting ``backoff``
    seconds, doubling each time (with jitter, at most an hour); after its last attempt it
    becomes a dead letter (``nw.dead_letters``). ``timeout``: seconds a run may take before
    it is abandoned and counts as failed. ``executor``: ``"threads"`` (the kernel's
    threads), ``"processes"`` (a process pool, for CPU-heavy code) or ``"dask"`` (the
    cluster given to ``use_dask``). ``keep``: how many of its traces are kept, in memory and
    on disk (default ``NBWorkers.traces_kept``, 10). ``ttl``: seconds a message may wait in
    the queue from its emit; one still queued after that becomes a dead letter with reason
    "expired" instead of running (a message's own ``emit(..., ttl=)`` wins). ``rate``: at
    most that many runs start in any window of a second, minute or hour (``"10/s"``,
    ``"600/m"``, ``"5/h"``).
    ``batch``: the handler gets a list of up to that many events (and ``message``, the list of
    their messages), once that many are ready or the first has waited ``batch_wait`` seconds
    (default 1); the batch succeeds or fails as a unit.

    >>> @worker("resize", concurrency=4, retries=3, backoff=2)
    ... def resize(event):
    ...     return make_thumb(event["path"])
    """
    if callable(name):
        raise ArgumentTypeError("@nw.worker needs the worker's name: @nw.worker('resize')")
    handlers.check_name(name)
    _check_paused(paused)
    policy = Policy(
        retries,
        backoff,
        timeout,
        executor,
        keep,
        ttl_s=ttl,
        rate=rate,
        batch=batch,
        batch_wait_s=batch_wait,
    )

    def register(fn):
        runtime().define(name, handlers.from_function(name, fn), concurrency, paused, policy)
        return fn

    return register


def cron(
    interval: str,
    name: str | None = None,
    at: str | None = None,
    paused: bool = False,
    timeout: float | None = None,
    executor: str = "threads",
    tz: str | None = None,
    keep: int | None = None,
):
    """Decorator: run ``fn()`` (or ``fn(message)``) on a schedule, as cron ``name``.

    ``interval``: every-minute, hourly, every-12-hours, daily, weekly, fortnightly; a duration
    (``30s``, ``5m``, ``2h``, ``3d``); a 5-field cron expression (``"0 9 * * MON-FRI"``,
    with ``L``, ``W`` and ``#``) or ``@hourly``, ``@daily``, ``@weekly``, ``@monthly``,
    ``@yearly``. ``at="HH:MM"`` runs an interval at that wall-clock time. ``tz``: the IANA
    zone of ``at`` or the expression (default: ``NBWorkers.timezone``, else the kernel's
    local zone). ``name`` defaults to the
    function's name. ``timeout``: seconds a run may take before it is abandoned.
    ``executor``: where it runs, and ``keep``: how many traces are kept, as for ``worker``.

    >>> @cron("daily", at="09:30", name="report")
    ... def report():
    ...     send(summary())
    """
    if callable(interval):
        raise ArgumentTypeError("@nw.cron needs an interval: @nw.cron('daily'), @nw.cron('5m')")
    if name is not None:
        handlers.check_name(name)
    _check_paused(paused)
    plan = schedule.parse_keywords(interval, at, tz)
    policy = Policy(timeout_s=timeout, executor=executor, keep=keep)

    def register(fn):
        cron_name = name or getattr(fn, "__name__", "")
        if name is None and callable(fn) and not handlers.NAME_RE.fullmatch(cron_name):
            raise ArgumentValueError(
                f"a cron is named after its function, and {cron_name!r} is not a valid name: "
                "give name=, for example nw.cron('daily', name='report')"
            )
        handler = handlers.from_function(cron_name, fn, kind="cron")
        runtime().define_cron(cron_name, handler, plan, paused, policy)
        return fn

    return register


def _check_paused(paused) -> None:
    if not isinstance(paused, bool):
        raise ArgumentTypeError(f"paused must be True or False, not {paused!r}")


def counts(name: str) -> dict:
    """How ``name`` is doing: ``queued`` (delayed and retrying messages included),
    ``running``, ``done``, ``failed`` (messages whose last attempt failed, all time),
    ``dead`` (dead letters kept now), ``retried`` (failed runs tried again, all time),
    ``oldest_age_s`` (seconds the oldest queued message has waited, or None); crons add
    ``skipped``; a worker with a rate limit adds ``rate_wait_s`` (seconds until its next run
    may start when messages wait for the limit, else None). ``running`` counts messages: a
    batch running counts all of its messages."""
    return runtime().counts(name)


def messages(name: str, limit: int | None = 100) -> list[dict]:
    """The messages waiting for ``name`` (ready ones oldest first, then delayed ones), each
    ``{"id", "enqueued_at", "age_s", "attempt", "due_at", "key", "preview", "parked"}``;
    at most ``limit`` (None: all). ``pandas.DataFrame(nw.messages(name))`` makes a table."""
    return runtime().messages(name, limit)


def cancel(message_id: str) -> bool:
    """Remove one waiting message (``"m12"``); False if it is not waiting any more."""
    return runtime().cancel(message_id)


def purge(name: str) -> int:
    """Remove every waiting message of ``name``; returns how many."""
    return runtime().purge(name)


def dead_letters(name: str, limit: int | None = 100, offset: int = 0) -> list[dict]:
    """The messages of ``name`` whose last attempt failed, oldest first, each with its
    ``error`` (its error's own line), ``fingerprint`` (its failure group: ``nw.failures`` has
    the group's whole traceback) and ``died_at``, kept in the database until requeued or
    discarded: at most ``limit`` (None: all), from the ``offset``-th, so ``offset=100`` is the
    second page. ``nw.counts(name)["dead"]`` says how many there are."""
    return runtime().dead_letters(name, limit, offset)


def requeue(name: str, ids=None, *, group: str | None = None) -> list[str]:
    """Queue dead letters of ``name`` again (``ids``, the failure ``group``'s, or all),
    attempts from 1; returns the new message ids.

    >>> nw.requeue("w", group=nw.failures("w")[0].fingerprint)  # after fixing the cell
    """
    return runtime().requeue(name, ids, group)


def discard(name: str, ids=None, *, group: str | None = None) -> int:
    """Drop dead letters of ``name`` (``ids``, the failure ``group``'s, or all); returns how
    many."""
    return runtime().discard(name, ids, group)


def failures(name: str) -> list[Failure]:
    """The dead letters of ``name`` grouped by cause (exception type, message with numbers and
    quoted values normalised, handler line), most numerous first: ``Failure`` dataclasses with
    ``fingerprint``, ``title``, ``traceback`` (an example), ``count``, ``first_seen``,
    ``last_seen`` and ``example_ids``. Act on one with ``nw.requeue(name, group=...)``."""
    return runtime().failures(name)


def on_failure(callback: Callable) -> Callable:
    """Call ``callback(worker, trace)`` after every failed run, on a background thread.

    Usable as a decorator; registering a function of the same name again replaces it.

    >>> @on_failure
    ... def alert(worker, trace):
    ...     send_to_chat(f"{worker} failed: {trace.error.splitlines()[-1]}")
    """
    return runtime().on_failure(callback)


def traces(name: str) -> list[Trace]:
    """The kept traces of ``name``, newest first."""
    return runtime().traces(name)


def unhandled() -> dict[str, int]:
    """Names that received messages but have no worker, with how many wait."""
    return runtime().unhandled()


def workers() -> list[str]:
    """The names of the defined workers."""
    return runtime().workers()


def wait(name: str | None = None, timeout: float | None = 30) -> bool:
    """Block until nothing is queued or running for ``name`` (default: every defined,
    unpaused worker). Returns False if ``timeout`` seconds passed first."""
    return runtime().wait(name, timeout)


def replay(name: str, trace_id: str | None = None, recorded=False):
    """Run the current code of ``name`` here, in the foreground, on a trace's input (the
    newest by default). Output shows in this cell, exceptions propagate so ``%debug`` works,
    and a new trace is recorded. Returns the result.

    ``recorded=True``: calls of ``@nw.recorded`` functions take their results from the trace,
    in call order, instead of calling again; a call the trace does not hold is called for
    real, or, with ``recorded="strict"``, raises NBWorkersError."""
    return runtime().replay(name, trace_id, recorded)


def sql(query: str, params=None):
    """Run one SELECT over the views ``messages``, ``traces``, ``dead_letters``, ``workers`` and
    ``failures``.

    It only reads: a query that would write (another statement, a data-modifying WITH, a
    table function that changes state) raises NBWorkersError. It runs at once, in a read-only
    transaction, and returns its rows as a DuckDB relation of their own (an in-memory
    database): shown as a table, or ``.df()`` (needs pandas), ``.fetchall()``. Everything
    emitted so far is written first, so the views show it; call ``nw.sql`` again for newer
    rows. ``params`` fill ``$1``, ``$2``... (or ``?``).

    >>> nw.sql("select worker, count(*) from traces where not ok group by worker").df()
    """
    rt = runtime()
    rt.flush()
    return rt.store.sql(query, params)


def flush() -> None:
    """Return once everything emitted so far is safely on disk."""
    rt = running()
    if rt is not None:
        rt.flush()
    else:
        current.wait_for_stop()
