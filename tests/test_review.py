"""Regressions found by a hostile review of the hardening work (issue #14): each test does what
a user does and checks that nothing is lost and the files stay private."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import duckdb
import pytest

from nbworkers.errors import NBWorkersError, StoreCorruptError
from nbworkers.store import Batch, DuckDBStore, MessageRow, wal
from tests.kernel import Kernel


def msg(seq, data=b"x"):
    return MessageRow(seq, "w", 1000.0 + seq, 1, data, False, None, None)


def test_every_folder_made_for_a_new_db_path_is_private_whatever_the_umask(tmp_path):
    # A user with umask 000 (a shared-group setup) picks a db_path in folders that do not exist
    # yet: no folder nbworkers makes may be writable by others (who could swap the database's
    # folder for one of their own and its files for theirs).
    old = os.umask(0)
    try:
        store = DuckDBStore(str(tmp_path / "runs" / "2026" / "q.duckdb"))
        store.apply(Batch(inserts=[msg(1)], next_seq=2))
        store.close()
    finally:
        os.umask(old)
    made = {
        p.relative_to(tmp_path).as_posix(): stat.S_IMODE(p.stat().st_mode)
        for p in [tmp_path / "runs", tmp_path / "runs" / "2026"]
    }
    assert made == {"runs": 0o700, "runs/2026": 0o700}


def test_reloading_the_extension_after_changing_folder_finds_the_queued_messages(tmp_path):
    # The default database is .nbworkers/<notebook>.duckdb in the folder the kernel started in.
    # A cell (or a handler) changes folder, then the user reloads the extension, as one does
    # while writing handlers: the queue must be the same file, not a new empty one elsewhere.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    k = Kernel(str(tmp_path), env={"JPY_SESSION_NAME": str(tmp_path / "nb.ipynb")})
    try:
        k.ok("%load_ext nbworkers\nimport nbworkers as nw")
        k.ok("emit('waiting', 'later')")
        k.ok(f"%cd {str(elsewhere)!r}")
        k.ok("%reload_ext nbworkers")
        assert k.eval("nw.sql('select count(*) from messages').fetchall()") == [(1,)]
    finally:
        k.shutdown()
    assert list(elsewhere.iterdir()) == []


@pytest.mark.xfail(
    strict=True,
    reason="output._Router.close outside a run closes the kernel's real stream (on purpose: "
    "test_a_close_from_a_cell_outside_any_run_still_reaches_the_real_stream), and a thread a "
    "handler starts is outside any run (the capture is thread-local, not inherited): its "
    "sys.stdout.close() closes the kernel's stdout and every later cell's print raises "
    "ValueError. Fixing needs a decision: refuse closes off the cell's thread, or carry the "
    "run's capture into threads it starts",
)
def test_a_thread_a_handler_starts_cannot_close_the_kernels_stdout(kernel):
    # A handler hands work to a thread of its own (a library's background thread, say), and
    # that thread closes sys.stdout: later cells must still print.
    kernel.ok(
        """
import sys, threading
closed = threading.Event()

def close_it():
    try:
        sys.stdout.close()
    finally:
        closed.set()

@nw.worker("closer")
def closer(event):
    t = threading.Thread(target=close_it)
    t.start()
    t.join()
