"""The database file and its write-ahead log: found by absolute path, private from their first
byte, refused when someone else owns them, set aside when the log cannot be replayed in full."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

from nbworkers.errors import NBWorkersError, StoreCorruptError
from nbworkers.store import Batch, DuckDBStore, MessageRow, wal
from nbworkers.store import database as store_module
from tests.kernel import Kernel
from tests.ondisk import rows

NOBODY = 65534
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a file another's")


def msg(seq, data=b"x"):
    return MessageRow(seq, "w", 1000.0 + seq, 1, data, False, None, None)


# ----- the working directory may change -------------------------------------------------------


def test_a_kernel_that_changes_folder_goes_on_writing_to_the_same_file(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    k = Kernel(str(tmp_path), env={"JPY_SESSION_NAME": str(tmp_path / "nb.ipynb")})
    try:
        k.ok("%load_ext nbworkers\nimport nbworkers as nw")
        k.ok("emit('before', 'later')")
        # When the notebook (or a handler) changes folder, then emits more, big enough to go
        # through checkpoints (DuckDB deletes its log and makes it again)
        k.ok(f"%cd {str(elsewhere)!r}")
        k.ok("import os\nos.chdir('/')")
        for i in range(4):
            reply = k.ok(f"nw.emit_many([b'{i}' * 400_000] * 3, 'later')\nnw.flush()")
            assert "could not write" not in reply.stderr, reply.stderr
        k.ok("emit('after', 'later')")
        reply = k.ok("%unload_ext nbworkers")
        assert "unwritten" not in reply.stderr, reply.stderr
    finally:
        k.shutdown()
    assert list(elsewhere.iterdir()) == []
    db = tmp_path / ".nbworkers" / "nb.duckdb"
    assert rows(db, "select count(*) from messages where worker = 'later'") == [(14,)]


# ----- private from the first byte --------------------------------------------------------------


def test_a_new_database_is_private_from_its_first_byte(tmp_path, monkeypatch):
    # A db_path the user chose, in an ordinary 0755 folder, with the usual umask
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    path = folder / "q.duckdb"
    seen = []
    real_connect = duckdb.connect

    def connect(*args, **kwargs):
        con = real_connect(*args, **kwargs)
        seen.extend(
            (p.name, stat.S_IMODE(p.stat().st_mode)) for p in folder.iterdir() if p.is_file()
        )
        return con

    monkeypatch.setattr(store_module.duckdb, "connect", connect)
    old = os.umask(0o022)
    try:
        store = DuckDBStore(str(path))
        store.apply(Batch(inserts=[msg(1)]))
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
        store.close()
    finally:
        os.umask(old)
    assert seen and all(mode == 0o600 for _, mode in seen), seen
    assert modes == {"q.duckdb": 0o600, "q.duckdb.wal": 0o600}
    assert sorted(p.name for p in folder.iterdir()) == ["q.duckdb"]
    assert DuckDBStore(str(path)).load().messages[0].seq == 1


# ----- a write-ahead log that cannot be replayed in full ----------------------------------------

_FLUSH = wal.FLUSH_ENTRY  # the last entry of every commit


def _crashed_before_any_checkpoint(path: Path, commits: int = 3) -> tuple[bytes, bytes]:
    """The file and its log as a kill leaves them: nothing checkpointed yet, ``commits``
    batches of one message each in the log."""
    store = DuckDBStore(str(path))
    for i in range(1, commits + 1):
        store.apply(Batch(inserts=[msg(i, data=b"y" * 200)], next_seq=i + 1))
    saved = path.read_bytes(), Path(f"{path}.wal").read_bytes()
    store.close()
    return saved


def _put_back(path: Path, db: bytes, wal: bytes) -> None:
    path.write_bytes(db)
    Path(f"{path}.wal").write_bytes(wal)


def _damage_log(wal: bytes, where: str) -> bytes:
    log = bytearray(wal)
    flushes = [m.end() for m in _FLUSH.finditer(wal)]
    assert len(flushes) >= 3, flushes
    if where == "header":
        log[0] ^= 0xFF  # the first byte of the log's header
    elif where == "first entry's size":
        first = wal.index(b"\xff\xff") + 2  # the header ends with 0xffff
        log[first + 7] ^= 0xFF
    elif where == "a later entry's size":
        log[flushes[0] + 7] ^= 0xFF  # the entry after the first commit
    return bytes(log)


@pytest.mark.parametrize("where", ["header", "first entry's size", "a later entry's size"])
def test_a_log_that_cannot_be_replayed_in_full_is_moved_aside_with_the_database(tmp_path, where):
    path = tmp_path / "q.duckdb"
    db, wal = _crashed_before_any_checkpoint(path)
    damaged = _damage_log(wal, where)
    _put_back(path, db, damaged)
    # DuckDB itself opens such a file without a word, with some commits missing
    con = duckdb.connect(str(path))
    assert con.execute("select count(*) from duckdb_tables() where table_name = 'messages'")
    con.close()
    _put_back(path, db, damaged)
    with pytest.raises(StoreCorruptError) as info:
        DuckDBStore(str(path)).load()
    text = str(info.value)
    assert "is damaged and cannot be read" in text and "Nothing was deleted" in text
    assert "write-ahead log" in text
    # Every byte is kept, under the names the message gives
    kept = sorted(p for p in tmp_path.iterdir() if ".corrupt-" in p.name)
    assert [p.name.endswith(".wal") for p in kept] == [False, True]
    assert kept[0].read_bytes() == db and kept[1].read_bytes() == damaged
    assert all(str(p) in text for p in kept)
    assert not path.exists() and not Path(f"{path}.wal").exists()
    # With the log repaired, every message is there
    _put_back(path, db, wal)
    assert [m.seq for m in DuckDBStore(str(path)).load().messages] == [1, 2, 3]


def test_a_log_cut_short_in_its_last_commit_is_no_damage(tmp_path):
    # A kill between two writes of one commit leaves part of it: that commit never returned
    path = tmp_path / "q.duckdb"
    db, wal = _crashed_before_any_checkpoint(path)
    last = [m.end() for m in _FLUSH.finditer(wal)]
    _put_back(path, db, wal[: (last[-2] + last[-1]) // 2])
    store = DuckDBStore(str(path))
    assert [m.seq for m in store.load().messages] == [1, 2]
    store.apply(Batch(inserts=[msg(7)]))
    store.close()
    assert not [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert [m.seq for m in DuckDBStore(str(path)).load().messages] == [1, 2, 7]


_CHECKPOINTING = textwrap.dedent("""
    import sys
    from nbworkers.store import Batch, DuckDBStore, MessageRow
    store = DuckDBStore(sys.argv[1])
    for i in range(1, 4):
        row = MessageRow(i, "w", 1.0, 1, b"z" * 300, False, None, None)
        store.apply(Batch(inserts=[row], next_seq=i + 1))
    store.checkpoint()
