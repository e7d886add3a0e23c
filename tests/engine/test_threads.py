"""Run threads on demand: a worker with nothing to do holds no thread; threads start when
messages arrive, up to its concurrency, and end after an idle while."""

from __future__ import annotations

import threading
import time

from nbworkers.handlers import from_function
from tests.waiting import wait_until


def run_threads(prefix: str = "nbworkers-run-") -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith(prefix))


def gated(rt, concurrency: int):
    """Define worker "w" whose runs wait for ``release``; ``started`` lists their events."""
    release = threading.Event()
    started = []

    def handler(event):
        started.append(event)
        release.wait(10)

    rt.define("w", from_function("w", handler), concurrency=concurrency)
    return release, started


def test_defined_workers_with_nothing_to_do_hold_no_thread(make_runtime):
    # Given 500 workers defined with a concurrency of 4 (2,000 threads before)
    rt = make_runtime()
    for i in range(500):
        rt.define(f"w{i}", from_function(f"w{i}", lambda event: None), concurrency=4)
    # Then none holds a run thread while none has a message
    assert run_threads() == []
    # And a message to one of them starts one thread, which runs it
    rt.emit(1, "w7")
    assert rt.wait("w7", 5)
    assert rt.counts("w7")["done"] == 1
    assert run_threads() == ["nbworkers-run-w7-0"]


def test_threads_start_up_to_the_concurrency_and_end_after_an_idle_while(make_runtime):
    rt = make_runtime(idle_thread_s=0.2)
    release, started = gated(rt, concurrency=3)
    # When more messages arrive than its concurrency
    rt.emit_many(range(10), "w")
    # Then exactly that many threads start, each running one
    assert wait_until(lambda: len(started) == 3)
    assert run_threads() == [f"nbworkers-run-w-{i}" for i in range(3)]
    assert rt.counts("w")["running"] == 3
    release.set()
    assert rt.wait("w", 5) and sorted(started) == list(range(10))
    # And once they have had nothing to do for the idle while, they end
    assert wait_until(lambda: run_threads() == [])
    # And the next message starts a thread again
    rt.emit(10, "w")
    assert rt.wait("w", 5) and started[-1] == 10


def test_a_concurrency_raised_while_messages_wait_starts_threads_for_them(make_runtime):
    rt = make_runtime()
    release, started = gated(rt, concurrency=1)
    rt.emit_many(range(4), "w")
    assert wait_until(lambda: len(started) == 1)
    rt.set_concurrency("w", 3)
    assert wait_until(lambda: len(started) == 3)
    assert rt.counts("w")["running"] == 3
    release.set()
    assert rt.wait("w", 5)


def test_a_resumed_worker_starts_threads_for_its_queue(make_runtime):
    rt = make_runtime()
    rt.pause("w")
    seen = []
    rt.define("w", from_function("w", seen.append), concurrency=2)
    rt.emit_many(range(5), "w")
    assert run_threads() == []  # paused: nothing may run, so no thread waits
    rt.resume("w")
    assert rt.wait("w", 5) and sorted(seen) == list(range(5))


def test_five_hundred_workers_with_ten_messages_each_drain_and_their_threads_end(make_runtime):
    # Given 500 workers of concurrency 4, ten messages queued for each
    rt = make_runtime(idle_thread_s=0.5)
    seen: dict[int, list[int]] = {}
    lock = threading.Lock()

    def recorder(i):
        def handler(event):
            with lock:
                seen.setdefault(i, []).append(event)

        return handler

    for i in range(500):
        rt.define(f"w{i}", from_function(f"w{i}", recorder(i)), concurrency=4)
    for i in range(500):
        rt.emit_many(range(10), f"w{i}")
    # When they drain
    assert rt.wait(None, 120)
    # Then every message ran exactly once, counted once
    assert sorted(seen) == list(range(500))
    assert all(sorted(events) == list(range(10)) for events in seen.values())
    assert all(rt.counts(f"w{i}")["done"] == 10 for i in range(500))
    # And once idle, no run thread is left: only the engine's handful (the writer)
    assert wait_until(lambda: run_threads() == [], timeout=30)
    assert len(run_threads("nbworkers-")) <= 3, run_threads("nbworkers-")


def test_quick_runs_on_threads_stay_on_one_run_thread(make_runtime, monkeypatch):
    # Given a worker of concurrency 4 on the kernel's threads whose runs never prove slow (the
    # ramp's threshold made longer than the test: a loaded machine can hold a quick run back
    # for milliseconds, which would count as slow)
    monkeypatch.setattr("nbworkers.engine.ramp.RAMP_S", 60.0)
    rt = make_runtime()
    threads_seen = set()
    rt.define("w", from_function("w", lambda e: threads_seen.add(threading.current_thread().name)))
    rt.pause("w")
    rt.emit_many(range(2000), "w")
    # When it drains
    rt.resume("w")
    assert rt.wait("w", 30)
    # Then one run thread ran them all: four would hand the lock and the GIL to each other
    assert threads_seen == {"nbworkers-run-w-0"} and rt.counts("w")["done"] == 2000


def test_once_a_run_proves_slow_the_other_run_threads_start(make_runtime):
    # Given a worker of concurrency 4 whose runs wait (a fetch, a sleep)
    rt = make_runtime()
    release, started = gated(rt, concurrency=4)
    # When six messages arrive at once
    rt.emit_many(range(6), "w")
    # Then one run starts at once, and the ramp starts the others once it has gone on for a
    # while (ramp.RAMP_S): four go at once
    assert wait_until(lambda: len(started) == 4)
    assert run_threads("nbworkers-run-w-") == [f"nbworkers-run-w-{i}" for i in range(4)]
    assert rt.dispatch.ramp.started()
    release.set()
    assert rt.wait("w", 5) and sorted(started) == list(range(6))


def test_runs_in_pool_processes_start_their_threads_at_once(make_runtime):
    # Given a worker on pool processes (its run threads wait on another process: no GIL held)
    from nbworkers.engine.policy import Policy
    from nbworkers.handlers import from_cell

    rt = make_runtime()
    handler = from_cell("p", "import time\ntime.sleep(0.3)", {"__name__": "__main__"})
    rt.define("p", handler, concurrency=3, policy=Policy(executor="processes"))
    # When three messages arrive
    rt.emit_many(range(3), "p")
    # Then three run threads start together, with no ramp
    assert run_threads("nbworkers-run-p-") == [f"nbworkers-run-p-{i}" for i in range(3)]
    assert not rt.dispatch.ramp.started()
    assert rt.wait("p", 60) and rt.counts("p")["done"] == 3


def test_runs_that_wait_a_millisecond_go_side_by_side(make_runtime):
    # Given a worker of concurrency 4 whose runs each wait about a millisecond (a short fetch):
    # never slow enough for the ramp's RAMP_S, but off the CPU most of their time
    rt = make_runtime()
    threads_seen = set()

    def handler(event):
        threads_seen.add(threading.current_thread().name)
        time.sleep(0.001)

    rt.define("w", from_function("w", handler), concurrency=4)
    rt.pause("w")
    rt.emit_many(range(300), "w")
    # When it drains
    rt.resume("w")
    assert rt.wait("w", 30)
    # Then its runs were seen to wait, and its four threads took them side by side (a CI run
    # once found 20,000 such runs on one thread, eight times slower than before the ramp)
    assert threads_seen == {f"nbworkers-run-w-{i}" for i in range(4)}
    assert rt.counts("w")["done"] == 300
