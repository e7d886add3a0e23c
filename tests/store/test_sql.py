"""nw.sql and its views: the documented columns, flushing first, read-only, and thread safety."""

from __future__ import annotations

import errno
import os
import threading
import time
from datetime import UTC, datetime, timedelta

import duckdb
import pytest

from nbworkers import QueryError
from nbworkers.errors import NBWorkersError
from nbworkers.store import DuckDBStore

# The contract the README documents: every view's columns, in order, with their types.
COLUMNS = {
    "messages": [
        ("id", "VARCHAR"),
        ("seq", "BIGINT"),
        ("worker", "VARCHAR"),
        ("enqueued_at", "TIMESTAMP WITH TIME ZONE"),
        ("attempt", "INTEGER"),
        ("due_at", "TIMESTAMP WITH TIME ZONE"),
        ("key", "VARCHAR"),
        ("started", "BOOLEAN"),
        ("size_bytes", "BIGINT"),
        ("priority", "INTEGER"),
        ("expires_at", "TIMESTAMP WITH TIME ZONE"),
    ],
    "traces": [
        ("id", "VARCHAR"),
        ("seq", "BIGINT"),
        ("worker", "VARCHAR"),
        ("message_id", "VARCHAR"),
        ("started_at", "TIMESTAMP WITH TIME ZONE"),
        ("duration_s", "DOUBLE"),
        ("ok", "BOOLEAN"),
        ("error", "VARCHAR"),
        ("error_line", "VARCHAR"),
        ("stdout", "VARCHAR"),
        ("result_repr", "VARCHAR"),
        ("attempt", "INTEGER"),
        ("timed_out", "BOOLEAN"),
        ("replay", "BOOLEAN"),
        ("calls", "VARCHAR"),
    ],
    "dead_letters": [
        ("id", "VARCHAR"),
        ("seq", "BIGINT"),
        ("worker", "VARCHAR"),
        ("enqueued_at", "TIMESTAMP WITH TIME ZONE"),
        ("attempt", "INTEGER"),
        ("key", "VARCHAR"),
        ("error", "VARCHAR"),
        ("error_line", "VARCHAR"),
        ("died_at", "TIMESTAMP WITH TIME ZONE"),
        ("size_bytes", "BIGINT"),
        ("reason", "VARCHAR"),
        ("priority", "INTEGER"),
        ("fingerprint", "VARCHAR"),
    ],
    "failures": [
        ("worker", "VARCHAR"),
        ("fingerprint", "VARCHAR"),
        ("title", "VARCHAR"),
        ("count", "BIGINT"),
        ("first_seen", "TIMESTAMP WITH TIME ZONE"),
        ("last_seen", "TIMESTAMP WITH TIME ZONE"),
        ("traceback", "VARCHAR"),
        ("example_ids", "VARCHAR[]"),
    ],
    "workers": [
        ("worker", "VARCHAR"),
        ("kind", "VARCHAR"),
        ("paused", "BOOLEAN"),
        ("pause_reason", "VARCHAR"),
        ("queued", "BIGINT"),
        ("running", "BIGINT"),
        ("done", "BIGINT"),
        ("failed", "BIGINT"),
        ("dead", "BIGINT"),
        ("retried", "BIGINT"),
        ("skipped", "BIGINT"),
        ("oldest_queued_at", "TIMESTAMP WITH TIME ZONE"),
        ("last_run_at", "TIMESTAMP WITH TIME ZONE"),
        ("last_scheduled_at", "TIMESTAMP WITH TIME ZONE"),
    ],
}


def rows(nw, query, params=None) -> list[dict]:
    rel = nw.sql(query, params)
    return [dict(zip(rel.columns, row, strict=True)) for row in rel.fetchall()]


def near_now(value: datetime, slack_s: float = 60) -> bool:
    return value.tzinfo is not None and abs(value - datetime.now(UTC)) < timedelta(seconds=slack_s)


@pytest.mark.parametrize("view", sorted(COLUMNS))
def test_every_view_has_the_documented_columns(fresh_runtime, view):
    nw = fresh_runtime
    described = nw.sql(f"describe {view}").fetchall()
    assert [(name, type_) for name, type_, *_ in described] == COLUMNS[view]


