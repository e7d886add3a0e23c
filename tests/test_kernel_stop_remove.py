"""``nw.stop`` and ``nw.remove`` the way a notebook user meets them, in a real kernel: a run
stopped on a thread (``message.stopping``, retries, a dead letter) and in a pool process; a
worker and a cron removed, with and without ``purge``. (Dask: tests/engine/test_stop.py, on
a LocalCluster, as the other Dask tests.)"""

from __future__ import annotations

from tests.kernel import wait_for

WAIT = "assert nw.wait(timeout=20)"


def test_a_thread_run_is_stopped_retried_or_dead_lettered(kernel):
    # Given a worker whose first attempt loops around time.sleep, checking message.stopping
    kernel.ok(
        "%%worker w --retries 1 --backoff 0\n"
        "import time\n"
        "try:\n"
        "    while message.attempt == 1:\n"
        "        time.sleep(0.01)\n"
        "finally:\n"
        "    print('stopping:', message.stopping)\n"
        "'attempt 2'"
    )
    kernel.ok("mid = emit('x', 'w')")
    wait_for(kernel, "nw.counts('w')['running'] == 1")
    # When it is stopped (retry=True by default)
    assert kernel.eval("nw.stop(mid)") is True
    kernel.ok(WAIT)
    # Then its first attempt failed as stopped, having seen message.stopping, and its
    # retry ran
    first, second = kernel.eval(
        "[(t.attempt, t.ok, (t.error or '')[:9], t.stdout) for t in nw.traces('w')][::-1]"
    )
    assert first == (1, False, "Stopped: ", "stopping: True\n")
    assert second == (2, True, "", "stopping: False\n")
    # When another is stopped with retry=False: a dead letter at once
    kernel.ok("mid2 = emit('y', 'w')")
    wait_for(kernel, "nw.counts('w')['running'] == 1")
    assert kernel.eval("nw.stop(mid2, retry=False)") is True
    kernel.ok(WAIT)
    assert kernel.eval("[d['id'] for d in nw.dead_letters('w')] == [mid2]")
    assert "retry=False" in kernel.eval("nw.dead_letters('w')[0]['error']")
    # And what is not running says so
    assert kernel.eval("nw.stop(mid)") is False
    kernel.ok("nw.pause('w')\nmid3 = emit('z', 'w')")
    reply = kernel.run("nw.stop(mid3)")
    assert reply.ename == "NBWorkersError" and "nw.cancel(" in reply.evalue


def test_a_process_run_is_stopped_by_killing_its_process(kernel, tmp_path):
    marker = tmp_path / "started"
    kernel.ok(
        "%%worker p --executor processes\n"
        "import os, pathlib, time\n"
        "if event == 'slow':\n"
        f"    pathlib.Path({str(marker)!r}).write_text(str(os.getpid()))\n"
        "    time.sleep(60)\n"
        "os.getpid()"
    )
    kernel.ok("mid = emit('slow', 'p')")
    wait_for(kernel, f"__import__('os').path.exists({str(marker)!r})", timeout=30)
    assert kernel.eval("nw.stop(mid)") is True
    # Stopped at once: a failed attempt (no retries: a dead letter), its process killed
    assert kernel.eval("nw.counts('p')['dead'], nw.counts('p')['running']") == (1, 0)
    error = kernel.eval("nw.traces('p')[0].error")
    assert error.startswith("Stopped: nw.stop(") and "process was killed" in error
    kernel.ok(f"emit('fast', 'p')\n{WAIT}")
    assert kernel.eval("nw.traces('p')[0].ok")
    assert kernel.eval(f"nw.traces('p')[0].result != int(open({str(marker)!r}).read())")


def test_a_removed_worker_leaves_its_messages_unhandled_until_its_cell_runs_again(kernel):
    cell = "%%worker w\nevent * 2"
    kernel.ok(cell)
    kernel.ok("from nbworkers.widgets import panels\np = panels('w')[0]")
    kernel.ok("nw.pause('w')\nemit(1, 'w')\nemit(2, 'w')")
    # When it is removed
    assert kernel.eval("nw.remove('w')") == 0
    # Then its panel says so, its messages are unhandled, and the file says removed
    wait_for(kernel, "p.view.header['badge'] == 'removed'")
    assert kernel.eval("nw.workers()") == []
    assert kernel.eval("nw.unhandled()") == {"w": 2}
    kind = "nw.sql(\"select kind from workers where worker = 'w'\").fetchall()"
    assert kernel.eval(kind) == [("removed",)]
    reply = kernel.run("nw.remove('w')")
    assert reply.ename == "NBWorkersError" and "it was removed" in reply.evalue
    # When its cell runs again, they run (the pause was kept: resume)
    kernel.ok(cell)
    kernel.ok(f"nw.resume('w')\n{WAIT}")
    assert kernel.eval("sorted(t.result for t in nw.traces('w'))") == [2, 4]
    assert kernel.eval(kind) == [("worker",)]


def test_a_removed_cron_has_no_next_run_and_purge_drops_its_queue(kernel):
    kernel.ok("emit(None, 'c')\nemit(None, 'c')")  # (before the cron: an emit to one is refused)
    kernel.ok("%%cron hourly c --paused\n'tick'")
    assert kernel.eval("nw.remove('c', purge=True)") == 2
    assert kernel.eval("nw.unhandled()") == {}
    reply = kernel.run("nw.next_run('c')")
    assert reply.ename == "NBWorkersError" and "no cron named 'c'" in reply.evalue
    assert kernel.eval(
        "nw.sql(\"select kind, queued from workers where worker = 'c'\").fetchall()"
    ) == [("removed", 0)]
