"""--executor threads|processes|dask: the same delivery, traces, counts, retries and pauses
whichever executor runs a worker; what only another process can do (a time limit that kills,
a crash that fails one run); and what cannot be sent elsewhere, refused clearly.

The runtime tests use the module-level runtime (``fresh_runtime``) so that a cell's ``emit``
is the one a notebook has; the Dask tests run on a ``distributed.LocalCluster`` with worker
processes.
"""

from __future__ import annotations

import logging
import os
import pickle
import threading
import time

import pytest
from distributed import Client, LocalCluster

from nbworkers import api, current, handlers
from nbworkers.engine.policy import Policy
from nbworkers.errors import NBWorkersError
from nbworkers.executors.processes import IDLE_CHECK_S
from nbworkers.fingerprint import fingerprint
from tests.waiting import alive

EXECUTORS = ["threads", "processes", "dask"]


@pytest.fixture(scope="module")
def dask_client():
    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=2,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    )
    client = Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(params=EXECUTORS)
def executor(request, fresh_runtime):
    """Each executor in turn, on a fresh module-level runtime (Dask: the module's cluster)."""
    if request.param == "dask":
        fresh_runtime.use_dask(request.getfixturevalue("dask_client"))
    yield request.param
    current._dask_client = None


def cell(source: str, name: str = "w", kind: str = "worker", **names):
    """A handler made from ``source`` the way %%worker makes one, in a notebook-like
    namespace holding ``emit`` and ``names``."""
    namespace = {"__name__": "__main__", "emit": api.emit, **names}
    return handlers.from_cell(name, source, namespace, kind=kind)


