"""Dead letters on disk, and their failure groups (``failure_groups``): a dead letter's row
keeps its own error line ("KeyError: 'text'"), and its group's row keeps a whole traceback,
written once per worker and group. Writing every dead letter's traceback cost a failing drain
half its rate (docs/failures.md, "A failing run costs less than it did").

Only the file holds dead letters: the runtime keeps their counts by group (``read_summary``
at open) and reads them back a page at a time (``read_page``, nw.dead_letters) or a chunk at a
time (``read_rows``, nw.requeue), so its memory does not grow with their number.

Written inside ``DuckDBStore.apply``'s transaction; each function takes the connection (or a
cursor, to read)."""

from __future__ import annotations

from collections.abc import Iterator

from .rows import (
    DEAD_TYPES,
    DeadGroupRow,
    DeadRow,
    columns,
    kept_error,
    letter_row,
    storable,
    unnested,
)

# DeadRow's columns, in order
COLUMNS = """seq, worker, enqueued_at, attempt, data, key, error, died_at,
             coalesce(reason, 'failed'), coalesce(priority, 0), expires_at, fingerprint, title"""
CHUNK = 10_000  # rows read at a time by read_rows


def _where(worker: str, digests: list[str] | None, seqs: list[int] | None):
    """The dead letters of ``worker``: those of the groups ``digests``, or those ``seqs``, or
    all (both None); the condition and its parameters."""
    if digests is not None:
        return "worker = $1 AND fingerprint IN (SELECT unnest($2::VARCHAR[]))", [worker, digests]
    if seqs is not None:
        return "worker = $1 AND seq IN (SELECT unnest($2::BIGINT[]))", [worker, seqs]
    return "worker = $1", [worker]


def read_page(con, worker: str, limit: int | None, offset: int) -> list[DeadRow]:
    """The dead letters of ``worker``, oldest first: ``limit`` of them (None: all) from the
    ``offset``-th."""
    page = "" if limit is None else f"LIMIT {int(limit)}"
    rows = con.execute(
        f"""SELECT {COLUMNS} FROM dead_letters WHERE worker = $1
            ORDER BY died_at, seq {page} OFFSET {int(offset)}""",
        [worker],
    ).fetchall()
    return [DeadRow(*row) for row in rows]


def read_rows(
    con, worker: str, digests: list[str] | None = None, seqs: list[int] | None = None
) -> Iterator[list[DeadRow]]:
    """The dead letters of ``worker`` chosen as ``_where`` says, oldest first, ``CHUNK`` at a
    time: a million are never all in memory at once."""
    where, params = _where(worker, digests, seqs)
    con.execute(f"SELECT {COLUMNS} FROM dead_letters WHERE {where} ORDER BY died_at, seq", params)
    while rows := con.fetchmany(CHUNK):
        yield [DeadRow(*row) for row in rows]


def read_summary(con, worker: str | None = None, examples: int = 5) -> list[DeadGroupRow]:
    """The dead letters of every worker (or of ``worker``) counted by failure group, with each
    group's ``examples`` smallest seqs; one aggregate, however many letters."""
    rows = con.execute(
        f"""SELECT a.worker, a.fingerprint, coalesce(g.title, a.title, ''),
                   coalesce(g.traceback, a.error, ''), a.n, a.expired, a.first, a.last, a.ids
            FROM (SELECT worker, fingerprint, arg_min(title, died_at) AS title,
                         arg_max(error, died_at) AS error, count(*) AS n,
                         count(*) FILTER (WHERE reason = 'expired') AS expired,
                         min(died_at) AS first, max(died_at) AS last,
                         min(seq, {int(examples)}) AS ids
                  FROM dead_letters WHERE $1::VARCHAR IS NULL OR worker = $1
                  GROUP BY worker, fingerprint) a
            LEFT JOIN failure_groups g USING (worker, fingerprint)
            ORDER BY a.worker, a.first""",
        [worker],
    ).fetchall()
    return [DeadGroupRow(*row) for row in rows]


def discard(con, discards: list[tuple[str, list[str] | None]]) -> None:
    """Delete the dead letters of each (worker, fingerprints or None for all of them)."""
    for worker, digests in discards:
        where, params = _where(worker, digests, None)
        con.execute(f"DELETE FROM dead_letters WHERE {where}", params)


