"""The flow-control tables of a DuckDB file: results by id and fan-in groups (``nw.result``,
``emit_many(then=)``) and the starts of rate-limited runs, written inside ``DuckDBStore.apply``'s
transaction and read by ``result_of``. Each function takes the connection to use."""

from __future__ import annotations

from . import packed
from .rows import Batch, ResultRow, columns


def write_rate_starts(con, rows: list[tuple]) -> None:
    """Record the starts of rate-limited runs; forget those a period older than each
    worker's newest (their tokens are back)."""
    names, started, _periods = columns(rows)
    con.execute("INSERT INTO rate_starts SELECT unnest($1), unnest($2)", [names, started])
    back: dict[str, float] = {}
    for name, at, period_s in rows:
        back[name] = max(back.get(name, at - period_s), at - period_s)
    con.execute(
        """DELETE FROM rate_starts USING (SELECT unnest($1) AS name, unnest($2) AS back) u
           WHERE rate_starts.worker = u.name AND rate_starts.started_at <= u.back""",
        [list(back), list(back.values())],
    )


def write_results(con, batch: Batch) -> None:
    """Results by id and fan-in groups (``nw.result``, ``emit_many(then=)``), those of
    ``batch`` (if any): a group's end is deleted in the same transaction as the ``then``
    message is inserted."""
    if batch.results:  # one row per worker (packed.py: a row a message costs a drain)
        con.execute(
            """INSERT INTO results SELECT unnest($1), unnest($2), unnest($3), unnest($4),
                   unnest($5), unnest($6::BLOB[]), unnest($7::VARCHAR[])""",
            columns(packed.pack(batch.results, batch.results_ended_at)),
        )
    if batch.fan_in_inserts:
        con.execute(
            """INSERT INTO fan_ins SELECT unnest($1), unnest($2), unnest($3), unnest($4),
                   unnest($5)""",
            columns(batch.fan_in_inserts),
        )
    if batch.fan_in_deletes:
        con.execute(
            "DELETE FROM fan_ins WHERE first_seq IN (SELECT unnest($1))",
            [batch.fan_in_deletes],
        )
    if batch.prune_results_before is not None:
        # Members of a group still open are kept: its then event needs them.
        con.execute(
            """DELETE FROM results WHERE ended_at < $1 AND NOT EXISTS (
                   SELECT 1 FROM fan_ins g WHERE results.first_seq <= g.first_seq + g.count - 1
                                             AND results.last_seq >= g.first_seq)""",
            [batch.prune_results_before],
        )


def result_of(con, seq: int) -> tuple[ResultRow | None, str | None]:
    """How message ``seq`` ended (its ``results`` row), and, if it has none, the worker it
    is still queued (or running) for, read through ``con``; (None, None): neither."""
    rows = con.execute(
        """SELECT worker, ended_at, count, body, failures FROM results
           WHERE $1 BETWEEN first_seq AND last_seq""",
        [seq],
    ).fetchall()
    row = packed.find(rows, seq)
    if row is not None:
        return row, None
    queued = con.execute("SELECT worker FROM messages WHERE seq = $1", [seq]).fetchone()
    if queued is not None:
        return None, queued[0]
    # A dead letter of a file from before results were kept (schema 3) has no results row;
    # kept as long as the dead letter is (no ended_at: it does not expire).
    dead = con.execute(
        "SELECT seq, worker, error FROM dead_letters WHERE seq = $1", [seq]
    ).fetchone()
    return (None if dead is None else ResultRow(dead[0], dead[1], None, dead[2], None, None)), None