def test_the_views_show_queues_traces_dead_letters_and_workers(fresh_runtime):
    nw = fresh_runtime

    @nw.worker("resize")
    def resize(event):
        print("resizing", event)
        if event == "broken.gif":
            raise ValueError("not an image: broken.gif")
        return len(event)

    @nw.cron("hourly", name="report")
    def report():
        return "sent"

    nw.emit("a.png", "resize")
    nw.emit("broken.gif", "resize")
    assert nw.wait(timeout=30)
    nw.emit({"to": "x"}, "emails", key="x")  # no worker: unhandled
    nw.emit("later.png", "resize", delay=3600)
    nw.pause("resize")
    nw.emit("held.png", "resize")

    messages = rows(nw, "select * from messages order by seq")
    assert [(m["worker"], m["key"], m["attempt"], m["started"]) for m in messages] == [
        ("emails", "x", 1, False),
        ("resize", None, 1, False),
        ("resize", None, 1, False),
    ]
    assert all(m["id"] == f"m{m['seq']}" and m["size_bytes"] > 0 for m in messages)
    assert all(near_now(m["enqueued_at"]) for m in messages)
    assert messages[1]["due_at"] - messages[1]["enqueued_at"] > timedelta(minutes=59)
    assert messages[0]["due_at"] is None and messages[2]["due_at"] is None

    # Runs go in parallel: either may end (and be numbered) first
    traces = rows(nw, "select * from traces where worker = 'resize' order by ok desc")
    assert [(t["ok"], t["result_repr"], t["stdout"]) for t in traces] == [
        (True, "5", "resizing a.png\n"),
        (False, None, "resizing broken.gif\n"),
    ]
    good, bad = traces
    assert good["error"] is None and good["error_line"] is None
    assert bad["error"].startswith("Traceback") and bad["error_line"] == (
        "ValueError: not an image: broken.gif"
    )
    assert bad["id"] == f"t{bad['seq']}" and bad["message_id"].startswith("m")
    assert (bad["attempt"], bad["timed_out"], bad["replay"]) == (1, False, False)
    assert near_now(bad["started_at"]) and 0 <= bad["duration_s"] < 30
    assert {t.id for t in nw.traces("resize")} == {t["id"] for t in traces}

    (dead,) = rows(nw, "select * from dead_letters")
    assert dead["id"] == bad["message_id"] and dead["worker"] == "resize"
    assert dead["error_line"] == "ValueError: not an image: broken.gif"
    assert near_now(dead["died_at"]) and dead["attempt"] == 1 and dead["size_bytes"] > 0

    workers = {w["worker"]: w for w in rows(nw, "select * from workers")}
    assert set(workers) == {"resize", "report", "emails"}
    resize_row = workers["resize"]
    assert resize_row["kind"] == "worker" and resize_row["paused"] is True
    assert resize_row["pause_reason"] is None  # paused by hand
    counts = nw.counts("resize")
    for column in ("queued", "running", "done", "failed", "dead", "retried"):
        assert resize_row[column] == counts[column], column
    assert resize_row["last_scheduled_at"] is None and near_now(resize_row["last_run_at"])
    assert near_now(resize_row["oldest_queued_at"])
    report_row = workers["report"]
    assert (report_row["kind"], report_row["done"], report_row["skipped"]) == ("cron", 1, 0)
    assert near_now(report_row["last_scheduled_at"])
    emails = workers["emails"]
    assert (emails["kind"], emails["queued"], emails["done"]) == (None, 1, 0)


def test_error_line_is_the_exceptions_own_line_after_a_note_or_in_a_group(fresh_runtime):
    # Given runs that fail with a note added after the error and with an exception group
    # (whose sub-exceptions are drawn after its own line)
    nw = fresh_runtime

    @nw.worker("load")
    def load(event):
        if event == "group":
            raise ExceptionGroup("2 fetches failed", [KeyError("a"), TimeoutError("b")])
        error = ValueError("bad row")
        error.add_note("while loading prices.csv")
        raise error

    nw.emit_many(["noted", "group"], "load")
    assert nw.wait("load", timeout=30)
    # When the views are read
    traces = rows(nw, "select error_line from traces order by error_line")
    dead = rows(nw, "select error_line from dead_letters order by error_line")
    # Then each error_line is the exception's own line, as the panel and the CLI show it
    expected = ["ExceptionGroup: 2 fetches failed (2 sub-exceptions)", "ValueError: bad row"]
    assert [t["error_line"] for t in traces] == expected
    assert [d["error_line"] for d in dead] == expected


