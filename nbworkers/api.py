"""The public functions: ``emit``, ``worker``, ``pause``, ``traces``... on one shared runtime.

The runtime starts on first use, on the file the configuration names, so loading the
extension in a kernel that never uses it creates no file.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from . import child, handlers, schedule
from .config import NBWorkers
from .errors import ArgumentTypeError, ArgumentValueError, NBWorkersError
from .runtime import Runtime, check_events, run_owner
from .trace import Trace
from .worker import Policy

_lock = threading.RLock()
_runtime: Runtime | None = None
# The runtime shutdown() is stopping, until it has closed its file: emits go to it meanwhile
# (they join its last write, or it refuses them), and no new runtime opens the file beside it.
_stopping: Runtime | None = None
_stopped = threading.Condition(_lock)
_exiting = False  # the interpreter exits: nothing may start again
_GRACE_S = 5.0  # how long stopping lets runs going end
# At exit, less: Jupyter sends a kernel that has not exited SIGTERM 2.5 s after asking it to
# shut down (half of KernelManager.shutdown_wait_time), which would end the stop mid-way.
_EXIT_GRACE_S = 1.0
_config: NBWorkers | None = None
_on_start: list[Callable[[Runtime], None]] = []
_dask_client = None  # the client given to use_dask, kept for runtimes started later
# Handlers defined on a runtime that moved to another file (reopen), until one opens there:
# a file that cannot be opened must not make the notebook lose its workers.
_moving: list[tuple] = []


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
    child.refuse_outside_kernel()
    _refuse_stopped_run()
    with _lock:
        if _exiting:
            raise NBWorkersError(
                "nbworkers has stopped because Python is exiting (kernel shutdown or restart); "
                "nothing was done. Run it again in the new kernel."
            )
        _stopped.wait_for(lambda: _stopping is None)
        if _runtime is None:
            cfg = config()
            _runtime = Runtime(
                cfg.resolved_db_path(),
                traces_kept=cfg.traces_kept,
                default_concurrency=cfg.default_concurrency,
                flush_interval_s=cfg.flush_interval_s,
                result_max_bytes=cfg.result_max_bytes,
                timezone=cfg.timezone or None,
                storm_rate=cfg.storm_rate,
                storm_seconds=cfg.storm_seconds,
                max_queued=cfg.max_queued,
                failure_notice_after=cfg.failure_notice_after,
                max_processes=cfg.max_processes,
                dask_address=cfg.dask_address,
            )
            if _dask_client is not None:
                _runtime.executors.dask.use(_dask_client)
            for callback in _on_start:
                callback(_runtime)
            kept, _moving[:] = list(_moving), []
            for name, handler, concurrency, plan, policy in kept:
                if plan is not None:
                    _runtime.define_cron(name, handler, plan, policy=policy)
                else:
                    _runtime.define(name, handler, concurrency, policy=policy)
        return _runtime


def _refuse_stopped_run() -> None:
    """A run of a runtime that stops (or stopped) cannot start another: it would wait for
    its own stop, then open the file again after %unload_ext."""
    owner = run_owner()
    if owner is not None and owner.stopping:
        raise NBWorkersError(
            "this run was still going when nbworkers stopped (nw.shutdown, %unload_ext, "
            "%reload_ext or the kernel exiting): it may emit until the stop's last write, and "
            "nothing else. Nothing was enqueued or done; everything emitted before is kept. A run "
            "that outlives the stop leaves its message queued in the file, delivered again at "
            "the next start."
        )


def running() -> Runtime | None:
    """The runtime if it has started, else None (never starts one)."""
    return _runtime


def stopping() -> Runtime | None:
    """The runtime being stopped, until it has closed its file; else None."""
    return _stopping


def shutdown() -> None:
    """Write everything, stop every nbworkers thread and close the file. Idempotent; returns
    once the file is closed (also when another thread's shutdown is stopping it).

    While it stops, emits join the last write; one that comes after it raises NBWorkersError
    (nothing emitted is lost). Other calls wait until the file is closed, then start anew."""
    _shutdown(_GRACE_S)


def _shutdown(grace_s: float) -> None:
    global _runtime, _stopping
    with _lock:
        rt, _runtime = _runtime, None
        _moving.clear()
        if rt is None:
            if _stopping is not None and run_owner() is not _stopping:
                _stopped.wait_for(lambda: _stopping is None)
            return
        _stopping = rt
    try:
        rt.stop(grace_s)
    finally:
        with _lock:
            _stopping = None
            _stopped.notify_all()


def stop_for_exit() -> None:
    """``shutdown`` when Python exits; nothing starts again after it (a thread still
    emitting would get ids for messages that no one writes)."""
    global _exiting
    with _lock:
        _exiting = True
    _shutdown(_EXIT_GRACE_S)


def reopen() -> None:
    """Move to the file the configuration now names, keeping the defined handlers (also when
    that file cannot be opened: they are defined on the first runtime that opens)."""
    with _lock:
        rt = _runtime
        if rt is None:
            return
        kept = rt.definitions()
        shutdown()
        _moving[:] = kept
        runtime()


def emit(event, name: str, *, key: str | None = None, delay: float | None = None, at=None) -> str:
    """Queue ``event`` for the worker ``name`` and return the message id at once.

    The value is snapshotted (pickled) now: later changes to it do not reach the worker.
    It is on disk within a few milliseconds, and always before the emitting cell finishes.

    ``key="..."``: if a message with this key is queued or running for ``name``, enqueue
    nothing and return that message's id. ``delay=seconds`` or ``at=datetime`` (naive: local
    time, or ``NBWorkers.timezone`` when set): the message waits until then (it counts as
    queued meanwhile).
    """
    if child.active:  # this process runs handlers for a kernel: a pool process or Dask
        remote = child.emitter()
        if remote is not None:
            return remote.emit(event, name, key=key, delay=delay, at=at)
    return _emitting().emit(event, name, key=key, delay=delay, at=at)


def emit_many(events: Iterable, name: str) -> list[str]:
    """Queue every event (all or nothing) for ``name``; returns their message ids."""
    remote = child.emitter()
    if remote is not None:
        return remote.emit_many(list(check_events(events)), name)
    return _emitting().emit_many(events, name)


def _emitting() -> Runtime:
    """The runtime an emit goes to: the running one; while one stops, that one (its last
    write takes the emit, or it raises NBWorkersError); else a new one."""
    rt = _runtime
    if rt is None:
        rt = _stopping
    return rt if rt is not None else runtime()


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
    global _dask_client
    if type(client).__name__ != "Client" or not hasattr(client, "submit"):
        raise ArgumentTypeError(f"use_dask: give a distributed.Client, not {type(client).__name__}")
    with _lock:
        _dask_client = client
        rt = _runtime
    if rt is not None:
        rt.executors.dask.use(client)


def worker(
    name: str,
    concurrency: int | None = None,
    paused: bool = False,
    retries: int = 0,
    backoff: float = 1.0,
    timeout: float | None = None,
    executor: str = "threads",
) -> Callable:
    """Decorator: make ``fn(event)`` (or ``fn(event, message)``) the handler of ``name``.

    ``retries``: run a failed message up to this many more times, waiting ``backoff``
    seconds, doubling each time (with jitter, at most an hour); after its last attempt it
    becomes a dead letter (``nw.dead_letters``). ``timeout``: seconds a run may take before
    it is abandoned and counts as failed. ``executor``: ``"threads"`` (the kernel's
    threads), ``"processes"`` (a process pool, for CPU-heavy code) or ``"dask"`` (the
    cluster given to ``use_dask``).

    >>> @worker("resize", concurrency=4, retries=3, backoff=2)
    ... def resize(event):
    ...     return make_thumb(event["path"])
    """
    if callable(name):
        raise ArgumentTypeError("@nw.worker needs the worker's name: @nw.worker('resize')")
    handlers.check_name(name)
    _check_paused(paused)
    policy = Policy(retries, backoff, timeout, executor)

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
):
    """Decorator: run ``fn()`` (or ``fn(message)``) on a schedule, as cron ``name``.

    ``interval``: every-minute, hourly, every-12-hours, daily, weekly, fortnightly; a duration
    (``30s``, ``5m``, ``2h``, ``3d``); a 5-field cron expression (``"0 9 * * MON-FRI"``,
    with ``L``, ``W`` and ``#``) or ``@hourly``, ``@daily``, ``@weekly``, ``@monthly``,
    ``@yearly``. ``at="HH:MM"`` runs an interval at that wall-clock time. ``tz``: the IANA
    zone of ``at`` or the expression (default: ``NBWorkers.timezone``, else the kernel's
    local zone). ``name`` defaults to the
    function's name. ``timeout``: seconds a run may take before it is abandoned.
    ``executor``: where it runs, as for ``worker``.

    >>> @cron("daily", at="09:30", name="report")
    ... def report():
    ...     send(summary())
    """
    if callable(interval):
        raise ArgumentTypeError("@nw.cron needs an interval: @nw.cron('daily'), @nw.cron('5m')")
    if name is not None:
        handlers.check_name(name)
    _check_paused(paused)
    plan = schedule.parse(interval, at, tz)
    policy = Policy(timeout_s=timeout, executor=executor)

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


def counts(name: str) -> dict:
    """How ``name`` is doing: ``queued`` (delayed and retrying messages included),
    ``running``, ``done``, ``failed`` (messages whose last attempt failed, all time),
    ``dead`` (dead letters kept now), ``retried`` (failed runs tried again, all time),
    ``oldest_age_s`` (seconds the oldest queued message has waited, or None); crons add
    ``skipped``."""
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


def dead_letters(name: str) -> list[dict]:
    """The messages of ``name`` whose last attempt failed, oldest first, each with its
    ``error`` (the last traceback) and ``died_at``, kept until requeued or discarded."""
    return runtime().dead_letters(name)


def requeue(name: str, ids=None) -> list[str]:
    """Queue dead letters of ``name`` again (``ids``, or all), attempts from 1; returns the
    new message ids."""
    return runtime().requeue(name, ids)


def discard(name: str, ids=None) -> int:
    """Drop dead letters of ``name`` (``ids``, or all); returns how many."""
    return runtime().discard(name, ids)


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


def replay(name: str, trace_id: str | None = None):
    """Run the current code of ``name`` here, in the foreground, on a trace's input (the
    newest by default). Output shows in this cell, exceptions propagate so ``%debug`` works,
    and a new trace is recorded. Returns the result."""
    return runtime().replay(name, trace_id)


def sql(query: str, params=None):
    """Run one SELECT over the views ``messages``, ``traces``, ``dead_letters`` and ``workers``.

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
    elif _stopping is not None and run_owner() is not _stopping:
        with _lock:  # what joined a stop's last write is on disk once the stop has ended
            _stopped.wait_for(lambda: _stopping is None)
