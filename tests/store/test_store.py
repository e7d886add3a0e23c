"""The DuckDB store: schema, batched writes, load, trace trimming, locking, and text DuckDB
cannot hold as it is (lone surrogates in output and errors) written all the same."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import duckdb
import pytest

from nbworkers.errors import NBWorkersError, StoreCorruptError, StoreLockedError
from nbworkers.handlers import from_function
from nbworkers.store import Batch, DuckDBStore, MessageRow, TraceRow, WorkerRow


def msg(seq, worker="w", data=b"x"):
    return MessageRow(seq, worker, 1000.0 + seq, 1, data, False, None, None)


def trace_row(seq, worker="w"):
    return TraceRow(seq, worker, seq, 1.0, 0.1, b"in", None, "None", "", None, False)


def test_written_messages_load_back_in_order(tmp_path):
    path = str(tmp_path / "q.duckdb")
    store = DuckDBStore(path)
    store.apply(Batch(inserts=[msg(3, "a"), msg(1, "b"), msg(2, "a")], next_seq=4))
    store.close()

    loaded = DuckDBStore(path).load()
    assert [m.seq for m in loaded.messages] == [1, 2, 3]
    assert [(m.worker, m.data) for m in loaded.messages] == [("b", b"x"), ("a", b"x"), ("a", b"x")]
    assert loaded.next_seq == 4


def test_acks_delete_written_messages_and_those_inserted_in_the_same_batch(tmp_path):
    store = DuckDBStore(str(tmp_path / "q.duckdb"))
    store.apply(Batch(inserts=[msg(i) for i in range(1, 6)]))
    # Given message 6 is inserted and acked in one batch, and 2 and 4 were written before
    store.apply(Batch(inserts=[msg(6)], acks=[2, 4, 6]))
    assert [m.seq for m in store.load().messages] == [1, 3, 5]


def test_worker_rows_are_upserted(tmp_path):
    store = DuckDBStore(str(tmp_path / "q.duckdb"))
    store.apply(Batch(workers=[WorkerRow("a", True, 1, 0)]))
    store.apply(Batch(workers=[WorkerRow("a", False, 5, 2), WorkerRow("b", True, 0, 0)]))
    rows = {w.name: w for w in store.load().workers}
    assert rows["a"] == WorkerRow("a", False, 5, 2)
    assert rows["b"].paused is True


def test_traces_are_trimmed_to_the_newest_per_worker(tmp_path):
    store = DuckDBStore(str(tmp_path / "q.duckdb"), traces_kept=3)
    store.apply(Batch(traces=[trace_row(i, "a") for i in range(1, 6)] + [trace_row(9, "b")]))
    store.apply(Batch(traces=[trace_row(10, "a")]))
    seqs = [(t.worker, t.seq) for t in store.load().traces]
    assert seqs == [("a", 10), ("b", 9), ("a", 5), ("a", 4)]


def test_next_seq_never_reuses_a_stored_number(tmp_path):
    store = DuckDBStore(str(tmp_path / "q.duckdb"))
    store.apply(Batch(inserts=[msg(41)], traces=[trace_row(50)]))
    assert store.load().next_seq == 51


def test_a_failed_batch_changes_nothing(tmp_path):
    store = DuckDBStore(str(tmp_path / "q.duckdb"))
    store.apply(Batch(inserts=[msg(1)]))
    # A worker that is not a string: the insert fails mid-transaction
    bad = Batch(inserts=[msg(2)], traces=[TraceRow(*([None] * 11))._replace(worker=object())])
    with pytest.raises(duckdb.Error, match="Unable to transform python value"):
        store.apply(bad)
    assert [m.seq for m in store.load().messages] == [1]


def test_files_are_private(tmp_path):
    path = tmp_path / "sub" / "q.duckdb"
    store = DuckDBStore(str(path))
    store.apply(Batch(inserts=[msg(1)]))
    store.close()
    assert (path.parent.stat().st_mode & 0o777) == 0o700
    assert (path.stat().st_mode & 0o777) == 0o600


def test_a_file_held_by_another_process_names_it(tmp_path):
    path = str(tmp_path / "q.duckdb")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
                import duckdb, sys, time
                con = duckdb.connect({path!r})
                print("open", flush=True)
                time.sleep(60)
            """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(StoreLockedError) as info:
            DuckDBStore(path)
        text = str(info.value)
        assert f"PID {holder.pid}" in text
        assert "NBWorkers.db_path" in text and "NBWORKERS_DB" in text
    finally:
        holder.kill()
        holder.wait()