""")


# CI installs strace (.ci/run): there a missing one fails the test instead of skipping it.
@pytest.mark.skipif(
    shutil.which("strace") is None and not os.environ.get("CI"),
    reason="needs strace to kill at a system call (apt-get install strace)",
)
@pytest.mark.parametrize("at", ["first sync of the file", "second sync of the file", "log deleted"])
def test_a_kill_at_any_step_of_a_checkpoint_is_no_damage(tmp_path, at):
    # A checkpoint writes a marker in the log, then the file, then deletes the log: killed in
    # between, the log holds commits DuckDB rightly does not replay (they are in the file, or
    # are replayed up to the marker)
    path = tmp_path / "q.duckdb"
    DuckDBStore(str(path)).close()
    if at == "log deleted":
        kill = ["-P", f"{path}.wal", "-e", "trace=unlink,unlinkat"]
        kill += ["-e", "inject=unlink,unlinkat:signal=SIGKILL"]
    else:
        when = 1 if at == "first sync of the file" else 2
        kill = ["-P", str(path), "-e", "trace=fsync,fdatasync"]
        kill += ["-e", f"inject=fsync,fdatasync:signal=SIGKILL:when={when}"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    argv = ["strace", "-f", "-qq", "-o", os.devnull, *kill]
    done = subprocess.run(
        [*argv, sys.executable, "-c", _CHECKPOINTING, str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0, done.stderr  # killed
    assert Path(f"{path}.wal").stat().st_size > 0
    store = DuckDBStore(str(path))
    assert [m.seq for m in store.load().messages] == [1, 2, 3]
    store.close()
    assert not [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]


_WRITING = textwrap.dedent("""
    import os, sys
    from nbworkers.store import Batch, DuckDBStore, MessageRow
    store = DuckDBStore(sys.argv[1])
    seq = store.load().next_seq
    while True:
        n = 1 + seq % 300  # from one small message to 300 of up to 10 KB: commits of many writes
        batch = [
            MessageRow(seq + i, "w", 1.0, 1, os.urandom(200) * (1 + i % 50), False, None, None)
            for i in range(n)
        ]
        store.apply(Batch(inserts=batch, next_seq=seq + n))
        seq += n
        print(seq, flush=True)
