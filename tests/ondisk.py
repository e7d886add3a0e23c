"""Reading a queue database the way another process would: its own read-only connection."""

from __future__ import annotations

import duckdb


def rows(path, sql: str) -> list[tuple]:
    """The rows ``sql`` gives on the file ``path``, read by a connection of its own."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()
