"""``wait`` is woken when a worker has nothing left to do, not at every run's end (which woke
the waiting thread once a message and slowed a drain by about a quarter), and still as soon
as the last run it waits for ends, whatever else waits elsewhere."""

from __future__ import annotations

import threading
import time

from nbworkers.handlers import from_function


def counting_wakes(rt) -> list[int]:
    """How many times ``wait`` was woken, counted from now."""
    changed = rt.registry.changed
    wakes = [0]
    notify_all = changed.notify_all

    def counted():
        wakes[0] += 1
        notify_all()

    changed.notify_all = counted
    return wakes


def test_a_drain_wakes_a_waiting_wait_a_handful_of_times_not_once_a_message(rt):
    # Given 2,000 messages queued for a paused worker, and a wait for it
    rt.define("w", from_function("w", lambda event: event + 1), 4)
    rt.pause("w")
    rt.emit_many(range(2000), "w")
    wakes = counting_wakes(rt)
    # When it drains while the wait waits
    rt.resume("w")
    assert rt.wait("w", 60)
    # Then the wait was woken a few times at most (once a message before)
    assert rt.counts("w")["done"] == 2000
    assert wakes[0] <= 10, f"woken {wakes[0]} times for 2,000 messages"


def _slow_worker(rt, name: str):
    going, release = threading.Event(), threading.Event()

    def handler(event):
        going.set()
        release.wait(20)

    rt.define(name, from_function(name, handler), 1)
    return going, release


def _returns_soon(call) -> float:
    t0 = time.monotonic()
    assert call()
    return time.monotonic() - t0


def test_a_wait_for_everything_ends_when_the_last_run_ends_beside_a_paused_queue(rt):
    # Given a worker running one message, with more queued, then paused
    going, release = _slow_worker(rt, "slow")
    rt.emit_many(["a", "b", "c"], "slow")
    assert going.wait(10)
    rt.pause("slow")
    # When its run ends while a wait for everything waits (a paused queue does not count)
    threading.Timer(0.3, release.set).start()
    # Then the wait returns as the run ends, not at its timeout
    assert _returns_soon(lambda: rt.wait(None, 20)) < 10
    assert rt.counts("slow")["queued"] == 2


def test_a_wait_for_one_worker_ends_when_its_run_ends_while_another_drains(rt):
    # Given a slow run on one worker and a long drain on another
    going, release = _slow_worker(rt, "slow")
    rt.define("busy", from_function("busy", lambda event: time.sleep(0.001)), 1)
    rt.emit_many(range(20_000), "busy")
    rt.emit("x", "slow")
    assert going.wait(10)
    # When the slow run ends while a wait for its worker waits
    threading.Timer(0.3, release.set).start()
    # Then that wait returns at once, though the other worker is still busy
    assert _returns_soon(lambda: rt.wait("slow", 20)) < 10
    assert rt.counts("busy")["queued"] > 0
    rt.pause("busy")


def test_a_wait_for_a_removed_workers_run_ends_when_the_run_ends(rt):
    going, release = _slow_worker(rt, "slow")
    rt.emit_many(["a", "b"], "slow")
    assert going.wait(10)
    rt.remove("slow")  # its run finishes; what waits stays, unhandled
    threading.Timer(0.3, release.set).start()
    assert _returns_soon(lambda: rt.wait(None, 20)) < 10