""")


def test_kills_at_random_moments_of_writing_lose_no_commit_and_damage_nothing(tmp_path):
    import random

    path = tmp_path / "q.duckdb"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    committed = 1
    for _ in range(8):
        child = subprocess.Popen(
            [sys.executable, "-c", _WRITING, str(path)], stdout=subprocess.PIPE, env=env, text=True
        )
        try:
            commits = random.randint(1, 40)
            while commits:
                line = child.stdout.readline()
                assert line, "the writing process ended"
                if line.strip().isdigit():  # (DuckDB may print a progress bar)
                    committed = int(line)
                    commits -= 1
        finally:
            child.kill()
            child.wait()
        store = DuckDBStore(str(path))
        loaded = store.load()
        store.close()
        assert loaded.next_seq >= committed
        assert [m.seq for m in loaded.messages] == list(range(1, loaded.next_seq))
    assert not [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]


# ----- files someone else owns, and links ------------------------------------------------------


def _foreign(path: Path, data: bytes = b"") -> None:
    path.write_bytes(data)
    os.chown(path, NOBODY, NOBODY)
    path.chmod(0o666)


def _shared_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "tmp"
    folder.mkdir()
    folder.chmod(0o1777)  # like /tmp
    return folder


@as_root
@pytest.mark.parametrize("which", ["database", "log"])
def test_a_file_someone_else_owns_is_refused_and_never_written(tmp_path, which):
    folder = _shared_folder(tmp_path)
    path = folder / "q.duckdb"
    if which == "log":
        DuckDBStore(str(path)).close()
    target = path if which == "database" else Path(f"{path}.wal")
    before = b"planted by another user" if which == "log" else b""
    if which == "database":
        # Another user's database, made before the kernel's first use
        con = duckdb.connect(str(path))
        con.execute("create table planted (x int)")
        con.close()
        before = path.read_bytes()
        os.chown(path, NOBODY, NOBODY)
    else:
        _foreign(target, before)
    with pytest.raises(NBWorkersError) as info:
        DuckDBStore(str(path))
    text = str(info.value)
    assert repr(str(target)) in text and "nobody" in text, text
    assert "NBWorkers.db_path" in text
    assert target.read_bytes() == before
    assert os.stat(target).st_uid == NOBODY


@as_root
def test_a_log_someone_else_made_between_two_writes_is_refused_and_nothing_is_lost(tmp_path):
    folder = _shared_folder(tmp_path)
    path = folder / "q.duckdb"
    wal = Path(f"{path}.wal")
    store = DuckDBStore(str(path))
    store.apply(Batch(inserts=[msg(1)]))
    store.checkpoint()
    # Another user wins the race: the log is theirs before the next write
    wal.unlink(missing_ok=True)
    _foreign(wal, b"planted")
    with pytest.raises(NBWorkersError) as info:
        store.apply(Batch(inserts=[msg(2)]))
    text = str(info.value)
    assert repr(str(wal)) in text and "nobody" in text, text
    assert wal.read_bytes() == b"planted"
    # Once it is gone, the same batch goes through
    wal.unlink()
    store.apply(Batch(inserts=[msg(2)]))
    store.close()
    assert [m.seq for m in DuckDBStore(str(path)).load().messages] == [1, 2]


@pytest.mark.parametrize("which", ["database", "log"])
def test_a_symlink_is_refused(tmp_path, which):
    path = tmp_path / "q.duckdb"
    if which == "log":
        DuckDBStore(str(path)).close()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"")
    link = path if which == "database" else Path(f"{path}.wal")
    link.symlink_to(elsewhere)
    with pytest.raises(NBWorkersError) as info:
        DuckDBStore(str(path))
    text = str(info.value)
    assert repr(str(link)) in text and "symbolic link" in text, text
    assert str(elsewhere) in text
    assert elsewhere.read_bytes() == b""


def test_a_kernel_restarted_on_a_damaged_log_says_so_and_keeps_every_byte(tmp_path):
    path = tmp_path / "q.duckdb"
    k = Kernel(str(tmp_path), env={"NBWORKERS_DB": str(path)})
    try:
        k.ok("%load_ext nbworkers\nimport nbworkers as nw")
        for i in range(3):
            k.ok(f"emit({i}, 'later')")  # three commits, nothing checkpointed yet
        k.kill()
        wal = Path(f"{path}.wal")
        damaged = _damage_log(wal.read_bytes(), "header")
        wal.write_bytes(damaged)
        db = path.read_bytes()
        k.ok("%load_ext nbworkers\nimport nbworkers as nw")
        reply = k.run("emit(3, 'later')")
        assert reply.ename == "StoreCorruptError", reply.traceback
        assert "write-ahead log cannot be replayed in full" in reply.evalue
        kept = sorted(p for p in tmp_path.iterdir() if ".corrupt-" in p.name)
        assert [p.read_bytes() for p in kept] == [db, damaged]
        assert all(str(p) in reply.evalue for p in kept)
        # Running the cell again starts a fresh database
        k.ok("emit(3, 'later')")
        assert k.eval("nw.unhandled()") == {"later": 1}
    finally:
        k.shutdown()


@as_root
def test_a_kernel_refuses_a_log_another_user_made_and_loses_nothing(tmp_path):
    folder = _shared_folder(tmp_path)
    path = folder / "q.duckdb"
    wal = Path(f"{path}.wal")
    k = Kernel(str(tmp_path), env={"NBWORKERS_DB": str(path)})
    try:
        k.ok("%load_ext nbworkers\nimport nbworkers as nw")
        k.ok("emit('first', 'later')")
        # Another user wins the race for the log between two writes
        wal.unlink()
        _foreign(wal, b"planted")
        reply = k.run("emit('second', 'later')")
        assert reply.status == "ok", reply.traceback  # the emit itself is kept in memory
        for words in (repr(str(wal)), "belongs to nobody", "Nothing was written to it"):
            assert words in reply.stderr, reply.stderr
        assert wal.read_bytes() == b"planted"
        # Once that file is gone (its owner or an administrator removed it), all is written
        wal.unlink()
        k.ok("nw.flush()")
        k.ok("%unload_ext nbworkers")
    finally:
        k.shutdown()
    assert rows(path, "select count(*) from messages") == [(2,)]


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