def test_a_storm_guard_pause_gives_its_reason(fresh_runtime):
    nw = fresh_runtime
    nw.config().max_queued = 3  # read when the runtime starts, at its first use below
    release = threading.Event()

    @nw.worker("w", concurrency=1)
    def w(event):
        release.wait(30)

    try:
        nw.emit_many(range(10), "w")  # more than 3 queued: the storm guard pauses w
        reason = nw.pause_reason("w")
        assert "storm guard" in reason
        (row,) = rows(nw, "select paused, pause_reason from workers where worker = 'w'")
        assert row == {"paused": True, "pause_reason": reason}
    finally:
        release.set()


def test_traces_keep_only_the_last_n_per_worker(fresh_runtime):
    nw = fresh_runtime
    nw.worker("w")(lambda e: e)
    nw.emit_many(range(25), "w")
    assert nw.wait("w", 30)
    (count,) = nw.sql("select count(*) from traces where worker = 'w'").fetchall()[0]
    assert count == nw.config().traces_kept == 10


def test_sql_shows_what_was_just_emitted_without_a_flush(fresh_runtime):
    nw = fresh_runtime
    nw.pause("w")
    ids = [nw.emit(i, "w") for i in range(3)]
    got = nw.sql("select id from messages where worker = 'w' order by seq").fetchall()
    assert [i for (i,) in got] == ids


def test_sql_takes_parameters(fresh_runtime):
    nw = fresh_runtime
    nw.pause("a")
    nw.emit(1, "a")
    nw.emit(2, "b")
    assert nw.sql("select worker from messages where worker = $1", ["b"]).fetchall() == [("b",)]
    assert nw.sql("select count(*) from messages where worker = ?", ["a"]).fetchall() == [(1,)]


@pytest.mark.parametrize(
    "query",
    [
        "delete from messages",
        "insert into messages select * from messages",
        "update workers set paused = true",
        "drop view messages",
        "create table x as select 1",
        "select 1; delete from messages",
        "copy messages to 'out.csv'",
        "",
        "attach 'other.duckdb' as other",
        "pragma enable_checkpoint_on_shutdown",
        "set threads = 1",
        "install httpfs",
        "load parquet",
        "call checkpoint()",
        "select 1; select 2",
    ],
)
def test_sql_only_reads(fresh_runtime, query, tmp_path, monkeypatch):
    nw = fresh_runtime
    monkeypatch.chdir(tmp_path)
    nw.pause("w")
    nw.emit(1, "w")
    with pytest.raises(NBWorkersError, match=r"nw\.sql runs one SELECT") as info:
        nw.sql(query)
    assert "nw.cancel" in str(info.value)
    assert nw.sql("select count(*) from messages").fetchall() == [(1,)]
    assert not (tmp_path / "out.csv").exists()


