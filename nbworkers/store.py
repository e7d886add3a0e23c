"""The DuckDB store: schema, start-up load, and batched writes. The only module with SQL.

One writer (the runtime's writer thread) calls ``write`` with everything that changed since its
last call: a statement costs about a millisecond here whatever it does, so each batch is a
handful of statements in one transaction, never one per message. The runtime reads once, at
open; live state is kept in memory by the runtime.

Users read through the stable views (``messages``, ``traces``, ``dead_letters``, ``workers``):
``Store.sql`` in a kernel, and ``read_status`` for ``python -m nbworkers status``, which opens a
file read-only and never changes it.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import stat
import tempfile
import threading
import time
from dataclasses import astuple, dataclass, field
from pathlib import Path

import duckdb

from . import wal
from .errors import (
    ArgumentTypeError,
    NBWorkersError,
    StatusTimeoutError,
    StoreCorruptError,
    StoreLockedError,
)

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR, value VARCHAR);
CREATE TABLE IF NOT EXISTS messages (
    seq BIGINT, worker VARCHAR, enqueued_at DOUBLE, attempt INTEGER, data BLOB);
CREATE TABLE IF NOT EXISTS workers (
    name VARCHAR, paused BOOLEAN, done BIGINT, failed BIGINT, last_run DOUBLE, skipped BIGINT);
CREATE TABLE IF NOT EXISTS traces (
    seq BIGINT, worker VARCHAR, message_seq BIGINT, started_at DOUBLE, duration DOUBLE,
    input BLOB, result BLOB, result_repr VARCHAR, stdout VARCHAR, error VARCHAR,
    replay BOOLEAN);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq BIGINT, worker VARCHAR, enqueued_at DOUBLE, attempt INTEGER, data BLOB, key VARCHAR,
    error VARCHAR, died_at DOUBLE);
"""
# Columns added after version 1: a file written by 0.1 gains them when opened.
_MIGRATIONS = """
ALTER TABLE messages ADD COLUMN IF NOT EXISTS started BOOLEAN DEFAULT false;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS due_at DOUBLE;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS key VARCHAR;
ALTER TABLE workers ADD COLUMN IF NOT EXISTS pause_reason VARCHAR;
ALTER TABLE workers ADD COLUMN IF NOT EXISTS retried BIGINT DEFAULT 0;
ALTER TABLE traces ADD COLUMN IF NOT EXISTS attempt INTEGER DEFAULT 1;
ALTER TABLE traces ADD COLUMN IF NOT EXISTS timed_out BOOLEAN DEFAULT false;
ALTER TABLE workers ADD COLUMN IF NOT EXISTS kind VARCHAR;
"""


@dataclass
class WorkerRow:
    name: str
    paused: bool
    done: int
    failed: int
    last_run: float | None = None  # crons: when the schedule last fired (run or skip)
    skipped: int = 0  # crons: ticks skipped because the previous run was still going
    pause_reason: str | None = None  # why it was paused, when nbworkers paused it
    retried: int = 0  # failed runs that were tried again
    kind: str | None = None  # "worker" or "cron": what the name was last defined as


@dataclass
class TraceRow:
    seq: int
    worker: str
    message_seq: int
    started_at: float
    duration: float
    input: bytes | None
    result: bytes | None
    result_repr: str
    stdout: str
    error: str | None
    replay: bool
    attempt: int = 1
    timed_out: bool = False


@dataclass
class MessageRow:
    seq: int
    worker: str
    enqueued_at: float
    attempt: int
    data: bytes
    started: bool
    due_at: float | None
    key: str | None


@dataclass
class DeadRow:
    seq: int
    worker: str
    enqueued_at: float
    attempt: int
    data: bytes
    key: str | None
    error: str
    died_at: float


@dataclass
class Loaded:
    """Everything the runtime needs from disk at start-up."""

    next_seq: int
    workers: list[WorkerRow]
    messages: list[MessageRow]  # oldest first
    traces: list[TraceRow]  # newest first
    dead: list[DeadRow]  # oldest first


@dataclass
class Batch:
    """Changes for one transaction. Acks of messages inserted in the same batch cancel out."""

    inserts: list = field(default_factory=list)  # Message objects
    updates: list = field(default_factory=list)  # Message objects whose attempt/due changed
    acks: list[int] = field(default_factory=list)  # seqs of messages that left the queue
    dead_inserts: list = field(default_factory=list)  # DeadLetter objects
    dead_deletes: list[int] = field(default_factory=list)  # seqs of dead letters to drop
    traces: list[TraceRow] = field(default_factory=list)
    workers: list[WorkerRow] = field(default_factory=list)
    next_seq: int | None = None

    def __bool__(self) -> bool:
        return bool(
            self.inserts
            or self.updates
            or self.acks
            or self.dead_inserts
            or self.dead_deletes
            or self.traces
            or self.workers
            or self.next_seq is not None
        )


def storable(value: str | None) -> str | None:
    """``value`` storable as UTF-8: lone surrogates (undecodable file names) are escaped."""
    if value is None:
        return None
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


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
_HOW_TO_MOVE = (
    "pick another file with %config NBWorkers.db_path = 'other.duckdb' "
    "(or the NBWORKERS_DB environment variable)"
)
# A queue table is appended to and deleted from all day: checkpointing its WAL at 1 MB instead
# of DuckDB's 16 MiB keeps the file and DuckDB's memory small (measured: RSS growth over 1M
# messages 38 -> 21 MB) at no cost to throughput.
_CHECKPOINT_THRESHOLD = "1MB"
# Said when a write is refused: what was not written yet waits in memory.
_WAITING = (
    " What was not written yet stays in memory and is written as soon as that file is gone "
    "(in a shared folder such as /tmp, only its owner or an administrator can remove it)."
)


