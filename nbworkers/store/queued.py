"""The queued messages read back: the window each worker starts with, and its spilled messages
a page at a time (engine/paging.py), through a DuckDB connection or cursor.

A worker's *ready* rows are those with no ``due_at`` (a delayed message, or one that came due,
keeps its ``due_at`` in the file and is always loaded whole). A worker keeps the first
``window`` of them in run order (priority descending, then ``seq``) in memory; the others are
*spilled*, and counted here per priority as a line: ``SpillRow(worker, priority, count,
first)``, "the ``count`` ready rows of this worker and priority from seq ``first``".
"""

from __future__ import annotations

from .rows import MessageRow, SpillRow

COLUMNS = """seq, worker, enqueued_at, attempt, data, coalesce(started, false), due_at, key,
             coalesce(priority, 0), expires_at"""


def read_window(con, window: int | None) -> tuple[list[MessageRow], list[SpillRow], list]:
    """The messages a runtime starts with (every row when ``window`` is None; else every
    delayed row and the first ``window`` ready rows of each worker), the spilled lines, and
    the dedupe keys of spilled messages: (seq, worker, key)."""
    if window is None:
        rows = con.execute(f"SELECT {COLUMNS} FROM messages ORDER BY seq").fetchall()
        return [MessageRow(*row) for row in rows], [], []
    counts: dict[str, list[tuple[int, int]]] = {}  # worker -> [(priority, count)], highest first
    for worker, priority, count, first, oldest in con.execute(
        """SELECT worker, coalesce(priority, 0) AS p, count(*), min(seq), min(enqueued_at)
           FROM messages WHERE due_at IS NULL GROUP BY ALL ORDER BY worker, p DESC"""
    ).fetchall():
        counts.setdefault(worker, []).append((priority, count, first, oldest))
    last = con.execute("SELECT max(seq) FROM messages").fetchone()[0] or 0
    big = [w for w, lines in counts.items() if sum(line[1] for line in lines) > window]
    # Every row of the workers within their window, and every delayed row: one query.
    rows = con.execute(
        f"""SELECT {COLUMNS} FROM messages
            WHERE due_at IS NOT NULL OR NOT list_contains($1::VARCHAR[], worker)
            ORDER BY seq""",
        [big],
    ).fetchall()
    messages = [MessageRow(*row) for row in rows]
    spilled = []
    for worker in big:
        left = window
        for priority, count, first, oldest in counts[worker]:
            page = read_page(con, worker, priority, first, left, last) if left else []
            messages += page
            left -= len(page)
            if len(page) < count:
                if page:
                    first, oldest = page[-1].seq + 1, page[-1].enqueued_at
                spilled.append(SpillRow(worker, priority, count - len(page), first, oldest))
    keys = []
    if spilled:
        loaded = {m.seq for m in messages if m.key is not None}
        keys = con.execute(
            """SELECT seq, worker, key FROM messages
               WHERE key IS NOT NULL AND due_at IS NULL AND list_contains($1::VARCHAR[], worker)
               ORDER BY seq""",
            [big],
        ).fetchall()
        keys = [k for k in keys if k[0] not in loaded]
    return messages, spilled, keys


def read_page(
    con, worker: str, priority: int, first: int, limit: int, last: int | None = None
) -> list[MessageRow]:
    """The ready rows of ``worker`` and ``priority`` from seq ``first`` (to ``last``, the
    highest seq there may be; None: unknown), oldest first: at most ``limit``.

    Read a range of seqs at a time, from twice ``limit`` wide and doubling: DuckDB then skips
    the row groups outside it by their min and max seq, instead of reading every row from
    ``first`` on (10,000,000 queued made each page a scan of all of them)."""
    if last is None:
        last = con.execute("SELECT max(seq) FROM messages").fetchone()[0] or 0
    rows: list = []
    span = max(2 * limit, 4096)
    while len(rows) < limit and first <= last:
        rows += con.execute(
            f"""SELECT {COLUMNS} FROM messages
                WHERE seq BETWEEN $3 AND $4 AND worker = $1 AND coalesce(priority, 0) = $2
                  AND due_at IS NULL
                ORDER BY seq LIMIT $5""",
            [worker, priority, first, first + span - 1, limit - len(rows)],
        ).fetchall()
        first += span
        span *= 2
    return [MessageRow(*row) for row in rows]


def read_seqs(con, worker: str, priority: int, first: int, last: int, limit: int) -> list[int]:
    """The seqs of the ready rows of ``worker`` and ``priority`` from ``first`` to ``last``,
    ascending: at most ``limit`` (a purge's, which needs no more than that)."""
    rows = con.execute(
        """SELECT seq FROM messages
           WHERE worker = $1 AND coalesce(priority, 0) = $2 AND seq BETWEEN $3 AND $4
             AND due_at IS NULL
           ORDER BY seq LIMIT $5""",
        [worker, priority, first, last, limit],
    ).fetchall()
    return [seq for (seq,) in rows]


def read_row(con, seq: int) -> MessageRow | None:
    """Queued message ``seq``, or None."""
    row = con.execute(f"SELECT {COLUMNS} FROM messages WHERE seq = $1", [seq]).fetchone()
    return None if row is None else MessageRow(*row)