def wait_until(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_delivery_traces_counts_retries_and_pause_are_the_same(executor):
    # Given a worker that fails the first attempt of some messages, retried once
    rt = api.runtime()
    source = (
        "if event.get('always') or (event['fail'] and message.attempt == 1):\n"
        "    raise ValueError(f'attempt {message.attempt} of {event}')\n"
        "print('ran', event['n'], 'attempt', message.attempt)\n"
        "{'n': event['n'] * factor, 'attempt': message.attempt}\n"
    )
    rt.define(
        "w", cell(source, factor=10), 2, policy=Policy(retries=1, backoff_s=0, executor=executor)
    )
    # When six messages (two failing once) and one that always fails are emitted
    for n in range(6):
        api.emit({"n": n, "fail": n in (1, 4)}, "w")
    api.emit({"n": 99, "fail": True, "always": True}, "w")
    assert rt.wait("w", 60)

    # Then the counts are those of any executor
    counts = rt.counts("w")
    assert {k: counts[k] for k in ("queued", "running", "done", "failed", "dead", "retried")} == {
        "queued": 0,
        "running": 0,
        "done": 6,
        "failed": 1,
        "dead": 1,
        "retried": 3,
    }
    # and the traces hold each run's result, output and traceback
    traces = rt.traces("w")
    ok = {t.input["n"]: t for t in traces if t.ok}
    assert ok[4].result == {"n": 40, "attempt": 2}
    assert ok[4].attempt == 2
    assert ok[4].stdout == "ran 4 attempt 2\n"
    assert ok[4].result_repr == "{'attempt': 2, 'n': 40}"  # reprlib sorts keys
    failed = [t for t in traces if t.input["n"] == 99]
    assert [t.attempt for t in failed] == [2, 1]
    error = failed[0].error
    assert "ValueError: attempt 2 of {'n': 99" in error
    assert 'File "<worker w #' in error  # the cell's own frame, with its line
    assert "raise ValueError(f'attempt {message.attempt} of {event}')" in error
    assert "child.py" not in error and "executors.py" not in error
    letters = api.dead_letters("w")
    assert len(letters) == 1 and "ValueError" in letters[0]["error"]

    # When it is paused, new messages wait; resumed, they run
    api.pause("w")
    api.emit({"n": 7, "fail": False}, "w")
    assert not rt.wait("w", 0.5)
    assert rt.counts("w")["queued"] == 1
    api.resume("w")
    assert rt.wait("w", 60)
    assert rt.counts("w")["done"] == 7

    # And everything is on disk, as with threads
    rt.flush()
    rows = dict(api.sql("select worker, count(*) from traces group by worker").fetchall())
    assert rows["w"] == len(rt.traces("w"))


def test_emit_from_a_handler_reaches_the_notebook(executor):
    # Given a worker that fans out to a sink running on the kernel's threads
    rt = api.runtime()
    got = []
    lock = threading.Lock()

    def sink(event):
        with lock:
            got.append(event)

    rt.define("sink", handlers.from_function("sink", sink))
    rt.define(
        "fan",
        cell("[emit({'from': event, 'i': i}, 'sink') for i in range(3)]", name="fan"),
        policy=Policy(executor=executor),
    )
    # When two messages go to the fan-out worker
    api.emit("a", "fan")
    api.emit("b", "fan")
    assert rt.wait(None, 60)
    # Then the sink received all six, and the fan-out's result says what emit returned
    assert sorted((e["from"], e["i"]) for e in got) == [(x, i) for x in "ab" for i in range(3)]
    ids = [t.result for t in rt.traces("fan")]
    if executor == "dask":
        assert ids == [[None] * 3, [None] * 3]  # queued when the run ended
    else:
        assert all(len(r) == 3 and all(i.startswith("m") for i in r) for r in ids)


def test_a_failure_has_the_same_group_whichever_executor_runs_it(executor):
    # Given a cell failing at its second line, in a library frame below it
    rt = api.runtime()
    rt.define(
        "w",
        cell("import json\njson.loads(event)['text']\n"),
        policy=Policy(executor=executor),
    )
    # When two different bad inputs fail the same way
    api.emit('{"a": 1}', "w")
    api.emit('{"b": 22}', "w")
    assert rt.wait("w", 60)
    # Then they are one group, with the fingerprint a thread's traceback of it gives
    (group,) = api.failures("w")
    assert (group.title, group.count) == ("KeyError: 'text' at line 2", 2)
    assert (
        group.fingerprint
        == fingerprint(
            'Traceback (most recent call last):\n  File "<worker w #1>", line 2, in worker_w\n'
            "KeyError: 'nothing'\n"
        ).digest
    )


def test_an_emit_error_reaches_the_handler_in_a_process(fresh_runtime):
    rt = api.runtime()
    rt.define(
        "w",
        cell(
            "try:\n    emit(1, 'bad name!')\n    answer = 'no error'\n"
            "except ValueError as exc:\n    answer = str(exc)\nanswer",
        ),
        policy=Policy(executor="processes"),
    )
    api.emit(None, "w")
    assert rt.wait("w", 60)
    assert "is not a valid worker name" in rt.traces("w")[0].result


@pytest.mark.parametrize("executor", ["processes", "dask"])
def test_runs_happen_in_another_process(executor, fresh_runtime, request):
    if executor == "dask":
        api.use_dask(request.getfixturevalue("dask_client"))
    rt = api.runtime()
    rt.define("w", cell("import os\nos.getpid()"), policy=Policy(executor=executor))
    api.emit(None, "w")
    assert rt.wait("w", 60)
    trace = rt.traces("w")[0]
    assert trace.ok, trace.error
    assert isinstance(trace.result, int) and trace.result != os.getpid()
    current._dask_client = None


def test_a_timeout_kills_the_process(fresh_runtime, tmp_path):
    # Given a run that writes its pid, then sleeps past its time limit
    rt = api.runtime()
    pid_file = tmp_path / "pid"
    source = (
        "import os, pathlib, time\n"
        "if event == 'slow':\n"
        "    pathlib.Path(path).write_text(str(os.getpid()))\n"
        "    time.sleep(60)\n"
        "os.getpid()\n"
    )
    rt.define(
        "w", cell(source, path=str(pid_file)), 1, policy=Policy(timeout_s=1, executor="processes")
    )
    # (a first run, so that the pool's process has started: a loaded machine may take longer
    # than the time limit to start one)
    api.emit("warm-up", "w")
    assert rt.wait("w", 30)
    api.emit("slow", "w")
    assert wait_until(pid_file.exists)
    pid = int(wait_until(pid_file.read_text) and pid_file.read_text())
    # When the limit passes, the trace says so and the process is gone
    assert wait_until(lambda: rt.counts("w")["failed"] == 1, 10)
    trace = rt.traces("w")[0]
    assert trace.timed_out
    assert "time limit of 1 s" in trace.error and "process was killed" in trace.error
    assert wait_until(lambda: not alive(pid), 10)
    # And the next message runs, in another process (the cell run again with a longer limit:
    # the new process starts within the run's time, which a loaded machine may take 1 s for)
    rt.define(
        "w", cell(source, path=str(pid_file)), 1, policy=Policy(timeout_s=60, executor="processes")
    )
    api.emit("fast", "w")
    assert rt.wait("w", 30)
    assert rt.traces("w")[0].ok and rt.traces("w")[0].result != pid


def test_a_timeout_on_dask_cancels_the_task(fresh_runtime, dask_client):
    api.use_dask(dask_client)
    rt = api.runtime()
    rt.define(
        "w",
        cell("import time\ntime.sleep(event)\n'slept'"),
        policy=Policy(timeout_s=0.5, executor="dask"),
    )
    api.emit(3, "w")
    assert wait_until(lambda: rt.counts("w")["failed"] == 1, 20)
    trace = rt.traces("w")[0]
    assert trace.timed_out and "Dask task was cancelled" in trace.error
    # (the cell again with a limit a loaded machine's round trip to Dask is well within)
    rt.define(
        "w",
        cell("import time\ntime.sleep(event)\n'slept'"),
        policy=Policy(timeout_s=30, executor="dask"),
    )
    api.emit(0, "w")
    assert rt.wait("w", 30)
    assert rt.traces("w")[0].result == "slept"
    current._dask_client = None


def test_a_process_that_dies_fails_only_its_run(fresh_runtime):
    rt = api.runtime()
    rt.define(
        "w",
        cell("import os\nif event == 'die':\n    os._exit(3)\nevent"),
        1,
        policy=Policy(executor="processes"),
    )
    api.emit("die", "w")
    api.emit("next", "w")
    assert rt.wait("w", 30)
    died, ok = sorted(rt.traces("w"), key=lambda t: t.seq)
    assert "the process running this handler died (exit code 3)" in died.error
    assert ok.result == "next"
    assert api.dead_letters("w")[0]["id"] == died.message_id


def test_a_pool_process_killed_while_idle_fails_no_run(fresh_runtime, caplog):
    # Killed from outside (the OOM killer, `kill` in a terminal) between two runs: the next
    # run goes to another process, nothing fails, and the log says what happened.
    rt = api.runtime()
    rt.define("w", cell("import os\nos.getpid()"), 1, policy=Policy(executor="processes"))
    api.emit(0, "w")
    assert rt.wait("w", 30)
    first = rt.traces("w")[0].result
    os.kill(first, 9)
    assert wait_until(lambda: not alive(first), 10)  # dead (a zombie until the pool reaps it)
    time.sleep(2 * IDLE_CHECK_S)  # and idle for a while: checked for life before its next job
    with caplog.at_level(logging.WARNING, logger="nbworkers"):
        api.emit(1, "w")
        assert rt.wait("w", 30)
    again = rt.traces("w")[0]
    assert again.ok and again.result != first, again.error
    assert api.counts("w")["failed"] == 0
    assert f"pool process {first} had ended while idle (signal 9)" in caplog.text


class SlowToPickle:
    """A notebook global whose pickling takes ``delay`` seconds (a big frame, say)."""

    def __init__(self, delay: float):
        self.delay = delay
        self.pickling = threading.Event()

    def __reduce__(self):
        self.pickling.set()
        time.sleep(self.delay)
        return (int, (0,))


def test_a_time_limit_passing_while_the_job_is_made_is_no_process_ended_while_idle(
    make_runtime, logged
):
    # Given one pool process, and a run whose job takes longer to make than its time limit (a
    # notebook global that takes 2 s to pickle, changed since the last run so not kept pickled)
    r = make_runtime(max_processes=1)
    handler = cell("slow\nevent", slow=SlowToPickle(0))
    r.define("w", handler, 1, policy=Policy(timeout_s=1, executor="processes"))
    r.emit("warm-up", "w")  # (the pool's process started)
    assert r.wait("w", 30)
    handler.call.__globals__["slow"] = SlowToPickle(2)
    r.emit("slow", "w")
    # Then the run times out, and the time limit killed its process
    assert wait_until(lambda: r.counts("w")["failed"] == 1, 20)
    assert r.traces("w")[0].timed_out
    # And once the slow run's thread has made its job and given the slot back, the log does
    # not say the process was killed from outside; the next run gets a new process
    assert wait_until(lambda: not r.executors.pool._busy, 10)
    # (the cell run again with a longer limit: the next run starts a process within its time)
    handler = cell("slow\nevent", slow=SlowToPickle(0))
    r.define("w", handler, 1, policy=Policy(timeout_s=60, executor="processes"))
    r.emit("next", "w")
    assert r.wait("w", 30)
    assert r.traces("w")[0].result == "next"
    said = [record.getMessage() for record in logged.records]
    assert not [line for line in said if "ended while idle" in line], said


def test_a_run_whose_process_dies_while_its_job_is_made_after_a_restart_runs_elsewhere(
    make_runtime,
):
    # Given one pool process taken by a run whose job takes 2 s to make (found in review: a
    # failed send counted as abandoned whenever the process was marked, as restart() marks
    # busy ones, and the run was left neither run nor queued)
    r = make_runtime(max_processes=1)
    handler = cell("slow\nevent", slow=SlowToPickle(0))
    r.define("w", handler, 1, policy=Policy(timeout_s=60, executor="processes"))
    r.emit("warm-up", "w")
    assert r.wait("w", 30)
    [pid] = r.executors.pool.pids()
    slow = handler.call.__globals__["slow"] = SlowToPickle(2)
    r.emit("x", "w")
    assert slow.pickling.wait(30)
    # When the processes are restarted (nw.restart_processes) and that one is killed from
    # outside before the job reaches it
    r.executors.pool.restart()
    os.kill(pid, 9)
    # Then the run goes to a new process and runs, once
    assert r.wait("w", 60)
    trace = r.traces("w")[0]
    assert trace.ok and trace.result == "x", trace.error
    assert r.counts("w")["done"] == 2 and r.counts("w")["failed"] == 0


FORKS_A_HELPER = (
    "import os, time\n"
    "if event == 'fork':\n"
    "    if os.fork() == 0:\n"
    "        time.sleep(float(os.environ.get('NBW_TEST_HELPER_SLEEP', '8')))\n"
    "        os._exit(0)  # a helper left running: it holds the pool process's socket\n"
    "    time.sleep(float(os.environ.get('NBW_TEST_SLEEP', '0')))\n"
    "os.getpid()"
)


def test_a_pool_process_killed_while_idle_with_a_forked_helper_fails_no_run(fresh_runtime):
    # The helper keeps the dead process's socket open: a job sent there is taken by no one.
    rt = api.runtime()
    rt.define("w", cell(FORKS_A_HELPER), 1, policy=Policy(executor="processes"))
    api.emit("fork", "w")
    assert rt.wait("w", 30)
    first = rt.traces("w")[0].result
    os.kill(first, 9)
    assert wait_until(lambda: not alive(first), 10)
    time.sleep(2 * IDLE_CHECK_S)  # (idle for a while, as above)
    api.emit("next", "w")
    assert rt.wait("w", 10)
    again = rt.traces("w")[0]
    assert again.ok and again.result != first, again.error


def test_a_pool_process_killed_mid_run_with_a_forked_helper_fails_its_run_at_once(
    fresh_runtime, monkeypatch
):
    monkeypatch.setenv("NBW_TEST_SLEEP", "30")  # the pool process's run
    monkeypatch.setenv("NBW_TEST_HELPER_SLEEP", "60")  # the helper it forks, holding its socket
    rt = api.runtime()
    rt.define("w", cell(FORKS_A_HELPER), 1, policy=Policy(executor="processes"))
    api.emit("warm", "w")
    assert rt.wait("w", 30)
    pid = rt.traces("w")[0].result
    api.emit("fork", "w")
    assert wait_until(lambda: api.counts("w")["running"] == 1)
    time.sleep(0.5)  # it has forked and sleeps
    os.kill(pid, 9)
    t0 = time.monotonic()
    assert rt.wait("w", 20)  # not until the helper exits (60 s), nor forever
    assert time.monotonic() - t0 < 20
    assert "the process running this handler died (signal 9)" in rt.traces("w")[0].error


def test_a_run_whose_processes_are_all_dead_when_sent_fails_after_three(monkeypatch):
    from types import SimpleNamespace

    from nbworkers.executors import processes

    started = []

    class Dead:
        def __init__(self, lifeline):
            started.append(self)
            self.conn = SimpleNamespace(send_bytes=self._broken)
            self.popen = SimpleNamespace(poll=lambda: -9, pid=0, returncode=-9)
            self.run, self.killed, self.idle_at = None, False, time.monotonic()  # just started
            self.env = None

        def _broken(self, data):
            raise BrokenPipeError("dead")

        def end(self):
            return -9

    monkeypatch.setattr(processes, "_Process", Dead)
    pool = processes.ProcessPool(1)
    try:
        done = pool.run(lambda sent: (b"job", {}), SimpleNamespace(timed_out=False), None)
    finally:
        pool.close()
    assert len(started) == processes.SEND_TRIES == 3
    assert "3 pool processes in a row were dead" in done["error"]


def test_systemexit_in_a_process_is_a_failed_run(fresh_runtime):
    rt = api.runtime()
    rt.define("w", cell("raise SystemExit(4)"), policy=Policy(executor="processes"))
    api.emit(None, "w")
    assert rt.wait("w", 30)
    assert "SystemExit: 4" in rt.traces("w")[0].error


def test_stopping_ends_every_pool_process_and_keeps_unfinished_messages(tmp_path):
    # Given a runtime whose only process is busy with a run that never ends
    from nbworkers.engine import Runtime

    path = str(tmp_path / "q.duckdb")
    rt = Runtime(path)
    namespace = {"__name__": "__main__"}
    rt.define(
        "w",
        handlers.from_cell("w", "import time\ntime.sleep(600)", namespace),
        1,
        policy=Policy(executor="processes"),
    )
    rt.emit(None, "w")
    assert wait_until(lambda: rt.counts("w")["running"] == 1)
    pids = rt.executors.pool.pids()
    assert len(pids) == 1
    # When it stops
    t0 = time.monotonic()
    rt.stop(timeout_s=1)
    # Then soon after its grace period the process is gone, and so is every run thread (well
    # before its 600 s sleep, on a loaded machine too)
    assert time.monotonic() - t0 < 30
    assert not any(alive(p) for p in pids)
    assert not [t.name for t in rt.registry.threads() if t.isalive()]
    # And the message is still queued for next time (at-least-once)
    again = Runtime(path)
    try:
        assert again.counts("w")["queued"] == 1
    finally:
        again.stop()


def test_an_unsendable_global_is_refused_when_the_worker_is_defined(fresh_runtime):
    rt = api.runtime()
    handler = cell("lock.acquire()", lock=threading.Lock())
    with pytest.raises(NBWorkersError) as raised:
        rt.define("w", handler, policy=Policy(executor="processes"))
    message = str(raised.value)
    assert "notebook global 'lock'" in message and "--executor threads" in message
    assert "w" not in rt.workers()


def test_ipython_syntax_is_refused_outside_threads(fresh_runtime):
    handler = handlers.from_cell(
        "w", "!echo hi", {"__name__": "__main__"}, transform=lambda s: "get_ipython().system('x')"
    )
    with pytest.raises(NBWorkersError, match="IPython syntax"):
        api.runtime().define("w", handler, policy=Policy(executor="processes"))


def test_dask_without_a_cluster_says_how_to_give_one(fresh_runtime):
    with pytest.raises(NBWorkersError, match=r"nw.use_dask\(client\)"):
        api.runtime().define("w", cell("1"), policy=Policy(executor="dask"))


def test_a_bad_executor_is_refused():
    with pytest.raises(ValueError, match="executor must be one of threads, processes, dask"):
        Policy(executor="gpu")
    with pytest.raises(TypeError, match=r"distributed\.Client"):
        api.use_dask("tcp://127.0.0.1:8786")


def test_other_nbworkers_functions_say_they_need_the_kernel(fresh_runtime):
    rt = api.runtime()
    rt.define(
        "w",
        cell(
            "import nbworkers as nw\ntry:\n    answer = nw.counts('w')\n"
            "except Exception as exc:\n    answer = str(exc)\nanswer"
        ),
        policy=Policy(executor="processes"),
    )
    api.emit(None, "w")
    assert rt.wait("w", 30)
    assert "emit() reaches the notebook's queues but nothing else" in rt.traces("w")[0].result


def test_a_cron_runs_in_a_process(fresh_runtime):
    from nbworkers import schedule

    rt = api.runtime()
    rt.define_cron(
        "c",
        cell("import os\nos.getpid()", name="c", kind="cron"),
        schedule.parse("hourly"),
        policy=Policy(executor="processes"),
    )
    assert rt.wait("c", 30)
    trace = rt.traces("c")[0]
    assert trace.ok and trace.result != os.getpid()


# ----- in a real kernel, the way a notebook uses it ---------------------------------------------

NOTEBOOK_SETUP = """
import os
class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y
def norm(p):
    return (p.x ** 2 + p.y ** 2) ** 0.5
scale = 2
"""


def test_a_processes_worker_in_a_notebook(kernel):
    # Given a notebook class, function and global, and a worker cell that uses them
    kernel.ok(NOTEBOOK_SETUP)
    kernel.ok(
        "%%worker crunch --executor processes --concurrency 2\n"
        "print('crunching', event.x)\n"
        "{'norm': norm(event) * scale, 'pid': os.getpid()}\n"
    )
    # When notebook objects are emitted to it
    kernel.ok("for i in range(1, 5):\n    emit(Point(3 * i, 4 * i), 'crunch')")
    kernel.ok("assert nw.wait('crunch', 60)")
    # Then each run's result and output are in its trace, made in other processes
    runs = kernel.eval(
        "sorted((t.input.x, t.result['norm'], t.result['pid'] != os.getpid(), t.stdout)"
        " for t in nw.traces('crunch'))"
    )
    assert runs == [(3 * i, 10.0 * i, True, f"crunching {3 * i}\n") for i in range(1, 5)]
    assert kernel.eval("nw.counts('crunch')['done']") == 4
    # And a changed global reaches the next run, as with threads
    kernel.ok("scale = 3\nemit(Point(3, 4), 'crunch')\nassert nw.wait('crunch', 60)")
    assert kernel.eval("nw.traces('crunch')[0].result['norm']") == 15.0
    # And the panel says where it runs
    kernel.ok("from nbworkers.widgets.state import facts")
    assert "runs in processes" in kernel.eval("facts(nw.api.runtime().snapshot('crunch'))")


SLOW_PID = (
    "%%worker w --executor processes --concurrency 2\nimport os, time\ntime.sleep(1)\nos.getpid()"
)


def pids_of_two_runs(kernel) -> int:
    """How many processes two overlapping runs of ``w`` used."""
    kernel.ok("nw.emit_many([0, 1], 'w')\nassert nw.wait('w', 60)", timeout=90)
    return kernel.eval("len({t.result for t in nw.traces('w')[:2]})")


def test_config_max_processes_while_running_sizes_the_pool(kernel):
    # Given a running runtime
    kernel.ok("%%worker other\nevent")
    # When the pool is limited to one process, then a worker runs two at a time in it
    kernel.ok("%config NBWorkers.max_processes = 1")
    kernel.ok(SLOW_PID)
    # Then its two runs take turns in the one process
    assert pids_of_two_runs(kernel) == 1
    # When two are allowed, they run side by side
    kernel.ok("%config NBWorkers.max_processes = 2")
    assert pids_of_two_runs(kernel) == 2


def test_config_max_processes_lowered_while_processes_run_limits_them(fresh_runtime):
    from nbworkers import extension

    # Given a worker whose two runs went side by side in two processes
    extension._on_max_processes({"new": 2})  # what %config NBWorkers.max_processes = 2 calls
    rt = api.runtime()
    source = "import os, time\ntime.sleep(1)\nos.getpid()"
    rt.define("w", cell(source), 2, policy=Policy(executor="processes"))

    def pids_of_two_runs():
        api.emit_many([0, 1], "w")
        assert rt.wait("w", 60)
        return len({t.result for t in rt.traces("w")[:2]})

    assert pids_of_two_runs() == 2
    # When the pool is limited to one process (%config NBWorkers.max_processes = 1)
    extension._on_max_processes({"new": 1})
    # Then two runs take turns in one process
    assert pids_of_two_runs() == 1


def test_executor_mistakes_in_a_notebook_are_refused_clearly(kernel):
    reply = kernel.run("%%worker w --executor gpu\n1")
    assert reply.ename == "UsageError" and "invalid choice: 'gpu'" in reply.evalue
    kernel.ok("import threading\nlock = threading.Lock()")
    reply = kernel.run("%%worker w --executor processes\nwith lock:\n    pass")
    assert reply.ename == "UsageError"
    assert "notebook global 'lock'" in reply.evalue and "--executor threads" in reply.evalue
    reply = kernel.run("%%worker w --executor processes\n!echo hi")
    assert reply.ename == "UsageError" and "IPython syntax" in reply.evalue
    assert kernel.eval("nw.workers()") == []


def test_the_interrupt_button_does_not_end_a_processes_run(kernel, tmp_path):
    # Given a processes run going (Jupyter's interrupt signals the kernel's whole process group)
    kernel.ok("%%worker w --executor processes\nimport time\ntime.sleep(event)\n'slept'")
    kernel.ok("emit(6, 'w')\nimport time\nwhile nw.counts('w')['running'] < 1: time.sleep(0.05)")
    # When the user presses the interrupt button while a cell waits (once it has started: an
    # interrupt between cells interrupts nothing; stop_on_error=False: ipykernel would abort
    # a cell sent just after the interrupted one's reply, before its abort ends)
    started = tmp_path / "started"
    msg_id = kernel.kc.execute(
        f"open({str(started)!r}, 'w').close()\nimport time\ntime.sleep(30)", stop_on_error=False
    )
    deadline = time.monotonic() + 30
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    kernel.km.interrupt_kernel()
    reply = kernel.kc.get_shell_msg(timeout=30)
    # Then the cell was interrupted while the run went on, and the run went on to its end
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert kernel.eval("nw.counts('w')['running']") == 1
    kernel.ok("assert nw.wait('w', 30)")
    assert kernel.eval("nw.counts('w')['done'], nw.counts('w')['failed']") == (1, 0)
    assert kernel.eval("nw.traces('w')[0].result") == "slept"


@pytest.mark.parametrize("busy", [False, True], ids=["idle pool", "a run going"])
def test_a_kernel_shutdown_with_pool_processes_closes_the_file_and_keeps_the_message(
    tmp_path, busy
):
    from nbworkers.store import DuckDBStore
    from tests.kernel import Kernel

    db = str(tmp_path / "q.duckdb")
    k = Kernel(str(tmp_path), env={"NBWORKERS_DB": db}, kernel_name="nbworkers")
    k.ok("%%worker w --executor processes\nimport time\ntime.sleep(event)")
    k.ok("emit(0, 'w')\nimport nbworkers as nw\nassert nw.wait('w', 60)")
    if busy:
        k.ok("emit(30, 'w')\nimport time\nwhile nw.counts('w')['running'] < 1: time.sleep(0.05)")
    # When Jupyter shuts the kernel down (SIGTERM to its process group if it is slow)
    k.shutdown()
    # Then nbworkers closed its file in time, and a run cut short stays queued, not dead
    assert not os.path.exists(db + ".wal")
    store = DuckDBStore(db)
    try:
        loaded = store.load()
    finally:
        store.close()
    assert [pickle.loads(m.data) for m in loaded.messages] == ([30] if busy else [])
    assert loaded.dead_groups == []


def test_unloading_ends_the_pool_processes(kernel):
    kernel.ok("%%worker w --executor processes --concurrency 2\nimport time\ntime.sleep(event)")
    kernel.ok("emit(0, 'w'); emit(30, 'w')")
    kernel.ok("import time\nwhile nw.counts('w')['running'] < 1: time.sleep(0.05)")
    kernel.ok("pids = nw.api.runtime().executors.pool.pids()\nassert len(pids) == 2, pids")
    kernel.ok("%unload_ext nbworkers")
    gone = kernel.eval("[not __import__('os').path.exists(f'/proc/{p}') for p in pids]", timeout=30)
    assert gone == [True, True]
    threads = kernel.eval(
        "[t.name for t in __import__('threading').enumerate() if t.name.startswith('nbworkers')]"
    )
    assert threads == []


def test_a_dask_worker_in_a_notebook_on_a_cluster_named_while_running(kernel):
    # Given a running runtime (a worker "sink" is defined)
    kernel.ok(NOTEBOOK_SETUP)
    kernel.ok("got = []\n@nw.worker('sink')\ndef sink(x):\n    got.append(x)")
    # and then a local Dask cluster named by %config NBWorkers.dask_address
    kernel.ok(
        "from distributed import LocalCluster\n"
        "cluster = LocalCluster(n_workers=1, threads_per_worker=2, processes=True,"
        " host='127.0.0.1', dashboard_address=None)\n"
        "get_ipython().run_line_magic('config', "
        "f'NBWorkers.dask_address = {cluster.scheduler_address!r}')",
        timeout=120,
    )
    # And a worker cell on it that fails its first attempt
    kernel.ok(
        "%%worker d --executor dask --retries 1 --backoff 0\n"
        "if message.attempt == 1:\n"
        "    raise RuntimeError('first attempt')\n"
        "print('on dask', event.x)\n"
        "emit(event.x, 'sink')\n"
        "(norm(event) * scale, os.getpid())\n"
    )
    # When a notebook object is emitted to it
    kernel.ok("emit(Point(6, 8), 'd')\nassert nw.wait(timeout=120)", timeout=150)
    # Then the retry ran on the cluster, and its emit reached the notebook
    traces = kernel.eval(
        "[(t.attempt, t.ok, t.stdout, t.result and t.result[0], t.result and"
        " t.result[1] != os.getpid()) for t in nw.traces('d')]"
    )
    assert traces == [(2, True, "on dask 6\n", 20.0, True), (1, False, "", None, None)]
    assert "RuntimeError: first attempt" in kernel.eval("nw.traces('d')[1].error")
    assert kernel.eval("got") == [6]
    # When the address is cleared while running, the next run says it has no cluster
    kernel.ok("%config NBWorkers.dask_address = ''")
    kernel.ok("emit(Point(3, 4), 'd')\nassert nw.wait('d', timeout=60)", timeout=90)
    assert "needs a cluster" in kernel.eval("nw.traces('d')[0].error")
    kernel.ok("nw.shutdown()\ncluster.close()", timeout=60)


# ----- found in review: races, lost wake-ups, output of runs cut short, the kernel dying -----


def test_a_run_timed_out_while_waiting_for_a_process_does_not_eat_the_wakeup(make_runtime):
    # Given a pool of one process, busy with a slow run of worker "slow"
    r = make_runtime(max_processes=1)
    r.define("slow", cell("import time\ntime.sleep(2)"), 1, policy=Policy(executor="processes"))
    # and a worker "quick" whose run waits for the process past its 0.5 s limit
    r.define(
        "quick", cell("1", name="quick"), 1, policy=Policy(timeout_s=0.5, executor="processes")
    )
    # and a worker "other" (no limit) whose run waits for the process too
    r.define("other", cell("'other ran'", name="other"), 1, policy=Policy(executor="processes"))
    r.emit(None, "slow")
    assert wait_until(lambda: r.counts("slow")["running"] == 1)
    r.emit(None, "quick")
    assert wait_until(lambda: r.counts("quick")["running"] == 1)
    r.emit(None, "other")
    assert wait_until(lambda: r.counts("other")["running"] == 1)
    # When "quick" times out while waiting and "slow" then gives the process back
    assert wait_until(lambda: r.counts("quick")["failed"] == 1, 10)
    assert r.wait("slow", 10)
    # Then "other" gets the idle process (the wakeup is not lost on the abandoned waiter)
    assert r.wait("other", 10), (r.counts("other"), r.executors.pool._idle)


def test_a_job_that_cannot_load_in_the_process_leaves_it_the_notebooks_folder(
    make_runtime, tmp_path, monkeypatch
):
    # Given one pool process, sent the notebook's folder only when it changes, and a notebook
    # StrEnum (a str, so a valid dedupe key) that the process cannot unpickle
    import enum
    import sys

    Kind = enum.StrEnum("Kind", {"A": "a"}, module="__main__")
    monkeypatch.setattr(sys.modules["__main__"], "Kind", Kind, raising=False)
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    r = make_runtime(max_processes=1)
    r.define("w", cell("import os\nos.getcwd()"), 1, policy=Policy(executor="processes"))
    monkeypatch.chdir(second)
    r.emit(None, "w")
    assert r.wait("w", 30) and r.traces("w")[0].result == str(second)
    # When a run whose key cannot load there comes after %cd, then a plain run
    monkeypatch.chdir(first)
    r.emit(None, "w", key=Kind.A)
    assert r.wait("w", 30)
    assert "could not be loaded on this side" in r.traces("w")[0].error
    r.emit(None, "w")
    assert r.wait("w", 30)
    # Then the plain run is in the folder of the moment (the process kept what it was sent
    # with the job it could not load), not in the one before
    assert r.traces("w")[0].result == str(first), r.traces("w")[0].error


def test_a_notebooks_default_socket_timeout_does_not_break_pool_processes(make_runtime):
    # Given a notebook that set a default socket timeout (for urllib, say) before the pool's
    # processes started
    import socket

    socket.setdefaulttimeout(0.2)
    try:
        r = make_runtime(max_processes=1)
        r.define(
            "w",
            cell("import time, os\ntime.sleep(event)\nos.getpid()"),
            1,
            policy=Policy(executor="processes"),
        )
        # When runs take longer than the timeout, and the process waits longer for the next
        r.emit(0.5, "w")
        assert r.wait("w", 30)
        time.sleep(0.5)
        r.emit(0.01, "w")
        assert r.wait("w", 30)
    finally:
        socket.setdefaulttimeout(None)
    # Then both ran, in the same process
    traces = r.traces("w")
    assert [t.error for t in traces] == [None, None]
    assert traces[0].result == traces[1].result


BOOM = (
    "class Boom:\n"
    "    def __reduce__(self):\n"
    "        return (int, ('not a number',))  # unpickling it raises ValueError\n"
)


def test_an_emit_whose_event_cannot_be_unpickled_in_the_kernel_fails_the_run_only(make_runtime):
    # Given a processes worker that emits an event which pickles in the child but whose
    # unpickling raises in the kernel
    r = make_runtime(max_processes=1)
    r.define(
        "w", cell(BOOM + "emit(Boom(), 'sink')\n'emitted'"), 1, policy=Policy(executor="processes")
    )
    r.emit(None, "w")
    r.define("w2", cell("'w2 ran'", name="w2"), 1, policy=Policy(executor="processes"))
    r.emit(None, "w2")
    assert r.wait("w", 10), r.counts("w")
    assert r.wait("w2", 10), r.counts("w2")
    # Then the run fails: the emit raised in the handler, saying why and that nothing was sent
    trace = r.traces("w")[0]
    assert not trace.ok and r.counts("w")["failed"] == 1
    last_line = trace.error.strip().splitlines()[-1]
    assert last_line.startswith("TypeError: emit: ValueError(")
    assert "not a number" in last_line and last_line.endswith("nothing was enqueued")
    assert r.counts("sink")["queued"] == 0
    # and its process is given back: the next worker's run took it and succeeded
    assert r.traces("w2")[0].ok and r.traces("w2")[0].result == "w2 ran"


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_a_timed_out_run_keeps_what_it_printed(make_runtime, executor):
    # Given a run that prints, then hangs past its limit
    r = make_runtime()
    source = "import sys, time\nprint('step 1 done', flush=True)\ntime.sleep(30)"
    # (A process run's limit counts loading its job: on a loaded machine that alone may take
    # over a second, and the run would time out before it printed.)
    limit = 1 if executor == "threads" else 3
    r.define("w", cell(source), 1, policy=Policy(timeout_s=limit, executor=executor))
    r.emit(None, "w")
    assert wait_until(lambda: r.counts("w")["failed"] == 1, 15)
    # Then its trace shows how far it got, whichever executor ran it (threads do)
    trace = r.traces("w")[0]
    assert trace.timed_out
    assert "step 1 done" in trace.stdout, repr(trace.stdout)


def test_a_crashed_process_run_keeps_what_it_printed(make_runtime):
    r = make_runtime()
    source = "import os\nprint('about to crash', flush=True)\nos._exit(3)"
    r.define("w", cell(source), 1, policy=Policy(executor="processes"))
    r.emit(None, "w")
    assert r.wait("w", 15)
    trace = r.traces("w")[0]
    assert "died (exit code 3)" in trace.error
    assert "about to crash" in trace.stdout, repr(trace.stdout)


def test_emit_from_a_thread_the_handler_starts_on_dask_fails_the_run_saying_why(
    fresh_runtime, dask_client
):
    # Given a Dask worker whose cell fans out with a thread pool of its own
    api.use_dask(dask_client)
    r = api.runtime()
    got = []
    r.define("sink", handlers.from_function("sink", got.append))
    source = (
        "from concurrent.futures import ThreadPoolExecutor\n"
        "with ThreadPoolExecutor(2) as pool:\n"
        "    ids = list(pool.map(lambda i: emit(i, 'sink'), range(3)))\n"
        "ids\n"
    )
    r.define("d", cell(source, name="d"), 1, policy=Policy(executor="dask"))
    api.emit(None, "d")
    try:
        assert r.wait("d", 60)
        # Then the emit says it cannot reach the notebook from there (the run fails), and
        # nothing is sent anywhere: not to the notebook, not to a database on the Dask worker
        trace = r.traces("d")[0]
        assert not trace.ok and r.counts("d")["failed"] == 1
        assert "cannot reach the notebook on Dask" in trace.error, trace.error
        assert "from the handler's own thread" in trace.error
        assert got == [] and r.counts("sink")["queued"] == 0
    finally:
        current._dask_client = None


def test_dask_emit_mistakes_reach_the_handler_as_on_threads(fresh_runtime, dask_client):
    # Given a Dask worker whose emit is wrong in a way only the kernel checks (a negative
    # delay) -- on threads and processes the handler gets the ValueError and the run fails
    api.use_dask(dask_client)
    r = api.runtime()
    r.define("sink", handlers.from_function("sink", lambda e: None))
    r.define(
        "d", cell("emit('x', 'sink', delay=-1)\n'ok'", name="d"), 1, policy=Policy(executor="dask")
    )
    api.emit(None, "d")
    try:
        assert r.wait("d", 60)
        trace = r.traces("d")[0]
        # Then the run is not recorded as a success with the emit silently dropped
        assert not trace.ok, (trace.result, trace.stdout)
    finally:
        current._dask_client = None


def test_a_dask_task_that_fails_on_the_cluster_fails_its_run_only(fresh_runtime, dask_client):
    # Given a cluster that gives up on a task at the first death of its Dask worker
    scheduler = dask_client.cluster.scheduler
    allowed = scheduler.allowed_failures
    scheduler.allowed_failures = 0
    api.use_dask(dask_client)
    r = api.runtime()
    source = "import os\nif event == 'die':\n    os._exit(1)\n'ran'"
    r.define("d", cell(source, name="d"), 1, policy=Policy(executor="dask"))
    try:
        # When a run kills the Dask worker running it (the task fails on the cluster)
        api.emit("die", "d")
        assert r.wait("d", 60), r.counts("d")
        # Then that run fails, saying what the cluster said
        trace = r.traces("d")[0]
        assert not trace.ok
        assert "the Dask cluster could not run it (KilledWorker" in trace.error, trace.error
        assert r.counts("d")["failed"] == 1
        # and the worker goes on with its next message
        api.emit("live", "d")
        assert r.wait("d", 60) and r.traces("d")[0].result == "ran", r.traces("d")[0].error
    finally:
        scheduler.allowed_failures = allowed
        current._dask_client = None


def test_a_process_killed_by_its_time_limit_is_never_put_back_for_reuse(make_runtime, monkeypatch):
    # Given a run that ends just as its time limit passes: the run thread has decided the
    # process is reusable (run.timed_out was still False) but not yet given it back
    from nbworkers.executors.processes import ProcessPool

    original = ProcessPool._give_back

    def slow_give_back(self, process, reusable):
        time.sleep(0.6)  # widens the window between reading run.timed_out and the pool lock
        return original(self, process, reusable)

    monkeypatch.setattr(ProcessPool, "_give_back", slow_give_back)
    r = make_runtime(max_processes=1)
    r.define("w", cell("'quick'"), 1, policy=Policy(timeout_s=0.4, executor="processes"))
    r.emit(None, "w")
    # When the timer abandons it (and kills its process) inside that window
    assert wait_until(lambda: r.counts("w")["failed"] == 1, 10)
    pool = r.executors.pool
    assert wait_until(lambda: not pool._busy, 10)  # the run thread has given it back
    # Then the killed process is not in the idle list, where the next run would get it
    with pool._lock:
        idle = list(pool._idle)
    assert all(p.popen.returncode is None and p.popen.poll() is None for p in idle), [
        p.popen.returncode for p in idle
    ]


def test_a_busy_pool_process_does_not_outlive_a_crashed_kernel(kernel):
    # Given a processes worker busy with a long run
    kernel.ok("%%worker w --executor processes --concurrency 1\nimport time\ntime.sleep(event)")
    kernel.ok("emit(120, 'w')\nimport time\nwhile nw.counts('w')['running'] < 1: time.sleep(0.05)")
    pids = kernel.eval("nw.api.runtime().executors.pool.pids()")
    assert len(pids) == 1
    # When the kernel dies (SIGKILL, as an out-of-memory kill does), before anything
    # restarts it (a restart kills the kernel's process group, which hides this)
    os.kill(kernel.km.provisioner.process.pid, 9)
    # Then its pool process does not go on running the handler for two minutes, orphaned
    try:
        assert wait_until(lambda: not alive(pids[0]), 10), f"pool process {pids[0]} left behind"
    finally:
        if alive(pids[0]):
            os.kill(pids[0], 9)


def test_a_reloaded_notebook_module_reaches_the_next_process_run(kernel, tmp_path):
    # Given a local module the notebook imports and a processes worker that calls it
    (tmp_path / "helper.py").write_text("def version():\n    return 1\n")
    kernel.ok("import importlib, helper")
    kernel.ok("%%worker w --executor processes --concurrency 1\nhelper.version()")
    kernel.ok("emit(None, 'w')\nassert nw.wait('w', 60)")
    assert kernel.eval("nw.traces('w')[0].result") == 1
    # When the module is edited and reloaded in the notebook (what %autoreload does)
    (tmp_path / "helper.py").write_text("def version():\n    return 2\n")
    kernel.ok("importlib.reload(helper)\nassert helper.version() == 2")
    kernel.ok("emit(None, 'w')\nassert nw.wait('w', 60)")
    # Then the next run uses the new code, as it would with threads
    assert kernel.eval("nw.traces('w')[0].result") == 2


def test_a_processes_run_follows_cd_and_the_import_path_in_the_same_process(kernel, tmp_path):
    # Given one pool process, which is sent the notebook's folder and import path only when
    # they change
    (tmp_path / "sub").mkdir()
    kernel.ok("%config NBWorkers.max_processes = 1")
    kernel.ok(
        "%%worker w --executor processes --concurrency 1\n"
        "import os, sys\n(os.getpid(), os.getcwd(), sys.path[-1])"
    )
    kernel.ok("emit(None, 'w')\nassert nw.wait('w', 60)")
    pid, folder, last = kernel.eval("nw.traces('w')[0].result")
    assert folder == str(tmp_path)
    # When the notebook changes folder with %cd, then adds to its import path
    kernel.ok("%cd sub")
    kernel.ok("emit(None, 'w')\nassert nw.wait('w', 60)")
    moved = kernel.eval("nw.traces('w')[0].result")
    kernel.ok("import sys\nsys.path.append('/nbw-extra')\nemit(None, 'w')\nassert nw.wait('w', 60)")
    extended = kernel.eval("nw.traces('w')[0].result")
    # Then each next run, in that same process, has them
    assert moved == (pid, str(tmp_path / "sub"), last)
    assert extended == (pid, str(tmp_path / "sub"), "/nbw-extra")
    # And back: a run after %cd - is in the first folder again
    kernel.ok("%cd -")
    kernel.ok("emit(None, 'w')\nassert nw.wait('w', 60)")
    assert kernel.eval("nw.traces('w')[0].result") == (pid, str(tmp_path), "/nbw-extra")


def test_a_slow_dask_connection_does_not_freeze_the_runtime(make_runtime):
    # Given a Dask address that accepts the connection but never answers (a scheduler that
    # hangs, or a wrong port), and a dask worker with a 1 s limit
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(5)
    address = f"tcp://127.0.0.1:{silent.getsockname()[1]}"
    r = make_runtime(dask_address=address)
    abandoning = threading.Event()
    real_abandon = r.executors["dask"].abandon

    def abandon(run):
        abandoning.set()
        return real_abandon(run)

    r.executors["dask"].abandon = abandon
    r.define("d", cell("1", name="d"), 1, policy=Policy(timeout_s=1, executor="dask"))
    r.emit(None, "d")  # its run connects, holding the Dask runner's lock
    # The limit passes: the timer calls abandon, holding the runtime lock
    assert abandoning.wait(10)
    # When a cell emits to another worker
    done = threading.Event()
    threading.Thread(target=lambda: (r.emit(None, "elsewhere"), done.set()), daemon=True).start()
    # Then the emit returns at once: the runtime is not frozen for the connect timeout
    try:
        assert done.wait(5), "emit blocked: the timer holds the runtime lock, waiting on Dask"
    finally:
        silent.close()


def test_a_changed_module_that_fails_to_import_is_tried_again_once_fixed(
    fresh_runtime, tmp_path, monkeypatch
):
    # Given a module of the user's, imported in the kernel, that a processes worker calls
    import importlib
    import sys

    path = tmp_path / "nbw_helper_mod.py"
    path.write_text("def version():\n    return 1\n")
    os.utime(path, (1_000_000, 1_000_000))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("nbw_helper_mod")
    monkeypatch.setitem(sys.modules, "nbw_helper_mod", module)
    rt = api.runtime()
    rt.define(
        "w",
        cell("nbw_helper_mod.version()", nbw_helper_mod=module),
        1,
        policy=Policy(executor="processes"),
    )
    api.emit(None, "w")
    assert rt.wait("w", 30) and rt.traces("w")[0].result == 1
    # When it is edited with a mistake, a run fails saying why
    path.write_text("def version(:\n")
    os.utime(path, (2_000_000, 2_000_000))
    api.emit(None, "w")
    assert rt.wait("w", 30)
    assert "could not be loaded" in rt.traces("w")[0].error
    assert "SyntaxError" in rt.traces("w")[0].error
    # Then, once fixed, the next run imports it again and uses it, even when the fix kept
    # the file's time (two saves within a file system's time resolution)
    path.write_text("def version():\n    return 3\n")
    os.utime(path, (2_000_000, 2_000_000))
    api.emit(None, "w")
    assert rt.wait("w", 30)
    assert rt.traces("w")[0].result == 3, rt.traces("w")[0].error


def test_restart_processes_runs_the_next_message_in_a_fresh_process(fresh_runtime):
    rt = api.runtime()
    rt.define("w", cell("import os\nos.getpid()"), 1, policy=Policy(executor="processes"))
    api.emit(None, "w")
    assert rt.wait("w", 30)
    first = rt.traces("w")[0].result
    api.emit(None, "w")
    assert rt.wait("w", 30)
    assert rt.traces("w")[0].result == first  # reused while nothing asks otherwise
    api.restart_processes()
    assert wait_until(lambda: not alive(first), 10)
    api.emit(None, "w")
    assert rt.wait("w", 30)
    assert rt.traces("w")[0].ok and rt.traces("w")[0].result != first


class _FakeExecutor:
    """A test double of the Executor protocol: runs the handler here, tells what it was asked."""

    name = "fake"
    remote = False

    def __init__(self, settings):
        self.settings = settings
        self.prepared = []
        self.abandoned = threading.Event()
        self.closed = False

    def prepare(self, handler, concurrency):
        self.prepared.append((handler.name, concurrency))

    def run(self, handler, event, run, on_emit):
        from nbworkers.executors import Outcome
        from nbworkers.trace import run_result

        if event == "hang":
            assert self.abandoned.wait(10)
            return None
        value = ("fake", handler.call(event, run.message))
        return Outcome(run_result(value, self.settings.result_max_bytes), None)

    def abandon(self, run):
        self.abandoned.set()

    def timeout_note(self):
        return "The fake let it go."

    def close(self):
        self.closed = True


def test_an_executor_registered_in_the_map_is_accepted_and_used(make_runtime, monkeypatch):
    from nbworkers import executors

    # Given an executor registered under a new name in EXECUTORS, and nowhere else
    monkeypatch.setitem(executors.EXECUTORS, "fake", _FakeExecutor)
    # When a worker is defined with it (Policy checks the name against the map)
    policy = Policy(executor="fake", timeout_s=0.5)
    r = make_runtime()
    r.define("w", handlers.from_function("w", lambda e: e * 2), 3, policy=policy)
    fake = r.executors["fake"]
    assert isinstance(fake, _FakeExecutor) and fake.prepared == [("w", 3)]
    # Then its runs go through it, and a run past its time limit is abandoned by it
    r.emit(21, "w")
    assert r.wait("w", 10)
    assert r.traces("w")[0].result == ("fake", 42)
    r.emit("hang", "w")
    assert wait_until(lambda: r.counts("w")["failed"] == 1, 10)
    assert fake.abandoned.is_set()
    assert "The fake let it go." in r.traces("w")[0].error
    r.stop()
    assert fake.closed
