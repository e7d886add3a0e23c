"""The store: one DuckDB file (or ``:memory:``) holding queues, worker state and traces, and
the only place with SQL. ``database`` has the ``Store`` (schema, start-up load, batched writes,
checkpoints, nw.sql); ``rows`` the rows it reads and writes; ``views`` the stable views users
query and nw.sql's read-only sandbox; ``files`` the file and its write-ahead log kept private
and safe (``wal`` reads the log's format); ``status`` what ``python -m nbworkers status`` reads
of a file, opened read-only and never changed.

One writer (the runtime's writer thread) group-commits everything that changed since its last
call in one transaction of a few statements; the runtime reads once, at open, and keeps live
state in memory. Users read through the stable views (``messages``, ``traces``,
``dead_letters``, ``workers``): ``Store.sql`` in a kernel, and ``read_status`` outside one.
"""

from __future__ import annotations

from .database import SCHEMA_VERSION, Store
from .rows import Batch, DeadRow, Loaded, MessageRow, TraceRow, WorkerRow, storable
from .status import STATUS_TIMEOUT_S, Failure, Status, WorkerStatus, read_status
from .views import VIEWS

__all__ = [
    "SCHEMA_VERSION",
    "STATUS_TIMEOUT_S",
    "VIEWS",
    "Batch",
    "DeadRow",
    "Failure",
    "Loaded",
    "MessageRow",
    "Status",
    "Store",
    "TraceRow",
    "WorkerRow",
    "WorkerStatus",
    "read_status",
    "storable",
]
