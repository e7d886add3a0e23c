"""The database's tables: their schema, the migrations a file from an older version gets when
opened, and the start-up read of everything a new runtime starts from (``read``).
"""

from __future__ import annotations

from ..fingerprint import fingerprint
from . import packed, queued
from .rows import FanInRow, Loaded, TraceRow, WorkerRow, storable

SCHEMA_VERSION = 5

SCHEMA = """
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
CREATE TABLE IF NOT EXISTS rate_starts (worker VARCHAR, started_at DOUBLE);
CREATE TABLE IF NOT EXISTS results (
    first_seq BIGINT, last_seq BIGINT, worker VARCHAR, ended_at DOUBLE, count INTEGER,
    body BLOB, failures VARCHAR);
CREATE TABLE IF NOT EXISTS failure_groups (
    worker VARCHAR, fingerprint VARCHAR, title VARCHAR, traceback VARCHAR, first_seen DOUBLE);
CREATE TABLE IF NOT EXISTS fan_ins (
    first_seq BIGINT, count BIGINT, worker VARCHAR, then_worker VARCHAR, created_at DOUBLE);
"""
# Columns added after version 1: a file written by 0.1 gains them when opened.
MIGRATIONS = """
ALTER TABLE messages ADD COLUMN IF NOT EXISTS started BOOLEAN DEFAULT false;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS due_at DOUBLE;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS key VARCHAR;
ALTER TABLE workers ADD COLUMN IF NOT EXISTS pause_reason VARCHAR;
ALTER TABLE workers ADD COLUMN IF NOT EXISTS retried BIGINT DEFAULT 0;
ALTER TABLE traces ADD COLUMN IF NOT EXISTS attempt INTEGER DEFAULT 1;
ALTER TABLE traces ADD COLUMN IF NOT EXISTS timed_out BOOLEAN DEFAULT false;
ALTER TABLE workers ADD COLUMN IF NOT EXISTS kind VARCHAR;
ALTER TABLE workers ADD COLUMN IF NOT EXISTS keep INTEGER;
ALTER TABLE traces ADD COLUMN IF NOT EXISTS calls BLOB;
ALTER TABLE traces ADD COLUMN IF NOT EXISTS calls_text VARCHAR;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS priority INTEGER DEFAULT 0;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS expires_at DOUBLE;
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS reason VARCHAR;
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS priority INTEGER DEFAULT 0;
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS expires_at DOUBLE;
ALTER TABLE traces ADD COLUMN IF NOT EXISTS message_seqs BIGINT[];
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS fingerprint VARCHAR;
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS title VARCHAR;
"""


def read(con, window: int | None = None) -> tuple[Loaded, dict[str, str]]:
    """Everything a new runtime starts from, and the ``meta`` table, read through ``con``
    (a DuckDB connection or cursor on a database with the schema and migrations); each
    worker's ready messages beyond ``window`` (None: none) are counted, not read (queued.py)."""
    meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
    workers = [
        WorkerRow(*row)
        for row in con.execute(
            """SELECT name, paused, done, failed, last_run, skipped, pause_reason,
                      coalesce(retried, 0), kind, keep FROM workers"""
        ).fetchall()
    ]
    messages, spilled, spilled_keys = queued.read_window(con, window)
    traces = [
        TraceRow(*row)
        for row in con.execute(
            """SELECT seq, worker, message_seq, started_at, duration, input, result,
                      result_repr, stdout, error, replay, coalesce(attempt, 1),
                      coalesce(timed_out, false), calls, calls_text, message_seqs
               FROM traces ORDER BY seq DESC"""
        ).fetchall()
    ]
    fan_ins = [
        FanInRow(*row)
        for row in con.execute(
            """SELECT first_seq, count, worker, then_worker, created_at FROM fan_ins
               ORDER BY first_seq"""
        ).fetchall()
    ]
    fan_in_results = []
    if fan_ins:
        # The packed rows that hold a member of an open group (one query, however many
        # groups); what else they hold, FanIn.load ignores.
        rows = con.execute(
            """SELECT worker, ended_at, count, body, failures FROM results r
               WHERE EXISTS (SELECT 1 FROM fan_ins g
                             WHERE r.first_seq <= g.first_seq + g.count - 1
                               AND r.last_seq >= g.first_seq)"""
        ).fetchall()
        first = min(g.first_seq for g in fan_ins)
        last = max(g.first_seq + g.count - 1 for g in fan_ins)
        fan_in_results = packed.unpack_range(rows, first, last)
    top = con.execute(
        """SELECT greatest((SELECT max(seq) FROM messages), (SELECT max(seq) FROM traces),
                           (SELECT max(message_seq) FROM traces),
                           (SELECT max(seq) FROM dead_letters))"""
    ).fetchone()[0]
    next_seq = max(int(meta.get("next_seq", 1)), (top or 0) + 1)
    loaded = Loaded(
        next_seq,
        workers,
        messages,
        traces,
        [],  # the dead letters' groups: store/dead.py, once failure_groups is filled
        fan_ins=fan_ins,
        fan_in_results=fan_in_results,
        spilled=spilled,
        spilled_keys=spilled_keys,
    )
    loaded.rate_starts = con.execute(
        "SELECT worker, started_at FROM rate_starts ORDER BY started_at"
    ).fetchall()
    return loaded, meta


def fill_fingerprints(con) -> None:
    """Give the dead letters of a file from before failure groups (schema 4) their group,
    made from their traceback as a new failure's would be (nbworkers/fingerprint.py)."""
    rows = con.execute(
        "SELECT seq, error FROM dead_letters WHERE fingerprint IS NULL ORDER BY seq"
    ).fetchall()
    if not rows:
        return
    groups = [fingerprint(error) for _, error in rows]
    con.execute(
        """UPDATE dead_letters SET fingerprint = g.fingerprint, title = g.title
           FROM (SELECT unnest($1) AS seq, unnest($2::VARCHAR[]) AS fingerprint,
                        unnest($3::VARCHAR[]) AS title) g
           WHERE dead_letters.seq = g.seq""",
        [[s for s, _ in rows], [g.digest for g in groups], [storable(g.title) for g in groups]],
    )


def stamp_version(con, meta: dict[str, str]) -> None:
    """Record this version's schema number in the file, unless ``meta`` has it already."""
    if meta.get("schema_version") != str(SCHEMA_VERSION):
        con.execute("DELETE FROM meta WHERE key = 'schema_version'")
        con.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