def _absolute(path: str) -> str:
    """``path`` made absolute as the system resolves it: its folder's real path (a '..' after
    a linked folder goes up from the link's target, not from the link), and its own name as
    given (a database that is itself a link is refused, not followed)."""
    folder, name = os.path.split(os.path.join(os.getcwd(), path))
    return os.path.join(os.path.realpath(folder), name)


def _owner(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _process_description(pid: str) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return f"PID {pid}"
    cmd = raw.replace(b"\0", b" ").decode(errors="replace").strip()
    return f"PID {pid}: {cmd[:200]}" if cmd else f"PID {pid}"


# ----- the stable views ------------------------------------------------------------------------
# What users query (nw.sql, python -m nbworkers status): the README documents every column, so
# these are a contract, whatever the tables become. They are TEMP views, made on each reading
# connection: nothing is written to the file, and the runtime's own connection keeps seeing the
# tables under the same names. Pickled events and results are left out: they mean nothing to
# SQL, they are big, and unpickling runs code; nw.messages and nw.traces show them as Python.

# The columns the views read, with their types. A table or column that an older file lacks
# reads as NULL (the views then give its default), so the views are the same over any
# nbworkers database, even one opened read-only, which cannot be migrated.
_VIEW_INPUTS = {
    "messages": {
        "seq": "BIGINT",
        "worker": "VARCHAR",
        "enqueued_at": "DOUBLE",
        "attempt": "INTEGER",
        "data": "BLOB",
        "started": "BOOLEAN",
        "due_at": "DOUBLE",
        "key": "VARCHAR",
    },
    "traces": {
        "seq": "BIGINT",
        "worker": "VARCHAR",
        "message_seq": "BIGINT",
        "started_at": "DOUBLE",
        "duration": "DOUBLE",
        "result_repr": "VARCHAR",
        "stdout": "VARCHAR",
        "error": "VARCHAR",
        "replay": "BOOLEAN",
        "attempt": "INTEGER",
        "timed_out": "BOOLEAN",
    },
    "dead_letters": {
        "seq": "BIGINT",
        "worker": "VARCHAR",
        "enqueued_at": "DOUBLE",
        "attempt": "INTEGER",
        "data": "BLOB",
        "key": "VARCHAR",
        "error": "VARCHAR",
        "died_at": "DOUBLE",
    },
    "workers": {
        "name": "VARCHAR",
        "kind": "VARCHAR",
        "paused": "BOOLEAN",
        "pause_reason": "VARCHAR",
        "done": "BIGINT",
        "failed": "BIGINT",
        "retried": "BIGINT",
        "skipped": "BIGINT",
        "last_run": "DOUBLE",
    },
}
VIEWS = ("messages", "traces", "dead_letters", "workers")
_REQUIRED_TABLES = ("messages", "traces", "workers")

# The last non-blank line of a traceback: "ValueError: bad input".
_ERROR_LINE = (
    r"nullif(trim(regexp_extract(rtrim({0}, chr(10) || chr(13) || chr(9) || ' '), "
    r"'[^\n]*$')), '')"
)

_VIEW_SQL = {
    "messages": """
        SELECT 'm' || seq AS id, seq, worker, to_timestamp(enqueued_at) AS enqueued_at,
               coalesce(attempt, 1) AS attempt, to_timestamp(due_at) AS due_at, key,
               coalesce(started, false) AS started, octet_length(data) AS size_bytes
        FROM {messages}""",
    "traces": """
        SELECT 't' || seq AS id, seq, worker, 'm' || message_seq AS message_id,
               to_timestamp(started_at) AS started_at, duration AS duration_s,
               error IS NULL AS ok, error, {error_line} AS error_line, stdout,
               CASE WHEN error IS NULL THEN result_repr END AS result_repr,
               coalesce(attempt, 1) AS attempt, coalesce(timed_out, false) AS timed_out,
               coalesce(replay, false) AS replay
        FROM {traces}""",
    "dead_letters": """
        SELECT 'm' || seq AS id, seq, worker, to_timestamp(enqueued_at) AS enqueued_at,
               coalesce(attempt, 1) AS attempt, key, error, {error_line} AS error_line,
               to_timestamp(died_at) AS died_at, octet_length(data) AS size_bytes
        FROM {dead_letters}""",
    "workers": """
        WITH w AS (SELECT * FROM {workers}),
        m AS (
            SELECT worker,
                   count(*) FILTER (WHERE NOT coalesce(started, false)) AS queued,
                   count(*) FILTER (WHERE coalesce(started, false)) AS running,
                   min(enqueued_at) FILTER (WHERE NOT coalesce(started, false)) AS oldest
            FROM {messages} GROUP BY worker),
        d AS (SELECT worker, count(*) AS dead FROM {dead_letters} GROUP BY worker),
        t AS (SELECT worker, max(started_at) AS last_run FROM {traces} GROUP BY worker),
        names AS (SELECT name AS worker FROM w UNION SELECT worker FROM m
                  UNION SELECT worker FROM d UNION SELECT worker FROM t)
        SELECT names.worker,
               -- Files written before the kind column: a name that ran was defined.
               coalesce(w.kind, CASE WHEN w.last_run IS NOT NULL THEN 'cron'
                                     WHEN w.done + w.failed > 0 THEN 'worker' END) AS kind,
               coalesce(w.paused, false) AS paused,
               CASE WHEN w.paused THEN w.pause_reason END AS pause_reason,
               coalesce(m.queued, 0) AS queued, coalesce(m.running, 0) AS running,
               coalesce(w.done, 0) AS done, coalesce(w.failed, 0) AS failed,
               coalesce(d.dead, 0) AS dead, coalesce(w.retried, 0) AS retried,
               coalesce(w.skipped, 0) AS skipped,
               to_timestamp(m.oldest) AS oldest_queued_at,
               to_timestamp(t.last_run) AS last_run_at,
               to_timestamp(w.last_run) AS last_scheduled_at
        FROM names
        LEFT JOIN w ON w.name = names.worker
        LEFT JOIN m ON m.worker = names.worker
        LEFT JOIN d ON d.worker = names.worker
        LEFT JOIN t ON t.worker = names.worker""",
}


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _tables(con, database: str | None = None) -> dict[str, set[str]]:
    """The columns of each table (never a view) in the main schema of ``database`` (by
    default the connection's own)."""
    tables: dict[str, set[str]] = {}
    for table, column in con.execute(
        """SELECT table_name, column_name FROM duckdb_columns()
           JOIN duckdb_tables() USING (database_name, schema_name, table_name)
           WHERE database_name = coalesce($1, current_database()) AND schema_name = 'main'""",
        [database],
    ).fetchall():
        tables.setdefault(table, set()).add(column)
    return tables


def _create_views(con, tables: dict[str, set[str]], database: str | None = None) -> None:
    """Make the stable views over the tables of ``database`` (by default the connection's own)
    on ``con``, as TEMP views that only ``con`` sees."""
    if database is None:
        database = con.execute("SELECT current_database()").fetchall()[0][0]
    db = _quote(database)
    sources = {}
    for table, inputs in _VIEW_INPUTS.items():
        present = tables.get(table, set())
        columns = ", ".join(
            _quote(name) if name in present else f"NULL::{type_} AS {_quote(name)}"
            for name, type_ in inputs.items()
        )
        rows = f"FROM {db}.main.{_quote(table)}" if table in tables else "WHERE false"
        sources[table] = f"(SELECT {columns} {rows})"
    for view in VIEWS:
        body = _VIEW_SQL[view].format(error_line=_ERROR_LINE.format("error"), **sources)
        con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS {body}")


# Table functions a query of nw.sql may call: those that only read. The others change state
# the read-only transaction does not cover (checkpoint, enable_logging writing files anywhere)
# or run SQL on a connection of their own, outside it (query, json_execute_serialized_sql).
_READING_TABLE_FUNCTIONS = frozenset(
    """read_csv read_csv_auto read_json read_json_auto read_ndjson read_ndjson_auto
    read_json_objects read_json_objects_auto read_ndjson_objects read_parquet parquet_scan
    parquet_metadata parquet_file_metadata parquet_kv_metadata parquet_schema read_text
    read_blob glob sniff_csv range generate_series unnest repeat repeat_row json_each json_tree
    duckdb_columns duckdb_constraints duckdb_databases duckdb_dependencies duckdb_functions
    duckdb_indexes duckdb_keywords duckdb_schemas duckdb_sequences duckdb_settings
    duckdb_tables duckdb_types duckdb_views pragma_table_info pragma_storage_info
    pragma_database_size pragma_version pragma_show pragma_platform pragma_collations
    pg_timezone_names icu_calendar_names""".split()
)
_READ_ONLY_RE = re.compile(r"transaction is launched in read-only mode")
_ONLY_READS = (
    "nw.sql only reads: change queues with nw.cancel, nw.purge, nw.requeue or nw.discard, "
    "which keep the live state and the file in step"
)


def _check_select(con, query: str) -> None:
    """Refuse, through DuckDB's own parser, all but one SELECT calling only reading table
    functions. What the SELECT itself would write is refused by its read-only transaction."""
    # nw.sql only reads: the runtime keeps the live state in memory, and a write behind its
    # back would be overwritten, or worse, disagree with it.
    statements = con.extract_statements(query)
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        found = ", ".join(s.type.name for s in statements) or "no statement"
        raise NBWorkersError(
            f"nw.sql runs one SELECT over the views {', '.join(VIEWS)}; this query is: "
            f"{found}. {_ONLY_READS}."
        )
    (tree,) = con.execute("SELECT json_serialize_sql($1)", [query]).fetchall()[0]
    try:
        parsed = json.loads(tree)
    except RecursionError:
        parsed = {"error": True, "error_message": "it is nested too deeply to be checked"}
    if parsed.get("error"):
        raise NBWorkersError(
            f"{_ONLY_READS}, and it cannot check this SELECT "
            f"({parsed.get('error_message', 'DuckDB cannot serialize it')}): write it another "
            "way."
        )
    called = sorted(_table_functions(parsed) - _READING_TABLE_FUNCTIONS)
    if called:
        raise NBWorkersError(
            f"{_ONLY_READS}; the table functions it calls are those that only read (such as "
            f"read_csv, read_parquet, read_json, read_text, range, unnest), and this query "
            f"calls {', '.join(f'{name}()' for name in called)}."
        )


def _table_functions(node) -> set[str]:
    """The names of the table functions a statement's parse tree (as JSON) calls."""
    found = set()
    stack = [node]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") == "TABLE_FUNCTION":
                found.add(str(node.get("function", {}).get("function_name", "")).lower())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _read_only(cursor, query: str, params, results):
    """Run the SELECT ``query`` in a read-only transaction, always rolled back, and return its
    rows as a relation of ``results``, a connection to another (in-memory) database: neither
    the query nor the relation's own methods (``query``, ``insert_into``...) can write to the
    queue's database."""
    cursor.execute("BEGIN TRANSACTION READ ONLY")
    try:
        relation = cursor.sql(query) if params is None else cursor.sql(query, params=params)
        # Arrow's C stream interface: the rows pass from one database to the other without
        # Python objects (and without pyarrow), their DuckDB types kept (lossless conversion).
        incoming = results.from_arrow(relation.__arrow_c_stream__())
        try:
            results.execute("CREATE TEMP TABLE result AS FROM incoming")  # a replacement scan
        finally:
            # An unread stream keeps its result open on the cursor, which then refuses even
            # the ROLLBACK: let it go first.
            del incoming, relation
    except duckdb.TransactionException as exc:
        if not _READ_ONLY_RE.search(str(exc)):
            raise
        raise NBWorkersError(
            f"{_ONLY_READS}; this SELECT writes (a data-modifying WITH?): {_first_line(exc)}"
        ) from None
    finally:
        try:
            cursor.execute("ROLLBACK")
        except duckdb.TransactionException:
            pass  # a failed statement ended the transaction already; raise its own error
    return results.table("result")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class Store:
    """One DuckDB file (or ``:memory:``) holding queues, worker state and traces.

    The file and its write-ahead log are readable by their owner only (events can carry
    secrets). A file that cannot be read back is moved aside, never deleted
    (``StoreCorruptError``). After DuckDB invalidates the connection (a checkpoint failed on a
    full disk), the next ``write`` opens the file again.
    """

    def __init__(self, path: str, traces_kept: int = 10):
        # Absolute from the start: %cd or os.chdir later must not move the file (nor its log,
        # which DuckDB finds beside the path it was given)
        self.path = path if path == ":memory:" else _absolute(path)
        self.traces_kept = traces_kept
        self._readers = threading.local()  # .cursor: this thread's connection for nw.sql
        self._readers_lock = threading.Lock()
        self._results_db = None  # the in-memory database of nw.sql's results, once needed
        # What the file holds, once load() read it, so that a batch updates those rows in
        # one statement instead of deleting and inserting them (None: not known; as before).
        self._worker_rows: set[str] | None = None
        self._has_next_seq = False
        self.con = None
        if path != ":memory:":
            self._make_folder(Path(self.path).parent)
        try:
            log = self._prepare_files()
            self._connect()
            if log:
                self._check_replayed(log)
            self._secure()  # before anything is written to the file or its log
            self.con.execute(_SCHEMA)
            self.con.execute(_MIGRATIONS)
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

    @staticmethod
    def _make_folder(folder: Path) -> None:
        # Every folder made is 0700, not only the last: mkdir's parents get the umask's mode,
        # world-writable under umask 000, and whoever can write a folder can swap what is in it.
        missing = [p for p in folder.parents if not p.exists()]
        try:
            for path in [*reversed(missing), folder]:
                path.mkdir(mode=0o700, exist_ok=True)  # a file in the way raises
        except OSError as exc:
            raise NBWorkersError(
                f"nbworkers cannot create the folder {os.path.abspath(folder)!r} for its queue "
                f"database ({exc.strerror}); {_HOW_TO_MOVE}"
            ) from exc

    def _connect(self) -> None:
        self.con = duckdb.connect(self.path)
        self.con.execute(f"SET checkpoint_threshold = '{_CHECKPOINT_THRESHOLD}'")

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
            return self._set_aside(_first_line(exc), log_only="WAL file" in text)
        return NBWorkersError(
            f"nbworkers cannot open its queue database {self.path!r}: {text}. "
            f"To go on, {_HOW_TO_MOVE}."
        )

    def _set_aside(self, reason: str, log_only: bool = False) -> NBWorkersError:
        """Rename a file DuckDB cannot read (and its log) to ``NAME.corrupt-<time>``, so that
        the next start makes a fresh one; never delete a byte of it. ``log_only``: the file
        itself was fine, only its write-ahead log could not be replayed."""
        path = self.path
        kept = base = f"{path}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}"
        n = 1
        while os.path.lexists(kept) or os.path.lexists(kept + ".wal"):
            n += 1
            kept = f"{base}-{n}"
        moved = []
        try:
            for suffix in ("", ".wal"):
                if os.path.lexists(path + suffix):
                    os.rename(path + suffix, kept + suffix)
                    moved.append(kept + suffix)
        except OSError as error:
            return NBWorkersError(
                f"nbworkers' queue database {path!r} is damaged and cannot be read "
                f"({reason}), and it could not be moved aside ({error.strerror}). "
                f"Move or rename it yourself (nbworkers never deletes it), or {_HOW_TO_MOVE}."
            )
        wal_note = ""
        if log_only:
            wal_note = (
                f" Only its write-ahead log was unreadable: without {kept + '.wal'!r}, "
                f"{kept!r} opens as of its last checkpoint."
            )
        return StoreCorruptError(
            f"nbworkers' queue database {path!r} is damaged and cannot be read "
            f"({reason}). Nothing was deleted: it was moved aside to "
            f"{' and '.join(map(repr, moved))}. Run the cell again to start with a fresh, "
            "empty database in its place; the queued messages, traces and pause states of the "
            f"damaged one are not in it (to look for them: "
            f"duckdb.connect({kept!r}, read_only=True)).{wal_note}"
        )

    def _secure(self) -> None:
        # Events can carry secrets: the database is readable by its owner only (a file made
        # by an older nbworkers, or copied in, may not be).
        if self.path == ":memory:":
            return
        for name in (self.path, self.path + ".wal"):
            if os.path.exists(name):
                os.chmod(name, 0o600)
        self._private_wal()

    def _prepare_files(self) -> bytes | None:
        """Before DuckDB opens anything: refuse a database or log that is a link or another
        user's, make a new database private from its first byte, and return the bytes of a
        write-ahead log waiting to be replayed (None when there is none)."""
        if self.path == ":memory:":
            return None
        if not self._own(self.path):
            self._create_private()
        wal = self.path + ".wal"
        if not self._own(wal):
            return None
        with open(wal, "rb") as f:
            return f.read() or None

    def _own(self, name: str, writing: bool = False) -> bool:
        """True if ``name`` is a file of this process's user, False if there is none; raise
        NBWorkersError, writing nothing to it, if it is a symbolic link or someone else's (in
        a shared folder such as /tmp, another user can make it first to read or change what
        nbworkers writes there)."""
        try:
            st = os.lstat(name)
        except FileNotFoundError:
            return False
        what = "queue database" if name == self.path else "queue database's write-ahead log"
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(name)
            if name == self.path:
                fix = (
                    "If the link is yours, give nbworkers the real file: %config "
                    f"NBWorkers.db_path = {os.path.realpath(name)!r}; otherwise {_HOW_TO_MOVE}."
                )
            else:
                fix = f"Remove the link (nbworkers makes the log itself), or {_HOW_TO_MOVE}."
            raise NBWorkersError(
                f"nbworkers will not use its {what} {name!r}: it is a symbolic link (to "
                f"{target!r}), which could send your messages into another file. Nothing was "
                f"written to it. {fix}{_WAITING if writing else ''}"
            )
        me = os.geteuid()
        if st.st_uid != me:
            raise NBWorkersError(
                f"nbworkers will not use its {what} {name!r}: it belongs to "
                f"{_owner(st.st_uid)}, not to you ({_owner(me)}), who could read and change "
                "what nbworkers writes there. Nothing was written to it. Keep the database in "
                f"a folder only you can write (the default, .nbworkers/ beside the notebook, "
                f"is one): {_HOW_TO_MOVE}. If the file is yours after all (copied from "
                f"another account), make it yours with chown.{_WAITING if writing else ''}"
            )
        return True

    def _create_private(self) -> None:
        """Make a new, empty database readable by its owner only from its first byte.

        DuckDB creates files with the umask's mode (usually readable by everyone) and refuses
        an empty file; the process-wide umask cannot be changed for one thread. So the empty
        database is made in a private (0700) temporary folder beside it, and copied into a
        file created 0600."""
        scratch = tempfile.mkdtemp(prefix=".nbworkers-new-", dir=os.path.dirname(self.path))
        try:
            made = os.path.join(scratch, "new.duckdb")
            duckdb.connect(made).close()
            with open(made, "rb") as f:
                empty = f.read()
        finally:
            shutil.rmtree(scratch)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            self._own(self.path)  # made meanwhile: used only if it is ours
            return
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
            view = memoryview(empty)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            os.unlink(self.path)  # ours, and holding nothing yet
            raise
        finally:
            os.close(fd)

    def _check_replayed(self, log: bytes) -> None:
        """Raise StoreCorruptError (the file and its log moved aside) if DuckDB, opening the
        file, dropped commits of ``log``, the write-ahead log found beside it.

        DuckDB says nothing when it stops replaying early (see ``wal``), but cuts the log
        where it stopped at its next write: one small write shows how far it went."""
        con = self.con
        con.execute("SET checkpoint_threshold = '1TB'")  # keep the log to compare it
        con.execute("PRAGMA disable_checkpoint_on_shutdown")  # the file as it was, if damaged
        con.execute("CREATE OR REPLACE TABLE nbworkers_wal_check (x INTEGER)")
        con.execute("DROP TABLE nbworkers_wal_check")
        with open(self.path + ".wal", "rb") as f:
            now = f.read()
        if now[: len(log)] != log:
            replayed = _common_prefix(now, log)
            if wal.lost_commits(log, replayed):
                self._drop()
                self._restore_log(log)
                raise self._set_aside(
                    "its write-ahead log cannot be replayed in full: DuckDB stopped at byte "
                    f"{replayed} of {len(log)}, before commits",
                    log_only=True,
                )
        con.execute("PRAGMA enable_checkpoint_on_shutdown")
        con.execute(f"SET checkpoint_threshold = '{_CHECKPOINT_THRESHOLD}'")

    def _restore_log(self, log: bytes) -> None:
        """Put back the write-ahead log as it was found (DuckDB cut it at its first write)."""
        fd, name = tempfile.mkstemp(prefix=".nbworkers-log-", dir=os.path.dirname(self.path))
        with os.fdopen(fd, "wb") as f:
            f.write(log)
            f.flush()
            os.fsync(f.fileno())
        os.replace(name, self.path + ".wal")

    def _private_wal(self) -> None:
        """Create the write-ahead log, empty and 0600, before DuckDB does: DuckDB deletes it at
        every checkpoint and would create it again readable by everyone (umask), whereas it
        writes into an existing one keeping its mode. One that is there already must be this
        user's file, not a link (``_own``)."""
        if self.path != ":memory:" and not self._make_wal():
            self._own(self.path + ".wal", writing=True)

    def _make_wal(self) -> bool:
        """Create the empty, private write-ahead log; False if there is one already."""
        try:
            fd = os.open(
                self.path + ".wal", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600
            )
        except FileExistsError:
            return False
        os.close(fd)
        return True

    def _remake_wal(self) -> None:
        """After a commit or checkpoint (which may have deleted the log): make the log again at
        once, so that no one else can make it before the next write. Errors wait for that
        write, which checks again (``_private_wal``) and reports them."""
        if self.path == ":memory:":
            return
        try:
            self._make_wal()
        except OSError:
            pass  # reported by the next write's _private_wal, with nothing written

    def load(self) -> Loaded:
        """Read the state a new runtime starts from; StoreCorruptError (the file moved
        aside) if DuckDB finds it damaged."""
        try:
            return self._load()
        except duckdb.Error as exc:
            if not _CORRUPT_RE.search(str(exc)):
                raise
            self._drop()
            raise self._set_aside(_first_line(exc), log_only="WAL file" in str(exc)) from exc

    def _load(self) -> Loaded:
        con = self.con
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        workers = [
            WorkerRow(*row)
            for row in con.execute(
                """SELECT name, paused, done, failed, last_run, skipped, pause_reason,
                          coalesce(retried, 0), kind FROM workers"""
            ).fetchall()
        ]
        messages = [
            MessageRow(*row)
            for row in con.execute(
                """SELECT seq, worker, enqueued_at, attempt, data, coalesce(started, false),
                          due_at, key FROM messages ORDER BY seq"""
            ).fetchall()
        ]
        traces = [
            TraceRow(*row)
            for row in con.execute(
                """SELECT seq, worker, message_seq, started_at, duration, input, result,
                          result_repr, stdout, error, replay, coalesce(attempt, 1),
                          coalesce(timed_out, false)
                   FROM traces ORDER BY seq DESC"""
            ).fetchall()
        ]
        dead = [
            DeadRow(*row)
            for row in con.execute(
                """SELECT seq, worker, enqueued_at, attempt, data, key, error, died_at
                   FROM dead_letters ORDER BY died_at, seq"""
            ).fetchall()
        ]
        top = con.execute(
            """SELECT greatest((SELECT max(seq) FROM messages), (SELECT max(seq) FROM traces),
                               (SELECT max(message_seq) FROM traces),
                               (SELECT max(seq) FROM dead_letters))"""
        ).fetchone()[0]
        next_seq = max(int(meta.get("next_seq", 1)), (top or 0) + 1)
        self._worker_rows = {w.name for w in workers}
        self._has_next_seq = "next_seq" in meta
        if meta.get("schema_version") != str(SCHEMA_VERSION):
            con.execute("DELETE FROM meta WHERE key = 'schema_version'")
            con.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
        return Loaded(next_seq, workers, messages, traces, dead)

    def write(self, batch: Batch) -> str | None:
        """Apply one batch in one transaction (a few statements, whatever its size).

        Returns a warning (and the batch is on disk) when DuckDB committed it but its
        automatic checkpoint failed; raises, with nothing written, on any other failure.
        """
        if self.con is None:
            self._connect()  # DuckDB invalidated the last connection: open the file again
        self._private_wal()
        inserts = batch.inserts
        acks = batch.acks
        if inserts and acks:
            inserted = {m.seq for m in inserts}
            done_before_written = inserted.intersection(acks)
            if done_before_written:
                inserts = [m for m in inserts if m.seq not in done_before_written]
                acks = [s for s in acks if s not in done_before_written]
        con = self.con
        con.execute("BEGIN")
        try:
            if inserts:
                con.execute(
                    """INSERT INTO messages (seq, worker, enqueued_at, attempt, data, started,
                                             due_at, key)
                       SELECT unnest($1), unnest($2), unnest($3), unnest($4), unnest($5),
                              unnest($6), unnest($7::DOUBLE[]), unnest($8::VARCHAR[])""",
                    [
                        [m.seq for m in inserts],
                        [m.worker for m in inserts],
                        [m.enqueued_at_s for m in inserts],
                        [m.attempt for m in inserts],
                        [m.data for m in inserts],
                        [m.started for m in inserts],
                        [m.due_at_s for m in inserts],
                        [storable(m.key) for m in inserts],
                    ],
                )
            if batch.updates:
                ups = batch.updates
                con.execute(
                    """UPDATE messages SET attempt = u.attempt, started = u.started,
                                           due_at = u.due_at
                       FROM (SELECT unnest($1) AS seq, unnest($2) AS attempt,
                                    unnest($3) AS started, unnest($4::DOUBLE[]) AS due_at) u
                       WHERE messages.seq = u.seq""",
                    [
                        [m.seq for m in ups],
                        [m.attempt for m in ups],
                        [m.started for m in ups],
                        [m.due_at_s for m in ups],
                    ],
                )
            if acks:
                # The range lets DuckDB skip row groups by their min/max: acks cluster at the
                # head of a FIFO queue, so this stays cheap however long the queue is.
                con.execute(
                    """DELETE FROM messages WHERE seq BETWEEN $2 AND $3
                       AND seq IN (SELECT unnest($1))""",
                    [acks, min(acks), max(acks)],
                )
            if batch.dead_inserts:
                dead = batch.dead_inserts
                con.execute(
                    """INSERT INTO dead_letters SELECT unnest($1), unnest($2), unnest($3),
                           unnest($4), unnest($5), unnest($6::VARCHAR[]), unnest($7),
                           unnest($8)""",
                    [
                        [d.message.seq for d in dead],
                        [d.message.worker for d in dead],
                        [d.message.enqueued_at_s for d in dead],
                        [d.message.attempt for d in dead],
                        [d.message.data for d in dead],
                        [storable(d.message.key) for d in dead],
                        [storable(d.error) for d in dead],
                        [d.died_at_s for d in dead],
                    ],
                )
            if batch.dead_deletes:
                con.execute(
                    "DELETE FROM dead_letters WHERE seq IN (SELECT unnest($1))",
                    [batch.dead_deletes],
                )
            if batch.traces:
                self._write_traces(batch.traces)
            if batch.workers:
                self._write_workers(batch.workers)
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
        self._remake_wal()
        return None

    def _write_workers(self, rows: list[WorkerRow]) -> None:
        """Rows the file has are updated in place; new names (or all, before load) are
        deleted and inserted."""
        known = self._worker_rows
        old = [] if known is None else [w for w in rows if w.name in known]
        new = rows if known is None else [w for w in rows if w.name not in known]
        if old:
            self.con.execute(
                """UPDATE workers SET paused = u.paused, done = u.done, failed = u.failed,
                          last_run = u.last_run, skipped = u.skipped,
                          pause_reason = u.pause_reason, retried = u.retried, kind = u.kind
                   FROM (SELECT unnest($1) AS name, unnest($2) AS paused, unnest($3) AS done,
                                unnest($4) AS failed, unnest($5::DOUBLE[]) AS last_run,
                                unnest($6) AS skipped, unnest($7::VARCHAR[]) AS pause_reason,
                                unnest($8) AS retried, unnest($9::VARCHAR[]) AS kind) u
                   WHERE workers.name = u.name""",
                _columns(old),
            )
        if new:
            names = [w.name for w in new]
            self.con.execute("DELETE FROM workers WHERE name IN (SELECT unnest($1))", [names])
            self.con.execute(
                """INSERT INTO workers (name, paused, done, failed, last_run, skipped,
                                        pause_reason, retried, kind)
                   SELECT unnest($1), unnest($2), unnest($3), unnest($4),
                          unnest($5::DOUBLE[]), unnest($6), unnest($7::VARCHAR[]),
                          unnest($8), unnest($9::VARCHAR[])""",
                _columns(new),
            )

    def _committed(self, batch: Batch) -> None:
        """What a committed batch added to the file (for the next batches' statements)."""
        if self._worker_rows is not None:
            self._worker_rows.update(w.name for w in batch.workers)
        if batch.next_seq is not None:
            self._has_next_seq = True

    def _write_traces(self, rows: list[TraceRow]) -> None:
        self.con.execute(
            """INSERT INTO traces (seq, worker, message_seq, started_at, duration, input, result,
                                   result_repr, stdout, error, replay, attempt, timed_out)
               SELECT unnest($1), unnest($2), unnest($3), unnest($4), unnest($5),
                   unnest($6::BLOB[]), unnest($7::BLOB[]), unnest($8), unnest($9),
                   unnest($10::VARCHAR[]), unnest($11), unnest($12), unnest($13)""",
            _columns(rows),
        )
        self.con.execute(
            """DELETE FROM traces WHERE seq IN (
                   SELECT seq FROM (SELECT seq, row_number() OVER (
                       PARTITION BY worker ORDER BY seq DESC) AS n FROM traces)
                   WHERE n > $1)""",
            [self.traces_kept],
        )

    def checkpoint(self) -> None:
        """Move the write-ahead log into the file and reclaim space of deleted rows."""
        if self.con is not None:
            self.con.execute("CHECKPOINT")
            self._remake_wal()

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
        _check_select(cursor, query)
        return _read_only(cursor, query, params, self._results())

    def _results(self):
        """A new connection to the in-memory database that holds nw.sql's results; each
        result is a TEMP table of its own connection, gone with the relation."""
        with self._readers_lock:
            if self._results_db is None:
                if self.con is None:
                    raise NBWorkersError(
                        "nbworkers' database is closed (nw.shutdown or %unload_ext); "
                        "run %load_ext nbworkers again"
                    )
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
                if self.con is None:
                    raise NBWorkersError(
                        "nbworkers' database is closed (nw.shutdown or %unload_ext); "
                        "run %load_ext nbworkers again"
                    )
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
            self._drop_empty_wal()
        if results is not None:
            results.close()  # and the relations nw.sql returned

    def _drop_empty_wal(self) -> None:
        """Once the file is closed, remove the empty log ``_remake_wal`` left after the last
        checkpoint: nothing writes any more, and the next open makes it private again."""
        if self.path == ":memory:":
            return
        wal = self.path + ".wal"
        try:
            st = os.lstat(wal)
            if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and st.st_size == 0:
                os.unlink(wal)
        except FileNotFoundError:
            pass  # DuckDB's own close removed it, or there was none


# ----- reading a file from outside a kernel (python -m nbworkers status) ---------------------


@dataclass
class WorkerStatus:
    """One row of the ``workers`` view; times are epoch seconds."""

    name: str
    kind: str | None
    paused: bool
    pause_reason: str | None
    queued: int
    running: int
    done: int
    failed: int
    dead: int
    retried: int
    skipped: int
    oldest_queued_s: float | None
    last_run_s: float | None
    last_scheduled_s: float | None


@dataclass
class Failure:
    """A failed run among the kept traces."""

    at_s: float
    worker: str
    trace_id: str
    message_id: str
    attempt: int
    timed_out: bool
    replay: bool
    error_line: str | None


@dataclass
class Status:
    """What ``python -m nbworkers status`` shows of a database file."""

    path: str
    schema_version: str | None
    workers: list[WorkerStatus]
    failures: list[Failure]  # newest first


_WHERE = (
    "A notebook's queue database is .nbworkers/<notebook name>.duckdb in the folder its kernel "
    "started in, or the file NBWORKERS_DB names."
)


STATUS_TIMEOUT_S = 10.0
# The name the file is attached under: its own functions and macros are never searched, so a
# function status calls is always DuckDB's.
_FILE = "nbworkers_file"


def read_status(path: str, failures: int = 10, timeout_s: float = STATUS_TIMEOUT_S) -> Status:
    """The workers, crons, unhandled names and latest failures of the database file ``path``,
    read without changing the file: opened read-only, nothing created or migrated.

    Safe on any file: only nbworkers' own tables are read, after checking they are tables (a
    view's query, or a computed column, is SQL the file defines, which is never run); the
    file's functions are never called; no other file can be read; StatusTimeoutError after
    ``timeout_s`` seconds.
    """
    deadline = time.monotonic() + timeout_s
    con = _open_read_only(path)

    def fetch(query: str, params=None) -> list[tuple]:
        # DuckDB's own limit interrupts a statement that runs past the deadline (no thread,
        # no signal); it stays set for the statements made in between (views, metadata).
        left_ms = max(1, int((deadline - time.monotonic()) * 1000))
        con.execute(f"SET max_execution_time = {left_ms}")
        return con.execute(query, params).fetchall()

    try:
        return _read_status(con, path, failures, fetch)
    except duckdb.InterruptException:
        raise StatusTimeoutError(
            f"reading {path!r} took longer than {timeout_s:g} s, so it was stopped (nothing "
            "was changed)"
        ) from None
    except duckdb.Error as exc:
        # nbworkers' table names with other columns or values (changed by hand, or another
        # tool's file): not an nbworkers database status can read
        raise NBWorkersError(
            f"{path!r} cannot be read as an nbworkers database: its tables are not the ones "
            f"nbworkers writes ({_first_line(exc)}). Nothing was changed. {_WHERE}"
        ) from None
    finally:
        con.close()


def _read_status(con, path: str, failures: int, fetch) -> Status:
    """``read_status`` on the connection ``con`` to the attached file."""
    _check_own_tables(path, fetch)
    tables = _tables(con, _FILE)
    missing = [t for t in _REQUIRED_TABLES if t not in tables]
    if missing:
        raise NBWorkersError(
            f"{path!r} is a DuckDB database but not an nbworkers one (it has no "
            f"{', '.join(missing)} table). {_WHERE}"
        )
    version = None
    if "meta" in tables:
        meta = dict(fetch(f"SELECT key, value FROM {_quote(_FILE)}.main.meta"))
        version = meta.get("schema_version")
    _create_views(con, tables, _FILE)
    workers = [
        WorkerStatus(*row)
        for row in fetch(
            """SELECT worker, kind, paused, pause_reason, queued, running, done, failed,
                      dead, retried, skipped, epoch(oldest_queued_at), epoch(last_run_at),
                      epoch(last_scheduled_at)
               FROM workers ORDER BY worker"""
        )
    ]
    latest = [
        Failure(*row)
        for row in fetch(
            """SELECT epoch(started_at), worker, id, message_id, attempt, timed_out, replay,
                      error_line
               FROM traces WHERE NOT ok ORDER BY seq DESC LIMIT ?""",
            [failures],
        )
    ]
    return Status(path, version, workers, latest)


def _check_own_tables(path: str, fetch) -> None:
    """Refuse a file whose nbworkers names are views, or whose tables compute a column:
    reading either would run SQL the file defines."""
    names = ["meta", *_VIEW_INPUTS]
    not_tables = fetch(
        """SELECT view_name FROM duckdb_views()
           WHERE database_name = $1 AND schema_name = 'main' AND list_contains($2, view_name)
           ORDER BY view_name""",
        [_FILE, names],
    )
    computed = fetch(
        """SELECT table_name, string_agg(column_name, ', ' ORDER BY column_index)
           FROM duckdb_columns()
           WHERE database_name = $1 AND schema_name = 'main' AND list_contains($2, table_name)
                 AND is_generated
           GROUP BY table_name ORDER BY table_name""",
        [_FILE, names],
    )
    if not_tables:
        found = f"{not_tables[0][0]!r} is a view, not a table"
    elif computed:
        found = f"{computed[0][0]!r} has a computed column ({computed[0][1]})"
    else:
        return
    raise NBWorkersError(
        f"{path!r} was not written by nbworkers (or was changed by hand): {found}. nbworkers "
        "makes only plain tables, and status runs no SQL a file defines (a view's query could "
        "read your files, or run for ever), so it reads nothing more of this file."
    )


def _open_read_only(path: str):
    """A connection to an in-memory database with the existing file ``path`` attached
    read-only, and no access to other files; clear errors for everything else."""
    if not os.path.exists(path):
        raise NBWorkersError(f"there is no file {path!r} (nothing was created). {_WHERE}")
    if os.path.isdir(path):
        found = sorted(p.name for p in Path(path).glob("*.duckdb"))
        hint = f"its databases: {', '.join(found)}" if found else "it holds no .duckdb file"
        raise NBWorkersError(f"{path!r} is a folder, not a database file; {hint}.")
    con = duckdb.connect(
        ":memory:",
        config={"autoload_known_extensions": False, "autoinstall_known_extensions": False},
    )
    try:
        con.execute(f"ATTACH $1 AS {_quote(_FILE)} (READ_ONLY)", [path])
        # From here on no file but the attached one can be read (nor written), whatever runs.
        con.execute("SET enable_external_access = false")
    except duckdb.Error as exc:
        con.close()
        text = str(exc)
        held = _LOCK_RE.search(text)
        if held:
            raise StoreLockedError(
                f"{path!r} is in use by another process ({_process_description(held['pid'])}), "
                "probably the kernel of its notebook: while a kernel holds its database, "
                "DuckDB lets no other process open it, not even to read. Look from inside that "
                'kernel (%nbworkers, nw.counts(name), or nw.sql("select * from workers")), or '
                "shut the kernel down and run this again. Nothing was changed."
            ) from None
        raise NBWorkersError(
            f"{path!r} cannot be read as a DuckDB database ({text.splitlines()[0]}). {_WHERE}"
        ) from exc
    return con


def _common_prefix(a: bytes, b: bytes) -> int:
    """How many first bytes ``a`` and ``b`` have in common."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        mid = (low + high + 1) // 2
        if a[:mid] == b[:mid]:
            low = mid
        else:
            high = mid - 1
    return low


def _columns(rows: list) -> list[list]:
    """Dataclass rows as one list per field, in field order (the ``unnest`` parameters)."""
    return [list(col) for col in zip(*map(astuple, rows), strict=True)]
