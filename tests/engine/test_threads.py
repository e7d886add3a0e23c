"""Run threads on demand: a worker with nothing to do holds no thread; threads start when
messages arrive, up to its concurrency, and end after an idle while."""

from __future__ import annotations

import threading

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
