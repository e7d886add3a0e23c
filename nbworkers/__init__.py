"""nbworkers: Darklang-style workers in Jupyter notebooks, durable in DuckDB.

In a notebook: ``%load_ext nbworkers``, then ``%%worker NAME`` cells and ``emit(value, NAME)``.
From Python: ``import nbworkers as nw``; ``@nw.worker("NAME")``, ``nw.emit(...)``.
"""

from __future__ import annotations

from .api import (
    counts,
    cron,
    emit,
    emit_many,
    flush,
    is_paused,
    next_run,
    pause,
    replay,
    resume,
    run_now,
    set_concurrency,
    shutdown,
    traces,
    unhandled,
    wait,
    worker,
    workers,
)
from .config import NBWorkers
from .errors import NBWorkersError, StoreLockedError
from .extension import load_ipython_extension, unload_ipython_extension
from .message import Message
from .trace import Trace

__version__ = "0.1.0"

__all__ = [
    "Message",
    "NBWorkers",
    "NBWorkersError",
    "StoreLockedError",
    "Trace",
    "counts",
    "cron",
    "emit",
    "emit_many",
    "flush",
    "is_paused",
    "load_ipython_extension",
    "next_run",
    "pause",
    "replay",
    "resume",
    "run_now",
    "set_concurrency",
    "shutdown",
    "traces",
    "unhandled",
    "unload_ipython_extension",
    "wait",
    "worker",
    "workers",
]
