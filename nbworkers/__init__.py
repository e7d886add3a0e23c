"""nbworkers: Darklang-style workers in Jupyter notebooks, durable in DuckDB.

In a notebook: ``%load_ext nbworkers``, then ``%%worker NAME`` cells and ``emit(value, NAME)``.
From Python: ``import nbworkers as nw``; ``@nw.worker("NAME")``, ``nw.emit(...)``.
"""

from __future__ import annotations

from .api import (
    apply,
    cancel,
    counts,
    cron,
    dead_letters,
    discard,
    emit,
    emit_many,
    failures,
    flush,
    is_paused,
    live,
    messages,
    next_run,
    on_failure,
    pause,
    pause_reason,
    purge,
    remove,
    replay,
    requeue,
    restart_processes,
    result,
    resume,
    run_now,
    set_concurrency,
    set_rate,
    shutdown,
    sql,
    stop,
    traces,
    try_code,
    unhandled,
    use_dask,
    wait,
    worker,
    workers,
)
from .config import NBWorkers
from .develop.recorded import recorded
from .engine.failures import Failure
from .errors import (
    ArgumentTypeError,
    ArgumentValueError,
    MessageFailed,
    NBWorkersError,
    RunStopped,
    StoreCorruptError,
    StoreLockedError,
)
from .extension import load_ipython_extension, unload_ipython_extension
from .message import Message
from .store.views import QueryError
from .trace import Trace

__version__ = "0.1.0"

__all__ = [
    "ArgumentTypeError",
    "ArgumentValueError",
    "Failure",
    "Message",
    "MessageFailed",
    "NBWorkers",
    "NBWorkersError",
    "QueryError",
    "RunStopped",
    "StoreCorruptError",
    "StoreLockedError",
    "Trace",
    "apply",
    "cancel",
    "counts",
    "cron",
    "dead_letters",
    "discard",
    "emit",
    "emit_many",
    "failures",
    "flush",
    "is_paused",
    "live",
    "load_ipython_extension",
    "messages",
    "next_run",
    "on_failure",
    "pause",
    "pause_reason",
    "purge",
    "recorded",
    "remove",
    "replay",
    "requeue",
    "restart_processes",
    "result",
    "resume",
    "run_now",
    "set_concurrency",
    "set_rate",
    "shutdown",
    "sql",
    "stop",
    "traces",
    "try_code",
    "unhandled",
    "unload_ipython_extension",
    "use_dask",
    "wait",
    "worker",
    "workers",
]