def on_disk(path) -> dict:
    """What the database file holds, read by a connection of its own."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {
            table: sorted(con.execute(f"select * from {table}").fetchall(), key=repr)
            for table in ("messages", "workers", "meta", "dead_letters")
        }
    finally:
        con.close()


# A pickle that runs code when unpickled, as a message's data: what a write would plant.
PLANTED = "'\\x80\\x04\\x95'::BLOB"


@pytest.mark.parametrize(
    "query",
    [
        # Data-modifying WITH: DuckDB calls the whole statement a SELECT.
        "with d as (delete from q.main.messages returning seq) select count(*) from d",
        "with u as (update q.main.workers set paused = false returning name) select * from u",
        "with i as (insert into q.main.messages (seq, worker, enqueued_at, attempt, data) "
        f"values (999, 'w', 0, 1, {PLANTED}) returning seq) select * from i",
        # Table functions that change state, or run SQL on a connection of their own.
        "select * from json_execute_serialized_sql(json_serialize_sql("
        "'with d as (delete from q.main.messages returning seq) select * from d'))",
        "select * from messages where seq in (select 1 from json_execute_serialized_sql("
        "json_serialize_sql('with d as (delete from q.main.messages returning seq) "
        "select * from d')))",
        "select * from checkpoint()",
        "select * from enable_logging(storage = 'file', storage_path = 'logs')",
        "select * from query('select 1')",
    ],
)
def test_sql_cannot_change_the_queue(fresh_runtime, query, tmp_path, monkeypatch):
    """Issue #14.5: a SELECT that writes (a data-modifying WITH, a table function with side
    effects) is refused, and the file is as it was."""
    nw = fresh_runtime
    monkeypatch.chdir(tmp_path)
    nw.pause("w")
    queued = nw.emit(1, "w")
    nw.flush()
    files = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("q.duckdb"))
    with pytest.raises(NBWorkersError, match=r"nw\.sql only reads") as info:
        nw.sql(query).fetchall()
    assert "nw.cancel" in str(info.value)
    assert nw.sql("select count(*) from messages").fetchall() == [(1,)]
    nw.shutdown()
    stored = on_disk(tmp_path / "q.duckdb")
    assert [f"m{seq}" for seq, *_ in stored["messages"]] == [queued]
    assert stored["workers"] == [("w", True, 0, 0, None, 0, None, 0, None, None)]
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("q.duckdb")) == files


def test_a_relation_from_sql_cannot_change_the_queue_either(fresh_runtime, tmp_path):
    """The relation nw.sql returns holds its rows on a connection of its own: its methods
    that run SQL or write tables never reach the queue's database."""
    nw = fresh_runtime
    nw.pause("w")
    nw.emit(1, "w")
    nw.flush()
    rel = nw.sql("select * from messages")
    with pytest.raises(duckdb.Error):
        rel.query("x", "delete from q.main.messages")
    with pytest.raises(duckdb.Error):
        nw.sql(
            f"select 999::BIGINT, 'w', 0::DOUBLE, 1, {PLANTED}, false, NULL::DOUBLE, NULL"
        ).insert_into("q.main.messages")
    with pytest.raises(duckdb.Error, match="already attached"):
        rel.query("x", f"attach '{tmp_path / 'q.duckdb'}' as again")
    nw.sql("select 1 as x").create("made_here")  # a table of the relation's own database
    assert rel.fetchall()[0][2] == "w"
    nw.shutdown()
    stored = on_disk(tmp_path / "q.duckdb")
    assert len(stored["messages"]) == 1
    con = duckdb.connect(str(tmp_path / "q.duckdb"), read_only=True)
    try:
        tables = {t for (t,) in con.execute("select table_name from duckdb_tables()").fetchall()}
    finally:
        con.close()
    assert "made_here" not in tables


def test_sql_reads_local_files_as_the_kernel_may(fresh_runtime, tmp_path):
    """Reading is the kernel user's own right: nw.sql may join the queues with a file."""
    nw = fresh_runtime
    (tmp_path / "names.csv").write_text("worker,team\nw,ops\n")
    nw.pause("w")
    nw.emit(1, "w")
    got = nw.sql(
        "select m.worker, n.team from messages m join read_csv($1) n using (worker)",
        [str(tmp_path / "names.csv")],
    ).fetchall()
    assert got == [("w", "ops")]


