"""The runtime of this process: started on first use, on the file the configuration names
(loading the extension in a kernel that never uses it creates no file), stopped, and moved
to another file; ``api`` reaches it through here.

While one stops, it stays reachable until its file is closed: emits join its last write (or
are refused, saying so), and no second runtime ever opens the file beside it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from .config import NBWorkers
from .engine import Runtime, run_owner
from .engine.snapshot import Definition
from .errors import NBWorkersError
from .executors import child

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
_moving: list[Definition] = []


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
            _runtime = Runtime(cfg.resolved_db_path(), cfg.settings())
            if _dask_client is not None:
                _runtime.executors.dask.use(_dask_client)
            for callback in _on_start:
                callback(_runtime)
            kept, _moving[:] = list(_moving), []
            for d in kept:
                if d.schedule is not None:
                    _runtime.define_cron(d.name, d.handler, d.schedule, policy=d.policy)
                else:
                    _runtime.define(d.name, d.handler, d.concurrency, policy=d.policy)
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


def emitting() -> Runtime:
    """The runtime an emit goes to: the running one; while one stops, that one (its last
    write takes the emit, or it raises NBWorkersError); else a new one."""
    rt = _runtime
    if rt is None:
        rt = _stopping
    return rt if rt is not None else runtime()


def wait_for_stop() -> None:
    """Return once a stop going on has closed the file (at once for a run of the stopping
    runtime: it would wait for its own end)."""
    if _stopping is not None and run_owner() is not _stopping:
        with _lock:  # what joined a stop's last write is on disk once the stop has ended
            _stopped.wait_for(lambda: _stopping is None)


def use_dask_client(client) -> None:
    """Keep ``client`` for the runtimes started from now on, and give it to the running one."""
    global _dask_client
    with _lock:
        _dask_client = client
        rt = _runtime
    if rt is not None:
        rt.executors.dask.use(client)
