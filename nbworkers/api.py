"""The public functions: ``emit``, ``worker``, ``pause``, ``traces``... on one shared runtime.

The runtime starts on first use, on the file the configuration names, so loading the
extension in a kernel that never uses it creates no file.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from . import handlers, schedule
from .config import NBWorkers
from .runtime import Runtime
from .trace import Trace

_lock = threading.RLock()
_runtime: Runtime | None = None
_config: NBWorkers | None = None
_on_start: list[Callable[[Runtime], None]] = []


def on_start(callback: Callable[[Runtime], None]) -> None:
    """Call ``callback(runtime)`` for every runtime started from now on (and the current one)."""
    with _lock:
        _on_start.append(callback)
        rt = _runtime
    if rt is not None:
        callback(rt)


def config() -> NBWorkers:
    """The configuration in force (the kernel's ``NBWorkers`` once the extension is loaded)."""
    global _config
    with _lock:
        if _config is None:
            _config = NBWorkers()
        return _config


def use_config(cfg: NBWorkers) -> None:
    """Make ``cfg`` the configuration; the extension passes the kernel's."""
    global _config
    with _lock:
        _config = cfg


def runtime() -> Runtime:
    """The running runtime, started on the configured file if need be."""
    global _runtime
    rt = _runtime
    if rt is not None:
        return rt
    with _lock:
        if _runtime is None:
            cfg = config()
            _runtime = Runtime(
                cfg.resolved_db_path(),
                traces_kept=cfg.traces_kept,
                default_concurrency=cfg.default_concurrency,
                flush_interval_s=cfg.flush_interval_s,
                result_max_bytes=cfg.result_max_bytes,
                timezone=cfg.timezone or None,
            )
            for callback in _on_start:
                callback(_runtime)
        return _runtime


def running() -> Runtime | None:
    """The runtime if it has started, else None (never starts one)."""
    return _runtime


def shutdown() -> None:
    """Write everything, stop every nbworkers thread and close the file. Idempotent."""
    global _runtime
    with _lock:
        rt, _runtime = _runtime, None
    if rt is not None:
        rt.stop()


def reopen() -> None:
    """Move to the file the configuration now names, keeping the defined handlers."""
    with _lock:
        rt = _runtime
        if rt is None:
            return
        kept = rt.definitions()
        shutdown()
        new = runtime()
        for name, handler, concurrency, schedule in kept:
            if schedule is not None:
                new.define_cron(name, handler, schedule)
            else:
                new.define(name, handler, concurrency)


def emit(event, name: str) -> str:
    """Queue ``event`` for the worker ``name`` and return the message id at once.

    The value is snapshotted (pickled) now: later changes to it do not reach the worker.
    It is on disk within a few milliseconds, and always before the emitting cell finishes.
    """
    return runtime().emit(event, name)


def emit_many(events: Iterable, name: str) -> list[str]:
    """Queue every event (all or nothing) for ``name``; returns their message ids."""
    return runtime().emit_many(events, name)


def worker(name: str, concurrency: int | None = None, paused: bool = False) -> Callable:
    """Decorator: make ``fn(event)`` (or ``fn(event, message)``) the handler of ``name``.

    >>> @worker("resize", concurrency=4)
    ... def resize(event):
    ...     return make_thumb(event["path"])
    """
    handlers.check_name(name)

    def register(fn):
        runtime().define(name, handlers.from_function(name, fn), concurrency, paused)
        return fn

    return register


def cron(interval: str, name: str | None = None, at: str | None = None, paused: bool = False):
    """Decorator: run ``fn()`` (or ``fn(message)``) on a schedule, as cron ``name``.

    ``interval``: every-minute, hourly, every-12-hours, daily, weekly, fortnightly; a duration
    (``30s``, ``5m``, ``2h``, ``3d``); or a 5-field cron expression (``"0 9 * * MON-FRI"``).
    ``at="HH:MM"`` runs an interval at that wall-clock time. ``name`` defaults to the
    function's name.

    >>> @cron("daily", at="09:30", name="report")
    ... def report():
    ...     send(summary())
    """
    plan = schedule.parse(interval, at)

    def register(fn):
        cron_name = handlers.check_name(name or fn.__name__)
        handler = handlers.from_function(cron_name, fn, kind="cron")
        runtime().define_cron(cron_name, handler, plan, paused)
        return fn

    return register


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


def set_concurrency(name: str, concurrency: int) -> None:
    """Change how many runs of ``name`` may go at once, effective immediately."""
    runtime().set_concurrency(name, concurrency)


def counts(name: str) -> dict:
    """``{"queued", "running", "done", "failed"}`` for ``name`` (done/failed: all time)."""
    return runtime().counts(name)


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


def replay(name: str, trace_id: str | None = None):
    """Run the current code of ``name`` here, in the foreground, on a trace's input (the
    newest by default). Output shows in this cell, exceptions propagate so ``%debug`` works,
    and a new trace is recorded. Returns the result."""
    return runtime().replay(name, trace_id)


def flush() -> None:
    """Return once everything emitted so far is safely on disk."""
    rt = running()
    if rt is not None:
        rt.flush()
