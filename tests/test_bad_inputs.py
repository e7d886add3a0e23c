"""Bad inputs and a hostile environment: each gets a clear message, and nothing is lost.

Points already covered elsewhere (not repeated here): unpicklable events
(engine/test_runtime, test_kernel), bad names and options (test_kernel, test_kernel_failures,
engine/test_retries, test_schedule), syntax errors (test_kernel, test_handlers), a second
kernel on the same file (test_kernel, store/test_store), a folder that cannot be created
(store/test_store), damaged files at the store level (store/test_store), a simulated write
failure in the runtime (engine/test_runtime), the HTML payload in a browser
(widgets/test_browser).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from nbworkers.engine import Runtime
from nbworkers.handlers import from_function
from tests.kernel import Kernel, wait_for
from tests.ondisk import rows


def nbworkers_threads(kernel: Kernel) -> list[str]:
    return kernel.eval(
        "sorted(t.name for t in __import__('threading').enumerate() "
        "if t.name.startswith('nbworkers'))"
    )


# ----- bad names and options (the ones no other test tries) ------------------------------------


def test_bad_cron_names_concurrency_and_decorator_arguments_change_nothing(kernel):
    kernel.ok("%%worker w --paused\nevent")
    kernel.ok("emit(1, 'w')")
    for cell, words in [
        ("%%cron 5m 'bad name'\npass", "1 to 64 letters"),
        ("%%worker w --concurrency -2\nevent", "--concurrency must be at least 1"),
        ("%%worker w --concurrency two\nevent", "--concurrency"),
    ]:
        reply = kernel.run(cell)
        assert reply.ename == "UsageError" and words in reply.evalue, (cell, reply.evalue)
    for code, error, words in [
        ("nw.set_concurrency('w', 0)", "ArgumentValueError", "at least 1"),
        ("nw.worker('w', concurrency=0)(print)", "ArgumentValueError", "at least 1"),
        ("nw.worker('bad name')(print)", "ArgumentValueError", "1 to 64 letters"),
        (
            "nw.worker('w', retries=-1)(print)",
            "ArgumentValueError",
            "retries must be a whole number",
        ),
        ("nw.cron('sometimes')(print)", "ArgumentValueError", "every-minute, hourly"),
    ]:
        reply = kernel.run(code)
        assert reply.ename == error and words in reply.evalue, (code, reply.evalue)
    assert kernel.eval("nw.workers()") == ["w"]
    counts = kernel.eval("nw.counts('w')")
    assert (counts["queued"], counts["done"]) == (1, 0)
    assert kernel.eval("nw.is_paused('w'), nw.api.runtime().snapshot('w').concurrency") == (
        True,
        4,
    )


# ----- large events ---------------------------------------------------------------------------


def test_a_50_mb_event_is_delivered_and_kept_across_a_restart(tmp_path):
    path = str(tmp_path / "q.duckdb")
    big = bytes(range(256)) * (50_000_000 // 256)
    rt = Runtime(path)
    try:
        rt.pause("w")
        rt.define("w", from_function("w", lambda e: (len(e), e[:3])))
        rt.emit(big, "w")
        rt.flush()
    finally:
        rt.stop()
    rt = Runtime(path)
    try:
        rt.define("w", from_function("w", lambda e: (len(e), e == big)))
        rt.resume("w")
        assert rt.wait("w", 60)
        assert rt.traces("w")[0].result == (len(big), True)
        assert rt.counts("w")["done"] == 1
    finally:
        rt.stop()


# ----- a full disk ----------------------------------------------------------------------------


def test_a_full_disk_is_said_under_the_cell_and_nothing_is_lost(kernel, tmp_path):
    kernel.ok(
        "import errno\n"
        "rt = nw.api.runtime()\n"
        "real_write = rt.store.apply\n"
        "full = True\n"
        "def write(batch):\n"
        "    if full:\n"
        "        raise OSError(errno.ENOSPC, 'No space left on device')\n"
        "    return real_write(batch)\n"
        "rt.store.apply = write"
    )
    reply = kernel.ok("ids = [emit(i, 'later') for i in range(50)]")
    # The cell that emitted says it, once, with what to do; the cell itself succeeded
    assert "No space left on device" in reply.stderr and "free disk space" in reply.stderr
    assert "Error in callback" not in reply.stdout + reply.stderr
    reply = kernel.run("nw.flush()")
    assert reply.ename == "NBWorkersError" and "No space left on device" in reply.evalue
    assert kernel.eval("nw.unhandled()") == {"later": 50}  # still there, in memory
    kernel.ok("full = False\nnw.flush()")
    # On disk: a new kernel finds them all and runs them
    kernel.restart()
    kernel.ok("%load_ext nbworkers\nimport nbworkers as nw\nseen = []")
    kernel.ok("%%worker later\nseen.append(event)")
    kernel.ok("assert nw.wait('later', timeout=20)")
    assert kernel.eval("sorted(seen)") == list(range(50))


# A child process, because the file size limit applies to every file the process writes.
_FULL_DISK = """
import json, os, resource, signal, sys
from nbworkers.errors import NBWorkersError
from nbworkers.handlers import from_function
from nbworkers.engine import Runtime

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
path = sys.argv[1]
rt = Runtime(path)
rt.define("w", from_function("w", lambda e: e))
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
# Room for the log to reach its 1 MB checkpoint, not for the file to grow much more
resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(path) + 1_500_000, hard))
emitted, errors = 0, []
for i in range(400):
    emitted += len(rt.emit_many([os.urandom(1000) for _ in range(100)], "nobody"))
    rt.emit(i, "w")
    try:
        rt.flush()
    except NBWorkersError as exc:
        errors.append(str(exc))
        if len(errors) == 3:
            break
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # space is back
rt.flush(timeout=30)
assert rt.wait("w", 30)
rt.stop()
rt = Runtime(path)
print(json.dumps({"emitted": emitted, "runs": i + 1, "errors": errors,
                  "kept": rt.counts("nobody")["queued"], "done": rt.counts("w")["done"]}))
