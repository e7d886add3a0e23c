"""What ``python -m nbworkers status`` reads of a database file, from outside any kernel: the
file attached read-only to an in-memory database with no access to other files, only
nbworkers' own plain tables read (never a view or computed column the file defines), within a
time limit; nothing is created, migrated or changed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

from ..errors import NBWorkersError, StatusTimeoutError, StoreLockedError
from .database import _LOCK_RE
from .files import _process_description
from .views import _REQUIRED_TABLES, _VIEW_INPUTS, _create_views, _first_line, _quote, _tables


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
        if not found:
            raise NBWorkersError(
                f"{path!r} is a folder, not a database file; it holds no .duckdb file."
            )
        example = os.path.join(path, found[0])
        raise NBWorkersError(
            f"{path!r} is a folder, not a database file; its databases: {', '.join(found)}. "
            f"Give one as PATH: python -m nbworkers status {example}"
        )
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
        held = _LOCK_RE.search(str(exc))
        if held:
            raise StoreLockedError(
                f"{path!r} is in use by another process ({_process_description(held['pid'])}), "
                "probably the kernel of its notebook: while a kernel holds its database, "
                "DuckDB lets no other process open it, not even to read. Look from inside that "
                'kernel (%nbworkers, nw.counts(name), or nw.sql("select * from workers")), or '
                "shut the kernel down and run this again. Nothing was changed."
            ) from None
        raise NBWorkersError(
            f"{path!r} cannot be read as a DuckDB database ({_first_line(exc)}). {_WHERE}"
        ) from exc
    return con