"""
    )
    kernel.ok("emit(1, 'closer')\nnw.wait('closer')\nassert closed.wait(30)")
    reply = kernel.run("print('still printing')")
    assert reply.status == "ok" and "still printing" in reply.stdout, reply.traceback


def test_status_of_a_file_whose_tables_were_changed_by_hand_says_so_with_exit_2(tmp_path):
    # nbworkers' table names, with columns of other types (a file changed by hand, or another
    # tool's): status says the file is not one it can read (exit 2), no DuckDB traceback and
    # not exit 1, which means "held by another process".
    path = tmp_path / "odd.duckdb"
    con = duckdb.connect(str(path))
    con.execute(
        """create table meta (key integer);
           create table messages (seq varchar, worker integer, data varchar);
           create table traces (seq varchar, error integer);
           create table workers (name integer, paused varchar, done varchar);
           insert into workers values (1, 'maybe', 'lots')"""
    )
    con.close()
    done = subprocess.run(
        [sys.executable, "-m", "nbworkers", "status", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert str(path) in done.stderr and "cannot be read" in done.stderr


def test_a_kill_while_writing_an_event_that_holds_a_duckdb_log_sets_nothing_aside(tmp_path):
    # A pipeline archives DuckDB files through a worker: an event's bytes are another DuckDB
    # write-ahead log (full of flush entries). The kernel is killed while that batch is being
    # written: the log ends inside the event. That commit never returned; the file must open
    # with the messages before it, not be set aside as damaged (an empty queue in its place).
    other = tmp_path / "other.duckdb"
    con = duckdb.connect(str(other))
    con.execute("SET checkpoint_threshold = '1TB'")
    con.execute("create table t (x integer); insert into t values (1); insert into t values (2)")
    archived = (tmp_path / "other.duckdb.wal").read_bytes()
    con.close()
    path = tmp_path / "q.duckdb"
    store = DuckDBStore(str(path))
    store.apply(Batch(inserts=[msg(1)], next_seq=2))
    before = (tmp_path / "q.duckdb.wal").read_bytes()
    store.apply(Batch(inserts=[msg(2, data=archived + b"z" * 5000)], next_seq=3))
    db, log = path.read_bytes(), (tmp_path / "q.duckdb.wal").read_bytes()
    store.close()
    inside = log.index(archived, len(before)) + len(archived) + 100  # in the event's bytes
    path.write_bytes(db)
    (tmp_path / "q.duckdb.wal").write_bytes(log[:inside])
    store = DuckDBStore(str(path))
    try:
        assert [m.seq for m in store.load().messages] == [1]
    finally:
        store.close()


def test_a_log_whose_entry_size_was_made_smaller_is_still_moved_aside(tmp_path):
    # The damage detection tells a torn last entry from a damaged one by its checksum: a size
    # made smaller (its low byte damaged) must still be found, as a larger one is.
    path = tmp_path / "q.duckdb"
    store = DuckDBStore(str(path))
    for i in range(1, 4):
        store.apply(Batch(inserts=[msg(i, data=b"y" * 200)], next_seq=i + 1))
    db, log = path.read_bytes(), (tmp_path / "q.duckdb.wal").read_bytes()
    store.close()
    first_commit = next(wal.FLUSH_ENTRY.finditer(log)).end()
    damaged = bytearray(log)
    damaged[first_commit] = max(0, damaged[first_commit] - 40)  # the next entry's size
    path.write_bytes(db)
    (tmp_path / "q.duckdb.wal").write_bytes(bytes(damaged))
    with pytest.raises(StoreCorruptError):
        DuckDBStore(str(path)).load()


def test_messages_an_older_version_queued_under_a_name_now_refused_stay_reachable(
    make_runtime, tmp_path
):
    # Before names were exact, emit(x, 'resize\n') was accepted and its message is in the
    # file. The new check must not make it unreachable: it can be counted and purged.
    rt = make_runtime()
    rt.emit(1, "resize")
    rt.stop()
    con = duckdb.connect(str(tmp_path / "q.duckdb"))
    con.execute("update messages set worker = 'resize' || chr(10)")
    con.close()
    rt = make_runtime()
    assert rt.counts("resize\n")["queued"] == 1
    assert len(rt.messages("resize\n")) == 1
    assert rt.purge("resize\n") == 1
    rt.flush()
    with pytest.raises(ValueError, match="not a valid worker name"):
        rt.emit(2, "resize\n")  # new messages under it are still refused


def test_a_db_path_through_a_linked_folder_and_dotdot_is_the_file_the_system_opens(
    tmp_path, monkeypatch
):
    # work/link -> ../real/sub; NBWORKERS_DB=link/../q.duckdb names real/q.duckdb for the
    # system, DuckDB and python -m nbworkers status. Made absolute by dropping 'link/..' as
    # text, it named work/q.duckdb: another, empty queue.
    (tmp_path / "real" / "sub").mkdir(parents=True)
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "link").symlink_to("../real/sub")
    monkeypatch.chdir(tmp_path / "work")
    store = DuckDBStore("link/../q.duckdb")
    store.apply(Batch(inserts=[msg(1)], next_seq=2))
    store.close()
    assert (tmp_path / "real" / "q.duckdb").exists()
    assert not (tmp_path / "work" / "q.duckdb").exists()


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


def test_a_traces_result_whose_class_is_not_defined_yet_says_so_after_a_restart(kernel):
    # A worker returned an instance of a notebook class; after a restart, before that cell
    # runs again, trace.result names the class and what to do, as trace.input does.
    kernel.ok(
        """
class Price:
    def __init__(self, value):
        self.value = value

@nw.worker("price")
def price(event):
    return Price(event)
"""
    )
    kernel.ok("emit(3, 'price')\nnw.wait('price')\nnw.flush()")
    kernel.restart()
    kernel.ok("%load_ext nbworkers\nimport nbworkers as nw")
    reply = kernel.run("nw.traces('price')[0].result")
    assert reply.ename == "NBWorkersError", reply.traceback
    assert "Price" in reply.evalue and "run the cell" in reply.evalue


def test_a_run_that_starts_during_a_capture_cell_does_not_send_later_cells_output_there(kernel):
    # A run starts while a %%capture cell runs (sys.stdout is IPython's capture buffer then).
    # Later a handler sets sys.stdout = None and, while it is None, another run starts: the
    # stream put back must be the kernel's, not that old capture buffer (cells would print
    # into it, and nothing would show).
    kernel.ok(
        """
import sys, time

@nw.worker("quick")
def quick(event):
    return event

@nw.worker("breaker")
def breaker(event):
    sys.stdout = None
    nw.emit(2, "quick")  # a run starts while sys.stdout is None
    deadline = time.monotonic() + 30
    while nw.counts("quick")["done"] < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
"""
    )
    kernel.ok("%%capture captured\nemit(1, 'quick')\nnw.wait('quick')\nprint('in the capture')")
    kernel.ok("emit(1, 'breaker')\nnw.wait('breaker')")
    reply = kernel.run("print('shown')")
    assert reply.status == "ok" and "shown" in reply.stdout, (reply.stdout, reply.traceback)
