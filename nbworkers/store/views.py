"""The stable views users query, and nw.sql's read-only sandbox.

The views (``messages``, ``traces``, ``dead_letters``, ``workers``) are TEMP views made on each
reading connection over whatever tables a file has, old or new, so their columns are a contract
(docs/sql.md documents each). ``_check_select`` and ``_read_only`` let nw.sql run one SELECT that
calls only reading table functions, in a read-only transaction that is always rolled back, its
rows copied into another database.
"""

from __future__ import annotations

import json
import re

import duckdb

from ..errors import NBWorkersError

# ----- the stable views ------------------------------------------------------------------------
# What users query (nw.sql, python -m nbworkers status): docs/sql.md documents every column, so
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
        "priority": "INTEGER",
        "expires_at": "DOUBLE",
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
        "calls_text": "VARCHAR",
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
        "reason": "VARCHAR",
        "priority": "INTEGER",
        "fingerprint": "VARCHAR",
        "title": "VARCHAR",
    },
    "failure_groups": {
        "worker": "VARCHAR",
        "fingerprint": "VARCHAR",
        "traceback": "VARCHAR",
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
VIEWS = ("messages", "traces", "dead_letters", "workers", "failures")
_REQUIRED_TABLES = ("messages", "traces", "workers")

# A failure's own line, "ValueError: bad input", as fingerprint.error_line finds it: the
# first line not indented after the last frame (notes come after it); else an exception
# group's own line in its box ("  | ExceptionGroup: ..."); else the last non-blank line.
_ERROR_LINE = (
    "nullif(trim(coalesce("
    r"""nullif(regexp_extract({0}, '(?s)^.*\n  File "[^\n]*\n(?:[ \t][^\n]*\n|[ \t]*\n)*"""
    r"""([^ \t\n][^\n]*)', 1), ''), """
    r"nullif(regexp_extract({0}, '\n  \| ([^ \n|][^\n]*)', 1), ''), "
    r"regexp_extract(rtrim({0}, chr(10) || chr(13) || chr(9) || ' '), '[^\n]*$'))), '')"
)

_VIEW_SQL = {
    "messages": """
        SELECT 'm' || seq AS id, seq, worker, to_timestamp(enqueued_at) AS enqueued_at,
               coalesce(attempt, 1) AS attempt, to_timestamp(due_at) AS due_at, key,
               coalesce(started, false) AS started, octet_length(data) AS size_bytes,
               coalesce(priority, 0) AS priority, to_timestamp(expires_at) AS expires_at
        FROM {messages}""",
    "traces": """
        SELECT 't' || seq AS id, seq, worker, 'm' || message_seq AS message_id,
               to_timestamp(started_at) AS started_at, duration AS duration_s,
               error IS NULL AS ok, error, {error_line} AS error_line, stdout,
               CASE WHEN error IS NULL THEN result_repr END AS result_repr,
               coalesce(attempt, 1) AS attempt, coalesce(timed_out, false) AS timed_out,
               coalesce(replay, false) AS replay, calls_text AS calls
        FROM {traces}""",
    "dead_letters": """
        SELECT 'm' || seq AS id, seq, worker, to_timestamp(enqueued_at) AS enqueued_at,
               coalesce(attempt, 1) AS attempt, key, error, {error_line} AS error_line,
               to_timestamp(died_at) AS died_at, octet_length(data) AS size_bytes,
               coalesce(reason, 'failed') AS reason, coalesce(priority, 0) AS priority,
               fingerprint
        FROM {dead_letters}""",
    # The dead letters kept now, grouped by cause (as nw.failures groups them).
    # A dead letter keeps its own error line; its group, the whole traceback (store/dead.py).
    "failures": """
        SELECT d.worker, d.fingerprint, arg_min(d.title, d.died_at) AS title,
               count(*) AS count, to_timestamp(min(d.died_at)) AS first_seen,
               to_timestamp(max(d.died_at)) AS last_seen,
               coalesce(any_value(g.traceback), arg_max(d.error, d.died_at)) AS traceback,
               list_transform(list_sort(list(d.seq ORDER BY d.died_at, d.seq)[1:5]),
                              lambda s: 'm' || s) AS example_ids
        FROM {dead_letters} d
        LEFT JOIN {failure_groups} g ON g.worker = d.worker AND g.fingerprint = d.fingerprint
        WHERE d.fingerprint IS NOT NULL
        GROUP BY d.worker, d.fingerprint""",
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
# A data-modifying WITH on one of the views: DuckDB's binder refuses it before the read-only
# transaction would, in words that suggest the base table would do (it would not either).
_WRITES_A_VIEW_RE = re.compile(
    r"Can only (delete from|update) base table|is not an table|is not a table"
)


class QueryError(NBWorkersError, duckdb.Error):
    """DuckDB's error of an ``nw.sql`` query (a typo, a wrong column): shown short, as
    nbworkers' own errors are, and still DuckDB's own (``duckdb.CatalogException``...) for
    code that catches those."""


_query_errors: dict[type, type] = {}  # QueryError with each of DuckDB's error types


def query_error(exc: duckdb.Error) -> QueryError:
    """``exc``, a DuckDB error of an ``nw.sql`` query, as a QueryError of its own type too."""
    kind = type(exc)
    made = _query_errors.get(kind)
    if made is None:
        try:
            made = type("QueryError", (QueryError, kind), {"__module__": __name__})
        except TypeError:  # a type that cannot be subclassed: still a duckdb.Error
            made = QueryError
        _query_errors[kind] = made
    return made(
        f"nw.sql: {exc}\n(the views and their columns: nw.sql('describe traces'), docs/sql.md)"
    )


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
    except (duckdb.TransactionException, duckdb.BinderException, duckdb.CatalogException) as exc:
        if not (_READ_ONLY_RE.search(str(exc)) or _WRITES_A_VIEW_RE.search(str(exc))):
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