def write_dead(con, rows: list[tuple], written: set[tuple[str, str]]) -> set[tuple]:
    """Insert ``rows`` (their error cut to its own line) and a group row for each (worker,
    fingerprint) not in ``written``; return the groups written, which the caller adds to
    ``written`` once the transaction commits."""
    new: dict[tuple[str, str], DeadRow] = {}
    for row in rows:  # plain tuples in DeadRow's order, then the own line (rows.letter_row)
        group = (row[1], row[11])
        if row[11] is not None and group not in written and group not in new:
            new[group] = letter_row(row)
    cut = columns(rows)  # column by column: a namedtuple's _replace a row costs the drain
    lines = cut.pop()  # each one's own line, when its run thread knew it (engine/dead.py)
    if cut[5].count(None) != len(cut[5]):
        cut[5] = [None if key is None else storable(key) for key in cut[5]]
    cut[6] = [storable(kept_error(error, line)) for error, line in zip(cut[6], lines, strict=True)]
    select, params = unnested(DEAD_TYPES, cut)
    con.execute(
        f"""INSERT INTO dead_letters (seq, worker, enqueued_at, attempt, data, key, error,
                                      died_at, reason, priority, expires_at, fingerprint, title)
            SELECT {select}""",
        params,
    )
    if new:
        con.execute(
            """INSERT INTO failure_groups SELECT unnest($1), unnest($2), unnest($3),
                   unnest($4), unnest($5)""",
            [
                [w for w, _ in new],
                [fp for _, fp in new],
                [row.title for row in new.values()],
                [storable(row.error) for row in new.values()],
                [row.died_at for row in new.values()],
            ],
        )
    return set(new)


class GroupRows:
    """Which failure groups (worker, fingerprint) have a row in ``failure_groups``, so that a
    group's row is written once; what a batch changes counts once its transaction commits."""

    def __init__(self, written=()):
        self.written: set[tuple[str, str]] = set(written)
        self._new: set[tuple[str, str]] = set()  # written by the batch going on
        self._kept: set[tuple[str, str]] | None = None  # left after its deletes, new included

    def begin(self) -> None:
        """A batch starts: forget what a batch rolled back wrote."""
        self._new = set()
        self._kept = None

    def insert(self, con, rows: list[tuple]) -> None:
        self._new = write_dead(con, rows, self.written)

    def drop_empty(self, con) -> None:
        self._kept = drop_empty_groups(con)

    def committed(self) -> None:
        if self._kept is not None:
            self.written = self._kept
        self.written |= self._new
        self.begin()


def drop_empty_groups(con) -> set[tuple[str, str]]:
    """Delete the rows of the groups left without dead letters (requeued, discarded): a later
    failure of one writes its row again, with its own traceback (the cell may have changed).
    Return the groups that keep a row."""
    con.execute(
        """DELETE FROM failure_groups g WHERE NOT EXISTS (
               SELECT 1 FROM dead_letters d
               WHERE d.worker = g.worker AND d.fingerprint = g.fingerprint)"""
    )
    return set(con.execute("SELECT worker, fingerprint FROM failure_groups").fetchall())


def read_groups(con) -> dict[tuple[str, str], str]:
    """The whole traceback of each failure group that has dead letters, by (worker,
    fingerprint); groups left without any are dropped first. A file from before failure
    groups gets theirs from its dead letters, which kept whole tracebacks then."""
    drop_empty_groups(con)
    con.execute(
        """INSERT INTO failure_groups
           SELECT worker, fingerprint, arg_min(title, died_at), arg_max(error, died_at),
                  min(died_at)
           FROM dead_letters d
           WHERE fingerprint IS NOT NULL AND NOT EXISTS (
               SELECT 1 FROM failure_groups g
               WHERE g.worker = d.worker AND g.fingerprint = d.fingerprint)
           GROUP BY worker, fingerprint"""
    )
    rows = con.execute("SELECT worker, fingerprint, traceback FROM failure_groups").fetchall()
    return {(w, fp): tb for w, fp, tb in rows}