def test_an_uncreatable_folder_says_what_to_do(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(NBWorkersError, match=r"NBWorkers\.db_path"):
        DuckDBStore(str(blocker / "q.duckdb"))


def test_the_write_ahead_log_stays_private_across_checkpoints(tmp_path):
    # DuckDB deletes its log at every checkpoint and creates it again at the next write,
    # with the umask's mode unless nbworkers made it first
    path = tmp_path / "q.duckdb"
    wal = tmp_path / "q.duckdb.wal"
    store = DuckDBStore(str(path))
    modes = set()
    for round_ in range(3):
        store.apply(Batch(inserts=[msg(round_ * 10 + i, data=b"x" * 300_000) for i in range(5)]))
        assert wal.exists()
        modes.add(wal.stat().st_mode & 0o777)
        store.checkpoint()
        assert not wal.exists() or wal.stat().st_size == 0
    store.close()
    assert modes == {0o600}
    assert (path.stat().st_mode & 0o777) == 0o600


def _damage(path, how):
    """Damage a store file with one message in it, the way disks and crashes do."""
    if how == "not a database":
        path.write_bytes(b"name,age\nalice,3\n" * 100)
        return
    store = DuckDBStore(str(path))
    store.apply(Batch(inserts=[msg(i, data=b"y" * 200) for i in range(1, 2001)]))
    if how == "corrupt log":
        # As if the kernel died: the file and its log as they are before any checkpoint
        saved = path.read_bytes(), (path.parent / (path.name + ".wal")).read_bytes()
    store.close()
    data = bytearray(path.read_bytes())
    if how == "truncated":
        path.write_bytes(bytes(data[: len(data) // 2]))
    elif how == "flipped bytes":
        for i in range(12288 + 64, 12288 + 128):
            data[i] ^= 0xFF
        path.write_bytes(bytes(data))
    elif how == "corrupt log":
        log = bytearray(saved[1])
        for i in range(60, 64):
            log[i] ^= 0xFF
        path.write_bytes(saved[0])
        (path.parent / (path.name + ".wal")).write_bytes(bytes(log))


@pytest.mark.parametrize("how", ["not a database", "truncated", "flipped bytes", "corrupt log"])
def test_a_damaged_file_is_moved_aside_never_deleted_and_a_fresh_one_follows(tmp_path, how):
    path = tmp_path / "q.duckdb"
    _damage(path, how)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(StoreCorruptError) as info:
        DuckDBStore(str(path)).load()
    text = str(info.value)
    assert "is damaged and cannot be read" in text and "Nothing was deleted" in text
    assert "Run the cell again to start with a fresh, empty database" in text
    # Every byte is kept, under the name the message gives
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert sorted(after.values()) == sorted(before.values())
    kept = [name for name in after if ".corrupt-" in name]
    assert kept and all(f"{tmp_path / name}" in text for name in kept)
    assert not path.exists()
    if how == "corrupt log":
        assert "Only its write-ahead log was unreadable" in text
    # The next start makes a fresh file in its place
    store = DuckDBStore(str(path))
    assert store.load().messages == []
    store.apply(Batch(inserts=[msg(1)]))
    store.close()
    assert (path.stat().st_mode & 0o777) == 0o600


def test_undecodable_text_in_output_does_not_block_writes(rt, tmp_path):
    rt.define("w", from_function("w", lambda e: print("bad \udcff name")))
    rt.emit(1, "w")
    assert rt.wait("w", 5)
    rt.flush()
    rt.emit(2, "nobody")
    rt.flush()
    assert rt.store.load().traces[0].stdout == "bad \\udcff name\n"


def test_a_lone_surrogate_in_a_dead_letters_error_does_not_block_writes(rt):
    def fail(event):
        raise FileNotFoundError(f"no such file: {event}")

    rt.define("w", from_function("w", fail), 1)
    rt.emit("caf\udce9.txt", "w")
    assert rt.wait("w", 5)
    rt.emit("x", "other")
    rt.flush()  # raised for ever before
    [letter] = rt.store.dead_page("w", None, 0)
    assert "caf\\udce9.txt" in letter.error and len(rt.store.load().messages) == 1
    with pytest.raises(ValueError, match="not valid text"):
        rt.emit(1, "w", key="caf\udce9")
