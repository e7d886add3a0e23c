"""The store: what the runtime keeps on disk, behind the ``Store`` protocol, and the only place
with SQL.

``Store`` is what the runtime asks of a store: ``load`` once at start-up, ``apply`` one
``Batch`` of rows at a time, ``sql`` for nw.sql, the dead letters read back (they are kept
only on disk), ``checkpoint`` and ``close``. Two implement it:
``database.DuckDBStore`` (one DuckDB file or ``:memory:``; its tables and start-up read in
``schema``, the writing and reading of its flow-control tables (results, fan-ins, rate
starts) in ``flow``, of its dead letters and failure groups in ``dead``, of its traces in
``traces``) and ``memory.MemoryStore`` (dicts, for fast tests; it can be told to fail).
``writer`` has the runtime's writer thread, which turns what changed into a ``Batch`` (its
rows made by ``batching``); ``rows`` the rows stores read and write; ``views`` the stable views
users query and nw.sql's read-only sandbox; ``files`` the file and its write-ahead log kept
private and safe (``wal`` reads the log's format); ``status`` what ``python -m nbworkers
status`` reads of a file, opened read-only and never changed.

One writer (the runtime's writer thread) group-commits everything that changed since its last
call in one transaction of a few statements; the runtime reads once, at open, and keeps live
state in memory. Users read through the stable views (``messages``, ``traces``,
``dead_letters``, ``workers``): ``Store.sql`` in a kernel, and ``read_status`` outside one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from .database import DuckDBStore
from .memory import MemoryStore
from .rows import (
    Batch,
    DeadGroupRow,
    DeadRow,
    FanInRow,
    Loaded,
    MessageRow,
    ResultRow,
    TraceRow,
    UpdateRow,
    WorkerRow,
    storable,
)
from .schema import SCHEMA_VERSION
from .status import STATUS_TIMEOUT_S, Failure, Status, WorkerStatus, read_status
from .views import VIEWS


class Store(Protocol):
    """What the runtime needs of a store. It reads and writes rows (``rows``), never the
    runtime's objects; one thread applies batches, any thread may call ``sql``."""

    path: str  # where it is, as error messages name it

    def load(self, window: int | None = None) -> Loaded:
        """Everything a new runtime starts from; StoreCorruptError if it cannot be read. Each
        worker's ready messages beyond the first ``window`` (None: none) are counted in
        ``Loaded.spilled``, not read (``queued.read_window``)."""

    def apply(self, batch: Batch) -> str | None:
        """Make ``batch`` durable, all of it or none of it (then raise). A returned text is a
        warning to log: the batch is durable, but something went wrong after."""

    def sql(self, query: str, params=None):
        """A DuckDB relation for one SELECT over the stable views, as applied so far."""

    def result_of(self, seq: int) -> tuple:
        """(``ResultRow`` of message ``seq``, None) once it ended; (None, its worker) while
        it is queued or running; (None, None) otherwise, as applied so far. Any thread."""

    def queued_page(
        self, worker: str, priority: int, first: int, limit: int, last: int | None = None
    ) -> list[MessageRow]:
        """The ready messages (no ``due_at``) of ``worker`` and ``priority`` from seq ``first``
        (to ``last``, the highest there may be, if known), oldest first: at most ``limit``, as
        applied so far."""

    def queued_seqs(
        self, worker: str, priority: int, first: int, last: int, limit: int
    ) -> list[int]:
        """The seqs of those from ``first`` to ``last``, ascending: at most ``limit``."""

    def queued_row(self, seq: int) -> MessageRow | None:
        """Queued message ``seq`` as applied so far, or None."""

    def dead_page(self, worker: str, limit: int | None, offset: int) -> list[DeadRow]:
        """The dead letters of ``worker``, oldest first (by death, then seq): ``limit`` of them
        (None: all) from the ``offset``-th, as applied so far."""

    def dead_rows(self, worker: str, digests=None, seqs=None) -> Iterator[list[DeadRow]]:
        """The dead letters of ``worker`` in the groups ``digests``, or those ``seqs``, or all
        (both None), oldest first, a chunk at a time, as applied so far."""

    def dead_summary(self, worker: str | None = None) -> list[DeadGroupRow]:
        """The dead letters of every worker (or ``worker``) counted by failure group."""

    def checkpoint(self) -> None:
        """Compact what was applied (the runtime calls it before ``close``)."""

    def close(self) -> None:
        """Release what the store holds open (a file, its connections)."""


__all__ = [
    "SCHEMA_VERSION",
    "STATUS_TIMEOUT_S",
    "VIEWS",
    "Batch",
    "DeadGroupRow",
    "DeadRow",
    "DuckDBStore",
    "Failure",
    "FanInRow",
    "Loaded",
    "MemoryStore",
    "MessageRow",
    "ResultRow",
    "Status",
    "Store",
    "TraceRow",
    "UpdateRow",
    "WorkerRow",
    "WorkerStatus",
    "read_status",
    "storable",
]
