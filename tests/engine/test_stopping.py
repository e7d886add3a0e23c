"""Stopping while something emits: every emit that returned an id is delivered, or is in the
file for the next start; an emit the stop cannot take raises NBWorkersError (issue #14)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from nbworkers import current
from nbworkers.errors import NBWorkersError
from nbworkers.message import message_id
from nbworkers.store import DuckDBStore
from tests.kernel import Kernel


def _kept(path: str) -> set[str]:
    """The ids of the messages queued, and of the dead letters, in the file at ``path``."""
    store = DuckDBStore(path)
    try:
        loaded = store.load()
        workers = {g.worker for g in loaded.dead_groups}
        dead = [d for name in workers for d in store.dead_page(name, None, 0)]
    finally:
        store.close()
    return {message_id(m.seq) for m in loaded.messages} | {message_id(d.seq) for d in dead}


def _wait_until(condition, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# ----- the runtime of this process: nw.shutdown() racing emits from threads ------------------


def test_shutdown_while_threads_emit_loses_nothing_and_opens_no_second_writer(
    fresh_runtime, tmp_path
):
    nw = fresh_runtime
    ran: set[str] = set()
    started = []  # every runtime the api starts, with the runtimes still open at that moment
    nw.on_start(lambda rt: started.append((rt, [r for r, _ in started if r.store.con])))

    @nw.worker("sink", concurrency=2)
    def sink(event, message):
        ran.add(message.id)

    returned: list[str] = []
    refused: list[BaseException] = []
    halt = threading.Event()

    def feed():
        while not halt.is_set():
            try:
                returned.append(nw.emit(0, "sink"))
            except Exception as exc:  # noqa: BLE001 - the test asserts which
                refused.append(exc)

    threads = [threading.Thread(target=feed) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        # When the threads are emitting, stop under them
        _wait_until(lambda: len(returned) > 300)
        nw.shutdown()
        count_at_stop = len(returned)
        _wait_until(lambda: len(returned) > count_at_stop + 300)  # they go on, on a new runtime
    finally:
        halt.set()
        for thread in threads:
            thread.join()
    nw.shutdown()

    # Every id returned ran or waits in the file; a refusal is an NBWorkersError saying why
    lost = set(returned) - ran - _kept(str(tmp_path / "q.duckdb"))
    assert not lost, f"{len(lost)} of {len(returned)} emitted messages were lost"
    assert all(isinstance(exc, NBWorkersError) for exc in refused), refused[:3]
    assert all("Nothing was enqueued" in str(exc) for exc in refused), refused[:1]
    # A runtime started only once the one before it had closed the file
    assert len(started) >= 2
    assert all(not still_open for _, still_open in started), started


def test_an_emit_after_the_last_write_raises_and_one_after_the_stop_starts_anew(
    fresh_runtime, tmp_path, monkeypatch
):
    nw = fresh_runtime
    monkeypatch.setattr(current, "_GRACE_S", 0.5)  # the time a stop gives runs going
    release = threading.Event()
    during: list = []

    @nw.worker("slow")
    def slow(event):
        release.wait(30)
        try:  # emitted while stopping, after the last write: refused, with what to do
            during.append(nw.emit(0, "other"))
        except NBWorkersError as exc:
            during.append(exc)

    first = nw.runtime()
    slow_id = nw.emit(0, "slow")
    _wait_until(lambda: first.counts("slow")["running"] == 1)
    stopper = threading.Thread(target=nw.shutdown)
    stopper.start()
    # While the stop waits for the run, emits join its last write
    _wait_until(lambda: first.stopping)
    joined = nw.emit(1, "other")
    assert nw.running() is None
    # The run outlives the time the stop gives it: its emit comes after the last write.
    # nw.flush() returns once the stop's last write is done, and the file closed
    nw.flush()
    assert first.store.con is None
    stopper.join()
    release.set()
    _wait_until(lambda: during)
    assert isinstance(during[0], NBWorkersError), during
    assert "when nbworkers stopped" in str(during[0])
    assert "Nothing was enqueued" in str(during[0])
    assert nw.running() is None  # the abandoned run started no runtime
    # The message emitted during the stop is in the file, with the abandoned run's
    assert {joined, slow_id} <= _kept(str(tmp_path / "q.duckdb"))
    # From a cell (or any other thread), emit after the stop starts nbworkers again
    assert nw.emit(2, "other")
    assert nw.running() is not None


# ----- a real kernel: %unload_ext, %reload_ext and a restart while emits go on ----------------

SETUP = """
import threading, time
import nbworkers as nw
from nbworkers.errors import NBWorkersError