rt.stop()
"""


@pytest.mark.skipif(sys.platform != "linux", reason="uses RLIMIT_FSIZE as a full disk")
def test_a_real_full_disk_loses_nothing_and_writing_resumes_when_space_returns(tmp_path):
    # DuckDB's own errors, not a simulation: first its automatic checkpoint fails (the commit
    # is durable but DuckDB invalidates the connection), then commits fail
    child = subprocess.run(
        [sys.executable, "-c", _FULL_DISK, str(tmp_path / "q.duckdb")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr
    result = json.loads(child.stdout.strip().splitlines()[-1])
    assert result["errors"], "the limit was never reached"
    assert "File too large" in result["errors"][0] and "free disk space" in result["errors"][0]
    assert "could not checkpoint" in child.stderr  # the durable commit was not written twice
    assert "works again; nothing was lost" in child.stderr
    assert result["kept"] == result["emitted"]
    assert result["done"] == result["runs"]


# ----- folders and files ----------------------------------------------------------------------


class Unprivileged:
    """Kernels that cannot write into a read-only folder, and folders for them.

    Root writes into any folder (CAP_DAC_OVERRIDE), and CI runs as root. So as root, kernels
    start through ``setpriv`` with no capabilities at all: root without capabilities obeys a
    folder's mode bits like anyone, and a 0555 folder refuses it with a real EACCES. (Not
    ``nobody``: the venv's interpreter and its standard library may live under /root, 0700,
    where ``nobody`` cannot read them.) As another user, kernels start as they are."""

    kernel_name = "python3"

    def __init__(self, monkeypatch):
        self.base = Path(tempfile.mkdtemp(prefix="nbworkers-ro-"))
        if os.geteuid() != 0:
            return
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            message = "as root, needs setpriv (util-linux) to start a kernel without capabilities"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        spec = self.base / "jupyter" / "kernels" / "no-capabilities"
        spec.mkdir(parents=True)
        argv = [setpriv, "--inh-caps=-all", "--bounding-set=-all", sys.executable]
        argv += ["-m", "ipykernel_launcher", "-f", "{connection_file}"]
        (spec / "kernel.json").write_text(
            json.dumps({"argv": argv, "display_name": "no capabilities", "language": "python"})
        )
        monkeypatch.setenv("JUPYTER_PATH", str(self.base / "jupyter"))
        self.kernel_name = "no-capabilities"

    def folder(self, name: str, writable: bool) -> Path:
        folder = self.base / name
        folder.mkdir(exist_ok=True)
        self.set_writable(folder, writable)
        return folder

    @staticmethod
    def set_writable(folder: Path, writable: bool) -> None:
        folder.chmod(0o755 if writable else 0o555)

    def kernel(self, cwd: Path, env: dict) -> Kernel:
        """A kernel in ``cwd`` with nbworkers loaded (nothing opened yet)."""
        k = Kernel(str(cwd), env=env, kernel_name=self.kernel_name)
        try:
            k.ok("%load_ext nbworkers\nimport os\nimport nbworkers as nw")
            if self.kernel_name != "python3":
                capabilities = k.eval(
                    "[line.split()[1] for line in open('/proc/self/status') "
                    "if line.startswith('CapEff')][0]"
                )
                assert int(capabilities, 16) == 0, capabilities
        except BaseException:
            k.shutdown()
            raise
        return k

    def clean(self) -> None:
        for folder in self.base.iterdir():
            folder.chmod(0o755)
        shutil.rmtree(self.base)


@pytest.fixture
def unprivileged(monkeypatch):
    place = Unprivileged(monkeypatch)
    try:
        yield place
    finally:
        place.clean()


def test_a_read_only_folder_says_what_to_do_and_another_file_works(unprivileged):
    ro = unprivileged.folder("notebooks", writable=False)
    rw = unprivileged.folder("elsewhere", writable=True)
    k = unprivileged.kernel(ro, {"JPY_SESSION_NAME": str(ro / "analysis.ipynb")})
    try:
        assert k.eval("os.access('.', os.W_OK)") is False  # the real EACCES path, even as root
        reply = k.run("%%worker w\nevent * 2")
        assert reply.ename == "UsageError", reply.traceback
        for words in (f"cannot create the folder {str(ro / '.nbworkers')!r}", "Permission denied"):
            assert words in reply.evalue, reply.evalue
        assert "%config NBWorkers.db_path = 'other.duckdb'" in reply.evalue
        reply = k.run("emit(1, 'w')")
        assert reply.ename == "NBWorkersError" and "Permission denied" in reply.evalue
        assert nbworkers_threads(k) == []
        assert not (ro / ".nbworkers").exists()
        # What the message says to do works, and the worker cell runs as it is
        k.ok(f"%config NBWorkers.db_path = {str(rw / 'q.duckdb')!r}")
        k.ok("%%worker w\nevent * 2")
        k.ok("emit(21, 'w')\nassert nw.wait('w', timeout=10)")
        assert k.eval("nw.traces('w')[0].result") == 42
    finally:
        k.shutdown()
    assert rows(rw / "q.duckdb", "select done from workers") == [(1,)]


def test_a_database_in_a_folder_that_became_read_only_is_left_as_it_was(unprivileged):
    shared = unprivileged.folder("shared", writable=True)
    rw = unprivileged.folder("elsewhere", writable=True)
    path = shared / "q.duckdb"
    # A message queued by the user while the folder was writable
    k = unprivileged.kernel(shared, {"NBWORKERS_DB": str(path)})
    try:
        k.ok("emit('kept', 'later')")
        k.ok("%unload_ext nbworkers")
    finally:
        k.shutdown()
    (shared / "q.duckdb.wal").unlink(missing_ok=True)  # empty after the last checkpoint
    unprivileged.set_writable(shared, False)
    before = path.read_bytes()
    k = unprivileged.kernel(shared, {"NBWORKERS_DB": str(path)})
    try:
        reply = k.run("emit(1, 'later')")
        assert reply.ename == "NBWorkersError", reply.traceback
        assert f"cannot write beside its queue database {str(path)!r}" in reply.evalue
        assert "Permission denied" in reply.evalue and "NBWorkers.db_path" in reply.evalue
        assert nbworkers_threads(k) == []
        # The file was closed again: the kernel moves on to another one
        k.ok(f"%config NBWorkers.db_path = {str(rw / 'q.duckdb')!r}\nemit(2, 'later')")
        assert k.eval("nw.unhandled()") == {"later": 1}
    finally:
        k.shutdown()
    assert path.read_bytes() == before
    assert not (shared / "q.duckdb.wal").exists()
    assert rows(path, "select worker from messages") == [("later",)]


def test_a_damaged_database_is_moved_aside_and_the_next_cell_starts_fresh(tmp_path):
    db = tmp_path / "q.duckdb"
    db.write_bytes(b"\x00garbage from a bad disk\xff" * 1000)
    k = Kernel(str(tmp_path), env={"NBWORKERS_DB": str(db)})
    try:
        k.ok("%load_ext nbworkers\nimport nbworkers as nw")
        reply = k.run("%%worker w\nevent * 2")
        assert reply.ename == "UsageError", reply.traceback
        assert "is damaged and cannot be read" in reply.evalue
        assert "Run the cell again" in reply.evalue
        assert nbworkers_threads(k) == []
        kept = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
        assert [p.read_bytes() for p in kept] == [b"\x00garbage from a bad disk\xff" * 1000]
        assert str(kept[0]) in reply.evalue
        # Running the cell again works, on a fresh file
        k.ok("%%worker w\nevent * 2")
        k.ok("emit(21, 'w')\nassert nw.wait('w', timeout=10)")
        assert k.eval("nw.traces('w')[0].result") == 42
    finally:
        k.shutdown()
    assert rows(db, "select done from workers") == [(1,)]


# ----- handlers that misbehave ----------------------------------------------------------------


def test_system_exit_and_keyboard_interrupt_in_a_handler_leave_the_kernel_running(kernel):
    kernel.ok("%%worker w --concurrency 1\nraise event('from the handler')")
    kernel.ok("nw.emit_many([SystemExit, KeyboardInterrupt, ValueError], 'w')\nnw.wait('w')")
    errors = kernel.eval("[t.error.strip().splitlines()[-1] for t in nw.traces('w')]")
    assert errors == [
        "ValueError: from the handler",
        "KeyboardInterrupt: from the handler",
        "SystemExit: from the handler",
    ]
    assert kernel.eval("nw.counts('w')['failed'], nw.counts('w')['dead']") == (3, 3)
    kernel.ok("%%worker w\nevent")
    kernel.ok("emit('still here', 'w')\nnw.wait('w')")
    assert kernel.eval("nw.traces('w')[0].result") == "still here"


def test_a_handler_that_never_returns_shows_in_its_panel_and_blocks_no_other_worker(kernel):
    kernel.ok("import threading\nrelease = threading.Event()")
    kernel.ok("%%worker stuck --concurrency 1\nrelease.wait()")
    kernel.ok("%%worker other\nevent + 1")
    kernel.ok("from nbworkers.widgets import panels\np = panels('stuck')[0]")
    try:
        kernel.ok("emit(1, 'stuck'); emit(2, 'stuck')")
        kernel.ok("nw.emit_many(range(100), 'other')\nassert nw.wait('other', timeout=20)")
        assert kernel.eval("nw.counts('other')['done']") == 100
        counts = kernel.eval("nw.counts('stuck')")
        assert (counts["running"], counts["queued"]) == (1, 1)
        started = kernel.eval("nw.api.runtime().snapshot('stuck').running_started")
        assert len(started) == 1 and started[0] < time.time()
        # The panel shows the run going since when (the browser counts the seconds, in amber
        # from 10 s on), and refreshes on the runtime's tick while the run goes on
        wait_for(kernel, "p.wants(set())")
        wait_for(kernel, "len(p.view.header['running']) == 1")
        started = kernel.eval("p.view.header['running'][0]['started_at']")
        assert kernel.eval("p.view.header['long_run_s']") == 10
        wait_for(kernel, f"p.view.header['now'] - {started} > 1")  # it ticks: a second later
        assert kernel.eval("p.view.header['counts']['running']") == 1
    finally:
        kernel.ok("release.set()")
    kernel.ok("assert nw.wait('stuck', timeout=10)")
    wait_for(kernel, "p.view.header['running'] == []")


def test_unload_with_a_handler_that_never_returns_leaves_only_that_thread(kernel, tmp_path):
    # A Python thread cannot be killed: %unload_ext waits 5 s for runs, then leaves them
    kernel.ok("import threading\nrelease = threading.Event()")
    kernel.ok("%%worker stuck\nrelease.wait()")
    kernel.ok("emit(1, 'stuck'); emit(2, 'other')")
    wait_for(kernel, "nw.counts('stuck')['running'] == 1")
    started = time.monotonic()
    kernel.ok("%unload_ext nbworkers")
    assert 4 < time.monotonic() - started < 30
    assert nbworkers_threads(kernel) == ["nbworkers-run-stuck-0"]
    # The file was written and closed: its message waits for the next start, and so does
    # the stuck run's (at-least-once)
    assert rows(tmp_path / "q.duckdb", "select worker from messages order by seq") == [
        ("stuck",),
        ("other",),
    ]
    kernel.ok("release.set()")
    wait_for(kernel, "not [t for t in threading.enumerate() if t.name.startswith('nbworkers')]")


# ----- restarts -------------------------------------------------------------------------------


def test_an_event_whose_class_is_not_defined_yet_waits_for_the_defining_cell(kernel):
    job_class = "from dataclasses import dataclass\n@dataclass\nclass Job:\n    path: str"
    kernel.ok(job_class)
    kernel.ok("emit(Job('a.png'), 'resize'); emit(Job('b.png'), 'resize')")
    kernel.restart()
    kernel.ok("%load_ext nbworkers\nimport nbworkers as nw")
    kernel.ok("%%worker resize\nevent.path.upper()")  # before the class exists
    kernel.ok("assert nw.wait('resize', timeout=0.5) is False")
    counts = kernel.eval("nw.counts('resize')")
    assert (counts["queued"], counts["done"], counts["failed"]) == (2, 0, 0)
    assert "cannot be unpickled yet" in kernel.eval("nw.traces('resize')[0].error")
    assert kernel.eval("[m['parked'] is not None for m in nw.messages('resize')]") == [True, True]
    kernel.ok(job_class)  # the defining cell: after it, the parked messages run
    kernel.ok("assert nw.wait('resize', timeout=10)")
    assert kernel.eval("sorted(t.result for t in nw.traces('resize') if t.ok)") == [
        "A.PNG",
        "B.PNG",
    ]
    counts = kernel.eval("nw.counts('resize')")
    assert (counts["queued"], counts["done"], counts["failed"]) == (0, 2, 0)


@pytest.mark.parametrize("magic", ["unload_ext", "reload_ext"])
def test_unload_and_reload_ext_write_what_threads_emitted_and_leave_no_thread(
    kernel, tmp_path, magic
):
    # The writer waits 10 s between commits: only stopping writes what the thread emitted
    kernel.ok("%reload_ext nbworkers\n%config NBWorkers.flush_interval_s = 10.0")
    kernel.ok("emit(0, 'nobody')")
    reply = kernel.ok(
        "import threading\n"
        "t = threading.Thread(target=lambda: [emit(i, 'nobody') for i in range(1, 500)])\n"
        "t.start(); t.join()\n"
        "assert nw.api.runtime().has_unwritten\n"
        f"get_ipython().run_line_magic({magic!r}, 'nbworkers')\n"
        "print(sorted(t.name for t in threading.enumerate() if t.name.startswith('nbw')))"
    )
    assert reply.stdout.strip() == "[]"
    if magic == "unload_ext":  # the file is closed: another process may read it
        assert rows(tmp_path / "q.duckdb", "select count(*) from messages") == [(500,)]
    else:
        assert kernel.eval("nw.unhandled()") == {"nobody": 500}  # read back from the file


def test_kernel_shutdown_writes_what_handlers_emitted_and_exits_cleanly(tmp_path):
    db = tmp_path / "q.duckdb"
    go, emitted, left = tmp_path / "go", tmp_path / "emitted", tmp_path / "left"
    k = Kernel(str(tmp_path), env={"NBWORKERS_DB": str(db)})
    process = k.km.provisioner.process
    try:
        # Registered before nbworkers' own handler, so it runs after it (atexit is LIFO): the
        # threads still alive once nbworkers has stopped (they are daemons, which exiting
        # would not wait for)
        k.ok(
            "import atexit, threading\n"
            "def left():\n"
            "    alive = [t.name for t in threading.enumerate() if t.name.startswith('nbw')]\n"
            f"    with open({str(left)!r}, 'w') as f:\n"
            "        f.write(repr(alive))\n"
            "atexit.register(left)"
        )
        # The writer waits 10 s between commits: only stopping writes what the run emits
        k.ok("%load_ext nbworkers\n%config NBWorkers.flush_interval_s = 10.0")
        k.ok(
            "%%worker fan\n"
            "import os, time\n"
            "deadline = time.time() + 20\n"
            f"while not os.path.exists({str(go)!r}) and time.time() < deadline:\n"
            "    time.sleep(0.01)\n"
            "for i in range(event):\n"
            "    emit(i, 'nobody')\n"
            f"with open({str(emitted)!r}, 'w') as f:\n"
            "    f.write(str(nw.api.runtime().has_unwritten))"
        )
        k.ok("import nbworkers as nw\nemit(300, 'fan')")
        go.touch()  # the cell has ended (and flushed): the run emits now
        deadline = time.monotonic() + 20
        while not emitted.exists() or not emitted.read_text():
            assert time.monotonic() < deadline, "the handler did not run"
            time.sleep(0.01)
        assert emitted.read_text() == "True"  # its messages were not on disk yet
    finally:
        k.shutdown()
    assert process.returncode == 0  # exited by itself, not killed after a time-out
    assert left.read_text() == "[]"  # no nbworkers thread was left running
    assert rows(db, "select count(*) from messages where worker = 'nobody'") == [(300,)]
    assert rows(db, "select done from workers where name = 'fan'") == [(1,)]


def test_a_run_ending_while_the_runtime_stops_may_still_emit(tmp_path):
    # %unload_ext, %reload_ext and shutdown wait up to 5 s for runs going: what they emit
    # meanwhile is written with the rest, not refused
    path = str(tmp_path / "q.duckdb")
    rt = Runtime(path)
    started, gate = threading.Event(), threading.Event()

    def fan(event):
        started.set()
        assert gate.wait(10)
        return rt.emit(event, "next")

    rt.define("fan", from_function("fan", fan))
    rt.emit(1, "fan")
    assert started.wait(10)
    stopping = threading.Thread(target=rt.stop)
    stopping.start()
    deadline = time.monotonic() + 10
    while not rt.stopping:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    gate.set()
    stopping.join(10)
    assert rt.traces("fan")[0].error is None
    again = Runtime(path)
    try:
        assert again.counts("fan")["done"] == 1
        assert again.unhandled() == {"next": 1}
    finally:
        again.stop()