def open_for_writing(fifo, timeout_s=30) -> int:
    """Open a named pipe for writing once a reader has it open (the bounded wait)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def test_a_long_sql_query_does_not_hold_up_the_writer(fresh_runtime, tmp_path):
    """nw.sql's read-only transaction stays open while its query runs (here until a named pipe
    it reads is written): the writer commits meanwhile, and the query sees the database as it
    was when it started."""
    nw = fresh_runtime
    nw.pause("w")
    nw.emit(1, "w")
    fifo = tmp_path / "slow"
    os.mkfifo(fifo)
    got = {}

    def query():
        got["rows"] = nw.sql(
            "select (select count(*) from messages), content from read_text($1)", [str(fifo)]
        ).fetchall()

    thread = threading.Thread(target=query)
    thread.start()
    fd = open_for_writing(fifo)  # the query is running, in its transaction
    try:
        # When the writer commits while it runs
        nw.emit(2, "w")
        nw.flush()  # raises after 30 s if the commit waited for the query
        assert thread.is_alive()
        os.write(fd, b"done")
    finally:
        os.close(fd)
    thread.join(60)
    # Then the query saw its snapshot, and the next one sees the commit
    assert got["rows"] == [(1, "done")]
    assert nw.sql("select count(*) from messages").fetchall() == [(2,)]


@pytest.mark.parametrize(
    "query",
    [
        "with d as (delete from messages returning *) select * from d",
        "with u as (update workers set paused = false returning *) select * from u",
        "with i as (insert into messages (seq) values (1) returning *) select * from i",
    ],
)
def test_a_data_modifying_with_on_a_view_says_nw_sql_only_reads(fresh_runtime, query):
    # DuckDB's binder refuses these first, in words ("Can only delete from base table") that
    # suggest the table behind the view would do: nbworkers says what to do instead.
    nw = fresh_runtime
    nw.pause("w")
    nw.emit(1, "w")
    with pytest.raises(NBWorkersError, match=r"nw\.sql only reads.*nw\.purge"):
        nw.sql(query)
    assert nw.counts("w")["queued"] == 1
    assert nw.sql("select count(*) from messages").fetchall() == [(1,)]


def test_sql_errors_are_duckdb_s_own(fresh_runtime):
    nw = fresh_runtime
    with pytest.raises(duckdb.Error, match="nosuch") as caught:
        nw.sql("select nosuch from messages").fetchall()
    # shown short in a notebook, as nbworkers' own errors are (a typo showed 40 lines of
    # traceback through nbworkers and DuckDB), DuckDB's words whole
    assert isinstance(caught.value, NBWorkersError)
    assert str(caught.value).startswith("nw.sql: Binder Error: Referenced column")
    assert "nw.sql('describe traces')" in str(caught.value)
    with pytest.raises(duckdb.ParserException, match="syntax error"):
        nw.sql("selec 1")
    # (each still DuckDB's own type, for code that catches that)
    with pytest.raises(duckdb.CatalogException, match="nosuch") as caught:
        nw.sql("select * from nosuch")
    assert isinstance(caught.value, QueryError) and type(caught.value).__name__ == "QueryError"
    with pytest.raises(TypeError, match="must be a string"):
        nw.sql(42)
    # A query failing half-way through its rows leaves the next one working.
    with pytest.raises(duckdb.Error, match="half-way"):
        nw.sql("select if(range = 50000, error('half-way'), range) from range(100000)")
    assert nw.sql("select count(*) from messages").fetchall() == [(0,)]


def test_sql_from_threads_while_messages_flow(fresh_runtime):
    """Readers on several threads never fail and never see a total go back while messages
    flow: each commit of the writer is one transaction, and each reading thread has its own
    connection (a cursor)."""
    nw = fresh_runtime

    @nw.worker("w", concurrency=2)
    def w(event):
        if event % 100 == 0:
            raise ValueError(event)
        return event

    # Every message emitted and committed is queued, running, done or failed (dead).
    query = """select coalesce(sum(queued + running + done + failed), 0) from workers
               where worker = 'w'"""
    errors: list[BaseException] = []
    seen: dict[str, list[int]] = {}
    stop = threading.Event()
    produced = 0

    def produce():
        nonlocal produced
        try:
            while not stop.is_set():
                for _ in range(10):
                    nw.emit(produced, "w")
                    produced += 1
                time.sleep(0.002)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    def read(name):
        seen[name] = totals = []
        try:
            deadline = time.monotonic() + 30
            # (40 reads at least, and on until the total has moved a few times: a stall of the
            # machine can leave 40 reads with one total)
            while (len(totals) < 40 or len(set(totals)) <= 3) and time.monotonic() < deadline:
                totals.append(nw.sql(query).fetchall()[0][0])
                rows(nw, "select * from traces where worker = 'w' limit 3")
                rows(nw, "select * from messages limit 3")
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    producer = threading.Thread(target=produce)
    readers = [threading.Thread(target=read, args=(f"reader-{i}",)) for i in range(2)]
    producer.start()
    for t in readers:
        t.start()
    read("main")  # the calling thread reads too
    for t in readers:
        t.join(60)
    stop.set()
    producer.join(60)
    assert not errors, errors
    for name, totals in seen.items():
        assert len(totals) >= 40, name
        assert totals == sorted(totals), f"{name} saw the total go back: {totals}"
        assert len(set(totals)) > 3, f"{name} read while nothing flowed: {totals}"
    assert nw.wait("w", 60)
    failing = len(range(0, produced, 100))
    (row,) = rows(nw, "select done, failed, dead, queued, running from workers where worker='w'")
    assert row == {
        "done": produced - failing,
        "failed": failing,
        "dead": failing,
        "queued": 0,
        "running": 0,
    }


def test_sql_in_memory(fresh_runtime):
    nw = fresh_runtime
    nw.config().db_path = ":memory:"
    nw.shutdown()
    nw.pause("w")
    nw.emit("x", "w")
    assert nw.sql("select worker, queued from workers").fetchall() == [("w", 1)]


def test_kind_is_kept_across_restarts_before_the_cells_run_again(fresh_runtime):
    nw = fresh_runtime
    nw.worker("w")(lambda e: e)
    nw.cron("hourly", name="c")(lambda: None)
    nw.shutdown()
    # A new runtime on the same file, with no handler defined yet
    nw.pause("w")
    got = nw.sql("select worker, kind, paused from workers order by worker").fetchall()
    assert got == [("c", "cron", False), ("w", "worker", True)]
    assert nw.workers() == []


def test_a_worker_can_query_too(fresh_runtime):
    nw = fresh_runtime

    @nw.worker("w")
    def w(event):
        return nw.sql("select count(*) from messages where worker = 'other'").fetchall()[0][0]

    nw.pause("other")
    nw.emit_many(range(3), "other")
    nw.emit(None, "w")
    assert nw.wait("w", 30)
    (trace,) = nw.traces("w")
    assert trace.error is None and trace.result == 3


def test_sql_in_a_kernel_cannot_plant_a_message_that_runs_code_at_the_next_start(kernel, tmp_path):
    """Issue #14.5, as met in a notebook: an INSERT in a WITH is refused, so no pickle is
    planted in the queue to be unpickled (running its code) when the kernel starts again."""
    marker = tmp_path / "planted-code-ran"
    kernel.ok(
        f"""
