"""Traces on disk: each batch's new traces inserted, then each worker's oldest beyond what it
keeps (``--keep``, else ``traces_kept``) deleted. Inside ``DuckDBStore.apply``'s transaction."""

from __future__ import annotations

from .rows import TraceRow, columns


def write(con, rows: list[TraceRow]) -> None:
    con.execute(
        """INSERT INTO traces (seq, worker, message_seq, started_at, duration, input, result,
                               result_repr, stdout, error, replay, attempt, timed_out,
                               calls, calls_text, message_seqs)
           SELECT unnest($1), unnest($2), unnest($3), unnest($4), unnest($5),
               unnest($6::BLOB[]), unnest($7::BLOB[]), unnest($8), unnest($9),
               unnest($10::VARCHAR[]), unnest($11), unnest($12), unnest($13),
               unnest($14::BLOB[]), unnest($15::VARCHAR[]), unnest($16::BIGINT[][])""",
        columns(rows),
    )


def prune(con, traces_kept: int) -> None:
    """Keep the newest traces of each worker: as many as its row says (``--keep``), else
    ``traces_kept``."""
    con.execute(
        """DELETE FROM traces WHERE seq IN (
               SELECT seq FROM (
                   SELECT t.seq, coalesce(w.keep, $1) AS keep, row_number() OVER (
                       PARTITION BY t.worker ORDER BY t.seq DESC) AS n
                   FROM traces t LEFT JOIN workers w ON w.name = t.worker)
               WHERE n > keep)""",
        [traces_kept],
    )
