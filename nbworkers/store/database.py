"""``DuckDBStore``: the store on one DuckDB file (or ``:memory:``) holding queues, worker
state and traces: opening it, batched writes (``apply``), checkpoints and nw.sql's reading
connections. The tables and the start-up read are in ``schema``.

One writer (the runtime's writer thread) calls ``apply`` with everything that changed since its
last call: a statement costs about a millisecond here whatever it does, so each batch is a
handful of statements in one transaction, never one per message. The runtime reads once, at
open; live state is kept in memory by the runtime.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from ..errors import ArgumentTypeError, NBWorkersError, StoreLockedError
from . import dead, flow, queued, rows, traces
from .files import (
    _CHECKPOINT_THRESHOLD,
    _HOW_TO_MOVE,
    DatabaseFiles,
    _process_description,
    make_folder,
)
from .rows import Batch, DeadGroupRow, DeadRow, Loaded, WorkerRow, columns, unnested
from .schema import MIGRATIONS, SCHEMA, fill_fingerprints, read, stamp_version
from .views import _check_select, _create_views, _first_line, _read_only, _tables, query_error

_LOCK_RE = re.compile(r"Conflicting lock is held in (?P<exe>.*?) \(PID (?P<pid>\d+)\)")
# What DuckDB says when a file or its write-ahead log cannot be read back: the bytes are
# damaged (or not a DuckDB file at all), as opposed to locked, unreadable or too new.
_CORRUPT_RE = re.compile(
    r"not a valid DuckDB database file|Could not read enough bytes|Corrupt database file"
    r"|Failure while replaying WAL file|data may be corrupt"
)
# A commit whose automatic checkpoint then failed (a full disk): the batch is durable in the
# write-ahead log, but DuckDB has invalidated the connection until the file is opened again.
_COMMITTED_RE = re.compile(r"COMMIT succeeded and is durable")


def _absolute(path: str) -> str:
    """``path`` made absolute as the system resolves it: its folder's real path (a '..' after
    a linked folder goes up from the link's target, not from the link), and its own name as
    given (a database that is itself a link is refused, not followed)."""
    folder, name = os.path.split(os.path.join(os.getcwd(), path))
    return os.path.join(os.path.realpath(folder), name)


class DuckDBStore:
    """One DuckDB file (or ``:memory:``) holding queues, worker state and traces.

    The file and its write-ahead log are readable by their owner only (events can carry
    secrets). A file that cannot be read back is moved aside, never deleted
    (``StoreCorruptError``). After DuckDB invalidates the connection (a checkpoint failed on a
    full disk), the next ``apply`` opens the file again.
    """

    def __init__(self, path: str, traces_kept: int = 10):
        # Absolute from the start: %cd or os.chdir later must not move the file (nor its log,
        # which DuckDB finds beside the path it was given)
        self.path = path if path == ":memory:" else _absolute(path)
        self.files = DatabaseFiles(self.path)
        self.traces_kept = traces_kept
        self._readers = threading.local()  # .cursor: this thread's connection for nw.sql
        self._readers_lock = threading.Lock()
        self._results_db = None  # the in-memory database of nw.sql's results, once needed
        # What the file holds, once load() read it, so that a batch updates those rows in
        # one statement instead of deleting and inserting them (None: not known; as before).
        self._worker_rows: set[str] | None = None
        self._has_next_seq = False
        self._group_rows = dead.GroupRows()  # the failure groups with a row in the file
        self.con = None
        if path != ":memory:":
            make_folder(Path(self.path).parent)
        try:
            log = self.files.prepare()
            self._connect()
            if log:
                self.files.check_replayed(self.con, log, self._drop)
            self.files.secure()  # before anything is written to the file or its log
            self.con.execute(SCHEMA)
            self.con.execute(MIGRATIONS)
        except duckdb.Error as exc:
            self._drop()
            raise self._open_error(exc) from (None if _LOCK_RE.search(str(exc)) else exc)
        except NBWorkersError:
            self._drop()
            raise
        except OSError as exc:
            # An existing file in a folder that became read-only: DuckDB opens the file, but
            # its write-ahead log cannot be created beside it (nor the file made private)
            self._drop()
            raise NBWorkersError(
                f"nbworkers cannot write beside its queue database {self.path!r} "
                f"({exc.strerror}: {exc.filename!r}): you cannot write into its folder, or change "
                f"that file. Nothing was changed in the database. To go on, {_HOW_TO_MOVE}."
            ) from exc

    def _connect(self) -> None:
        self.con = duckdb.connect(self.path)
        self.con.execute(f"SET checkpoint_threshold = '{_CHECKPOINT_THRESHOLD}'")
        # DuckDB's allocator keeps the memory of big batches (a drain of failures: 125 MB
        # after 300,000) until a background thread of its own gives it back, seconds later.
        self.con.execute("SET allocator_background_threads = true")

    def _drop(self) -> None:
        """Forget the connection (DuckDB invalidated it, or opening failed half-way)."""
        with self._readers_lock:
            con, self.con = self.con, None
            self._readers = threading.local()  # their cursors close with the connection
        if con is not None:
            con.close()

    def _open_error(self, exc: duckdb.Error) -> NBWorkersError:
        """The error to raise when the file cannot be opened; a damaged file is set aside."""
        text = str(exc)
        held = _LOCK_RE.search(text)
        if held:
            return StoreLockedError(
                f"nbworkers' queue database {self.path!r} is in use by another process "
                f"({_process_description(held['pid'])}); probably another kernel running "
                f"this notebook. Shut that kernel down, or {_HOW_TO_MOVE}. Nothing was "
                "changed in the file."
            )
        if _CORRUPT_RE.search(text):
            return self.files.set_aside(_first_line(exc), log_only="WAL file" in text)
        return NBWorkersError(
            f"nbworkers cannot open its queue database {self.path!r}: {text}. "
            f"To go on, {_HOW_TO_MOVE}."
        )

    def load(self, window: int | None = None) -> Loaded:
        """Read the state a new runtime starts from (each worker's ready messages beyond
        ``window`` counted, not read); StoreCorruptError (the file moved aside) if DuckDB
        finds it damaged."""
        try:
            return self._load(window)
        except duckdb.Error as exc:
            if not _CORRUPT_RE.search(str(exc)):
                raise
            self._drop()
            raise self.files.set_aside(_first_line(exc), log_only="WAL file" in str(exc)) from exc

    def _load(self, window: int | None) -> Loaded:
        fill_fingerprints(self.con)
        loaded, meta = read(self.con, window)
        self._group_rows = dead.GroupRows(dead.read_groups(self.con))
        loaded.dead_groups = dead.read_summary(self.con)
        self._worker_rows = {w.name for w in loaded.workers}
        self._has_next_seq = "next_seq" in meta
        stamp_version(self.con, meta)
        return loaded

    def apply(self, batch: Batch) -> str | None:
        """Apply one batch in one transaction (a few statements, whatever its size).

        Returns a warning (and the batch is on disk) when DuckDB committed it but its
        automatic checkpoint failed; raises, with nothing written, on any other failure.
        """
        if self.con is None:
            self._connect()  # DuckDB invalidated the last connection: open the file again
        self.files.private_wal()
        con = self.con
        self._group_rows.begin()  # (nothing from a batch that was rolled back)
        con.execute("BEGIN")
        try:
            if batch.inserts:
                select, params = unnested(rows.MESSAGE_TYPES, columns(batch.inserts))
                con.execute(
                    f"""INSERT INTO messages (seq, worker, enqueued_at, attempt, data, started,
                                              due_at, key, priority, expires_at)
                        SELECT {select}""",
                    params,
                )
            if batch.updates:
                names = "seq attempt started due_at"
                select, params = unnested(rows.UPDATE_TYPES, columns(batch.updates), names)
                con.execute(
                    f"""UPDATE messages SET attempt = u.attempt, started = u.started,
                                            due_at = u.due_at
                        FROM (SELECT {select}) u WHERE messages.seq = u.seq""",
                    params,
                )
            if batch.acks:
                acks = batch.acks
                # The range lets DuckDB skip row groups by their min/max: acks cluster at the
                # head of a FIFO queue, so this stays cheap however long the queue is.
                con.execute(
                    """DELETE FROM messages WHERE seq BETWEEN $2 AND $3
                       AND seq IN (SELECT unnest($1))""",
                    [acks, min(acks), max(acks)],
                )
            if batch.dead_discards:  # before the inserts: they are newer than the discard
                dead.discard(con, batch.dead_discards)
            if batch.dead_inserts:
                self._group_rows.insert(con, batch.dead_inserts)
            if batch.dead_deletes:
                con.execute(
                    "DELETE FROM dead_letters WHERE seq IN (SELECT unnest($1))",
                    [batch.dead_deletes],
                )
            if batch.dead_deletes or batch.dead_discards:
                self._group_rows.drop_empty(con)
            if batch.traces:
                traces.write(con, batch.traces)
            if batch.workers:
                self._write_workers(batch.workers)
            if batch.traces:  # after the workers' rows: they say how many to keep
                traces.prune(con, self.traces_kept)
            if batch.rate_starts:
                flow.write_rate_starts(con, batch.rate_starts)
            flow.write_results(con, batch)
            if batch.next_seq is not None:
                if self._has_next_seq:
                    con.execute(
                        "UPDATE meta SET value = ? WHERE key = 'next_seq'", [str(batch.next_seq)]
                    )
                else:
                    con.execute("DELETE FROM meta WHERE key = 'next_seq'")
                    con.execute("INSERT INTO meta VALUES ('next_seq', ?)", [str(batch.next_seq)])
            con.execute("COMMIT")
            self._committed(batch)
        except duckdb.FatalException as exc:
            # DuckDB invalidated the connection; opening the file again recovers.
            self._drop()
            if _COMMITTED_RE.search(str(exc)):
                self._committed(batch)
                return (
                    f"the changes are on disk, but DuckDB could not checkpoint {self.path!r} "
                    f"({_first_line(exc)}); it is opened again for the next write"
                )
            raise
        except BaseException:
            try:
                con.execute("ROLLBACK")
            except duckdb.TransactionException:
                pass  # the failed COMMIT ended the transaction already; raise its own error
            raise
        self.files.remake_wal()
        return None

    def _write_workers(self, changed: list[WorkerRow]) -> None:
        """Rows the file has are updated in place; new names (or all, before load) are
        deleted and inserted."""
        known = self._worker_rows
        old = [] if known is None else [w for w in changed if w.name in known]
        new = changed if known is None else [w for w in changed if w.name not in known]
        if old:
            self.con.execute(
                """UPDATE workers SET paused = u.paused, done = u.done, failed = u.failed,
                          last_run = u.last_run, skipped = u.skipped,
                          pause_reason = u.pause_reason, retried = u.retried, kind = u.kind,
                          keep = u.keep
                   FROM (SELECT unnest($1) AS name, unnest($2) AS paused, unnest($3) AS done,
                                unnest($4) AS failed, unnest($5::DOUBLE[]) AS last_run,
                                unnest($6) AS skipped, unnest($7::VARCHAR[]) AS pause_reason,
                                unnest($8) AS retried, unnest($9::VARCHAR[]) AS kind,
                                unnest($10::INTEGER[]) AS keep) u
                   WHERE workers.name = u.name""",
                columns(old),
            )
        if new:
            names = [w.name for w in new]
            self.con.execute("DELETE FROM workers WHERE name IN (SELECT unnest($1))", [names])
            self.con.execute(
                """INSERT INTO workers (name, paused, done, failed, last_run, skipped,
                                        pause_reason, retried, kind, keep)
                   SELECT unnest($1), unnest($2), unnest($3), unnest($4),
                          unnest($5::DOUBLE[]), unnest($6), unnest($7::VARCHAR[]),
                          unnest($8), unnest($9::VARCHAR[]), unnest($10::INTEGER[])""",
                columns(new),
            )

    def _check_open(self) -> None:
        """Raise NBWorkersError once closed (the readers' lock is held)."""
        if self.con is None:
            raise NBWorkersError(
                "nbworkers' database is closed (nw.shutdown or %unload_ext); "
                "run %load_ext nbworkers again"
            )

    @contextmanager
    def _cursor(self):
        """A cursor of its own, reading what is committed; any thread."""
        with self._readers_lock:
            self._check_open()
            cursor = self.con.cursor()
        try:
            yield cursor
        finally:
            cursor.close()

    def _read(self, read, *args):
        """``read(cursor, *args)`` through a cursor of its own: the Store protocol's reads."""
        with self._cursor() as cursor:
            return read(cursor, *args)

    def result_of(self, seq: int):
        return self._read(flow.result_of, seq)

    def queued_page(self, worker, priority, first, limit, last=None):
        return self._read(queued.read_page, worker, priority, first, limit, last)

    def queued_seqs(self, worker: str, priority: int, first: int, last: int, limit: int):
        return self._read(queued.read_seqs, worker, priority, first, last, limit)

    def queued_row(self, seq: int):
        return self._read(queued.read_row, seq)

    def dead_page(self, worker: str, limit: int | None, offset: int) -> list[DeadRow]:
        return self._read(dead.read_page, worker, limit, offset)

    def dead_rows(self, worker, digests=None, seqs=None) -> Iterator[list[DeadRow]]:
        with self._cursor() as cursor:
            yield from dead.read_rows(cursor, worker, digests, seqs)

    def dead_summary(self, worker: str | None = None) -> list[DeadGroupRow]:
        return self._read(dead.read_summary, worker)

    def _committed(self, batch: Batch) -> None:
        """What a committed batch added to the file (for the next batches' statements)."""
        self._group_rows.committed()
        if self._worker_rows is not None:
            self._worker_rows.update(w.name for w in batch.workers)
        if batch.next_seq is not None:
            self._has_next_seq = True

    def checkpoint(self) -> None:
        """Move the write-ahead log into the file and reclaim space of deleted rows."""
        if self.con is not None:
            self.con.execute("CHECKPOINT")
            self.files.remake_wal()

    def sql(self, query: str, params=None):
        """A DuckDB relation for one SELECT over the stable views, as committed so far."""
        if not isinstance(query, str):
            raise ArgumentTypeError(
                f"nw.sql: the query must be a string, not {type(query).__name__}"
            )
        if params is not None and not isinstance(params, list | tuple | dict):
            raise ArgumentTypeError(
                "nw.sql: params must be a list (for $1, $2... or ?) or a dict (for $name), "
                f"not {type(params).__name__}"
            )
        cursor = self._reader()
        try:
            _check_select(cursor, query)
            return _read_only(cursor, query, params, self._results())
        except NBWorkersError:
            raise
        except duckdb.Error as exc:
            # (a typo in a column's name showed 40 lines of traceback through nbworkers and
            # DuckDB: shown as nbworkers' own errors are, DuckDB's message whole)
            raise query_error(exc) from exc

    def _results(self):
        """A new connection to the in-memory database that holds nw.sql's results; each
        result is a TEMP table of its own connection, gone with the relation."""
        with self._readers_lock:
            if self._results_db is None:
                self._check_open()
                self._results_db = duckdb.connect(":memory:")
            return self._results_db.cursor()

    def _reader(self):
        """This thread's reading connection, with the views."""
        cursor = getattr(self._readers, "cursor", None)
        if cursor is None:
            # A DuckDB connection is not to be used by two threads at once, and the writer
            # thread uses self.con: each reading thread gets a cursor, a connection of its own
            # to the same database, whose TEMP views only it sees. Made under a lock, so that
            # none is made while close() closes them all.
            with self._readers_lock:
                self._check_open()
                cursor = self.con.cursor()
            _create_views(cursor, _tables(cursor))
            # A global setting, so that HUGEINT (a sum), UUID... keep their types on the way
            # to nw.sql's results; nothing else in this database uses Arrow.
            cursor.execute("SET arrow_lossless_conversion = true")
            self._readers.cursor = cursor
        return cursor

    def close(self) -> None:
        # Drop the reference too: a traceback kept in sys.last_traceback may keep this object
        # alive until exit, and DuckDB's bindings report live connections then as leaks.
        # Closing a connection closes its cursors (nw.sql's) too, and with them the file.
        with self._readers_lock:
            con, self.con = self.con, None
            results, self._results_db = self._results_db, None
        if con is not None:
            con.close()
            self.files.drop_empty_wal()
        if results is not None:
            results.close()  # and the relations nw.sql returned