import os, pickle
class Planted:
    def __reduce__(self):
        return (os.system, ({f"touch {marker}"!r},))
nw.pause("w")
emit("real", "w")
nw.flush()
planted = pickle.dumps(Planted())
"""
    )
    reply = kernel.run(
        """nw.sql('''with i as (
    insert into q.main.messages (seq, worker, enqueued_at, attempt, data)
    values (999, 'w', 0, 1, $1) returning seq) select * from i''', [planted])"""
    )
    assert reply.ename == "NBWorkersError" and "nw.sql only reads" in reply.evalue
    # When the kernel starts again and the worker runs its queue
    kernel.restart()
    kernel.ok("%load_ext nbworkers\nimport nbworkers as nw")
    kernel.ok("seen = []\nnw.worker('w')(seen.append)\nnw.resume('w')\nassert nw.wait('w', 30)")
    # Then only the real message ran, and the planted code never did
    assert kernel.eval("seen") == ["real"]
    assert not marker.exists()


def test_nw_sql_of_a_deeply_nested_select_says_what_to_do(tmp_path):
    # DuckDB parses it (its own limit is 1000 levels), but the check reading its parse tree
    # hit Python's recursion limit: a RecursionError from the json module, not a message.
    store = DuckDBStore(str(tmp_path / "q.duckdb"))
    try:
        query = "select " + "abs(" * 600 + "1" + ")" * 600
        with pytest.raises(NBWorkersError, match="nested too deeply"):
            store.sql(query)
    finally:
        store.close()


def test_a_typo_in_a_query_shows_short_in_the_kernel(kernel):
    # A new user's nw.sql("select name, kind from workers") showed about 40 lines of
    # traceback through nbworkers' and DuckDB's code
    reply = kernel.run("nw.sql('select name, kind from workers')")
    assert reply.ename == "QueryError"
    assert 'Referenced column "name" not found' in reply.traceback
    assert "nbworkers/store" not in reply.traceback and "duckdb/" not in reply.traceback
    assert len(reply.traceback.splitlines()) < 15, reply.traceback