def record(name, text):
    with open(name, "a") as f:
        f.write(text + "\\n")

@nw.worker("sink", concurrency=2)
def sink(event, message):
    record("ran.txt", message.id)

@nw.worker("spin", concurrency=2)
def spin(how):
    # Runs going on while nbworkers stops, emitting with the emit global or nw.emit
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            record("emitted.txt", emit(how, "sink") if how == "global" else nw.emit(how, "sink"))
        except NBWorkersError as exc:
            record("refused.txt", f"spin-{how} NBWorkersError: {exc}")
            return
        except BaseException as exc:
            record("refused.txt", f"spin-{how} OTHER {type(exc).__name__}: {exc}")
            return
        time.sleep(0.001)

halt = threading.Event()

def feed(how):
    while not halt.is_set():
        try:
            mid = emit(how, "sink") if how == "global" else nw.emit(how, "sink")
            record("emitted.txt", mid)
        except NBWorkersError as exc:
            record("refused.txt", f"{how} NBWorkersError: {exc}")
        except BaseException as exc:
            record("refused.txt", f"{how} OTHER {type(exc).__name__}: {exc}")
        time.sleep(0.001)

feeders = [threading.Thread(target=feed, args=(how,), daemon=True) for how in ("nw", "global")]
for t in feeders:
    t.start()
emit("global", "spin")
emit("nw", "spin")
"""


def _lines(folder: Path, name: str) -> list[str]:
    path = folder / name
    return path.read_text().splitlines() if path.exists() else []


def _emitting(folder: Path) -> bool:
    """Both threads and the spinning run have emitted a few messages."""
    return len(_lines(folder, "emitted.txt")) > 60 and (folder / "ran.txt").exists()


def _check(folder: Path, db: str) -> None:
    emitted = _lines(folder, "emitted.txt")
    assert len(emitted) > 60
    lost = set(emitted) - set(_lines(folder, "ran.txt")) - _kept(db)
    assert not lost, f"{len(lost)} of {len(emitted)} emitted messages were lost"
    others = [line for line in _lines(folder, "refused.txt") if "NBWorkersError" not in line]
    assert not others, others[:3]


@pytest.fixture
def emitting_kernel(tmp_path):
    """A kernel whose threads and a run emit in a loop; the test folder and database."""
    db = str(tmp_path / "q.duckdb")
    k = Kernel(str(tmp_path), env={"NBWORKERS_DB": db})
    try:
        k.ok("%load_ext nbworkers")
        k.ok(SETUP)
        _wait_until(lambda: _emitting(tmp_path))
        yield k, tmp_path, db
    finally:
        if k.kc.channels_running:
            k.shutdown()


def test_unload_ext_while_emits_go_on_loses_nothing_and_runs_may_still_emit(emitting_kernel):
    k, folder, db = emitting_kernel
    k.ok("%unload_ext nbworkers")

    # The runs going on could emit (the emit global, nw.emit) until the stop's last write;
    # then they are told, with an NBWorkersError (no NameError; their threads write it down
    # once told, which may be after %unload_ext returned)
    def spins():
        return sorted(line for line in _lines(folder, "refused.txt") if line.startswith("spin"))

    _wait_until(lambda: len(spins()) >= 2, 10)
    spin = spins()
    assert [line.split(":")[0] for line in spin] == [
        "spin-global NBWorkersError",
        "spin-nw NBWorkersError",
    ], spin
    # After the unload, the emit global says what to do
    reply = k.run("emit(0, 'sink')")
    assert reply.ename == "NBWorkersError" and "%load_ext nbworkers" in reply.evalue
    k.ok("halt.set()\nfor t in feeders: t.join()\nnw.shutdown()")
    k.shutdown()
    _check(folder, db)


def test_reload_ext_while_emits_go_on_loses_nothing(emitting_kernel):
    k, folder, db = emitting_kernel
    k.ok("%reload_ext nbworkers")
    count = len(_lines(folder, "emitted.txt"))
    _wait_until(lambda: len(_lines(folder, "emitted.txt")) > count + 60)  # they go on
    assert k.eval("emit is nw.emit")
    k.ok("halt.set()\nfor t in feeders: t.join()")
    k.shutdown()
    _check(folder, db)


def test_restart_while_emits_go_on_loses_nothing(emitting_kernel):
    k, folder, db = emitting_kernel
    k.restart()  # the new kernel does not open the file
    # nbworkers' stop ended before Jupyter's SIGTERM (2.5 s after the shutdown request): its
    # checkpoint emptied the write-ahead log, and no runtime opened the file after it
    assert not Path(db + ".wal").exists()
    _check(folder, db)
