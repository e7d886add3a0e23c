"""Queue control: looking at queued messages, cancel, purge, dedupe keys, delays, the storm
guard and concurrency changes."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from nbworkers.handlers import from_function
from tests.conftest import Clock
from tests.waiting import wait_until


def define(rt, name, fn, concurrency=None):
    rt.define(name, from_function(name, fn), concurrency)


# ----- introspection, cancel, purge ------------------------------------------------------------


def test_messages_lists_what_waits_with_age_attempt_and_preview(make_runtime):
    rt = make_runtime()
    rt.pause("w")
    ids = rt.emit_many([{"path": "a.png"}, {"path": "b.png"}], "w")
    listed = rt.messages("w")
    assert [m["id"] for m in listed] == ids
    assert listed[0]["preview"] == "{'path': 'a.png'}"
    assert listed[0]["attempt"] == 1 and listed[0]["due_at"] is None
    assert 0 <= listed[0]["age_s"] < 5
    assert [m["id"] for m in rt.messages("w", limit=1)] == ids[:1]
    assert rt.messages("nobody") == []
    counts = rt.counts("w")
    assert counts["queued"] == 2 and 0 <= counts["oldest_age_s"] < 5


def test_cancel_removes_one_waiting_message_for_good(make_runtime):
    rt = make_runtime()
    rt.pause("w")
    ids = rt.emit_many(["a", "b", "c"], "w")
    assert rt.cancel(ids[1]) is True
    assert rt.cancel(ids[1]) is False  # not waiting any more
    with pytest.raises(ValueError, match="not an nbworkers id"):
        rt.cancel("12")
    assert [m["id"] for m in rt.messages("w")] == [ids[0], ids[2]]
    rt.flush()
    rt.stop()
    # Given a restart: the cancelled message stays gone
    rt2 = make_runtime()
    seen = []
    define(rt2, "w", seen.append)
    rt2.resume("w")
    assert rt2.wait("w", 5) and seen == ["a", "c"]


def test_purge_removes_every_waiting_message_but_not_a_running_one(make_runtime):
    rt = make_runtime()
    gate = threading.Event()
    started = threading.Event()
    seen = []
    define(rt, "w", lambda e: (started.set(), gate.wait(10), seen.append(e)), concurrency=1)
    rt.emit("first", "w")
    assert started.wait(5)
    rt.emit_many(range(100), "w")
    rt.emit("later", "w", delay=600)
    assert rt.purge("w") == 101
    assert rt.counts("w")["queued"] == 0 and rt.counts("w")["running"] == 1
    gate.set()
    assert rt.wait("w", 5) and seen == ["first"]
    rt.flush()
    assert rt.store.load().messages == []


# ----- dedupe ----------------------------------------------------------------------------------


def test_a_key_already_queued_or_running_enqueues_nothing(make_runtime):
    rt = make_runtime()
    gate = threading.Event()
    started = threading.Event()
    seen = []
    define(rt, "w", lambda e: (started.set(), gate.wait(10), seen.append(e)), concurrency=1)
    first = rt.emit("v1", "w", key="user-7")
    assert started.wait(5)  # running now
    assert rt.emit("v2", "w", key="user-7") == first
    other = rt.emit("x", "w", key="user-8")
    assert rt.emit("y", "w", key="user-8") == other  # queued
    gate.set()
    assert rt.wait("w", 5) and seen == ["v1", "x"]
    # Once done, the key is free again
    again = rt.emit("v3", "w", key="user-7")
    assert again != first and rt.wait("w", 5) and seen[-1] == "v3"
    with pytest.raises(TypeError, match="key must be a string"):
        rt.emit("z", "w", key=7)


def test_keys_survive_a_restart(make_runtime):
    rt = make_runtime()
    rt.pause("w")
    first = rt.emit("a", "w", key="k")
    rt.stop()
    rt2 = make_runtime()
    assert rt2.emit("b", "w", key="k") == first
    assert rt2.counts("w")["queued"] == 1


# ----- delays ----------------------------------------------------------------------------------


def test_a_delayed_message_waits_counted_as_queued_and_runs_when_due(make_runtime):
    clock = Clock(2_000_000.0)
    rt = make_runtime(clock=clock)
    seen = []
    define(rt, "w", seen.append)
    rt.emit("later", "w", delay=90)
    at = datetime.fromtimestamp(clock.now + 30, UTC)
    rt.emit("sooner", "w", at=at)
    rt.emit("now", "w")
    assert wait_until(lambda: seen == ["now"], 10)
    assert rt.wait("w", 0.3) is False  # the two delayed ones wait
    assert seen == ["now"] and rt.counts("w")["queued"] == 2
    listed = rt.messages("w")
    assert [m["preview"] for m in listed] == ["'sooner'", "'later'"]  # soonest first
    assert listed[0]["due_at"] == at
    # When 30 s pass, then 90
    assert rt.run_timers(clock.now + 29) == clock.now + 30
    clock.now += 30
    rt.run_timers()
    deadline = time.monotonic() + 5
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen == ["now", "sooner"]
    clock.now += 60
    assert rt.run_timers() is None
    assert rt.wait("w", 5) and seen == ["now", "sooner", "later"]


def test_a_naive_at_is_local_time_and_a_past_one_runs_at_once(make_runtime):
    rt = make_runtime(timezone="UTC")
    seen = []
    define(rt, "w", seen.append)
    rt.pause("w")
    rt.emit("x", "w", at=datetime(2100, 1, 1, 9, 30))
    assert rt.messages("w")[0]["due_at"] == datetime(2100, 1, 1, 9, 30, tzinfo=UTC)
    rt.purge("w")
    rt.resume("w")
    rt.emit("y", "w", at=datetime.now(UTC) - timedelta(hours=1))
    assert rt.wait("w", 5) and seen == ["y"]


def test_delayed_messages_survive_a_restart_and_come_due(make_runtime):
    rt = make_runtime()
    rt.emit("soon", "w", delay=0.3)
    rt.emit("far", "w", delay=3600)
    rt.stop()
    rt2 = make_runtime()
    seen = []
    define(rt2, "w", seen.append)
    deadline = time.monotonic() + 5
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen == ["soon"]
    assert [m["preview"] for m in rt2.messages("w")] == ["'far'"]


@pytest.mark.parametrize(
    ("kw", "error", "words"),
    [
        ({"delay": -1}, ValueError, "delay must be seconds"),
        ({"delay": "5"}, ValueError, "delay must be seconds"),
        ({"at": "tomorrow"}, TypeError, "at must be a datetime"),
        ({"delay": 5, "at": datetime(2100, 1, 1)}, ValueError, "not both"),
    ],
)
def test_bad_delays_are_refused_and_nothing_is_enqueued(make_runtime, kw, error, words):
    rt = make_runtime()
    with pytest.raises(error, match=words):
        rt.emit("x", "w", **kw)
    assert rt.counts("w")["queued"] == 0


# ----- storm guard -----------------------------------------------------------------------------


def test_a_worker_emitting_to_itself_in_a_loop_is_paused_with_the_reason_and_loses_nothing(
    make_runtime,
):
    # (When exactly it trips is pinned on the test clock by the next test.)
    rt = make_runtime(storm_rate=200, storm_seconds=2)

    def loop(event):
        rt.emit(event + 1, "loop")
        rt.emit(event + 1, "loop")

    define(rt, "loop", loop, concurrency=2)
    rt.emit(0, "loop")
    assert wait_until(lambda: rt.is_paused("loop"), 20)
    reason = rt.pause_reason("loop")
    assert "storm guard" in reason and "200" in reason
    # Nothing emitted is dropped, and the runtime still answers
    assert wait_until(lambda: rt.counts("loop")["running"] == 0, 5)
    counts = rt.counts("loop")
    assert counts["queued"] == counts["done"] + 1
    # Resuming clears the reason
    rt.purge("loop")
    rt.resume("loop")
    assert rt.pause_reason("loop") is None and not rt.is_paused("loop")


def test_the_storm_guard_trips_after_exactly_storm_seconds_whole_seconds(make_runtime):
    # Given a guard of 10 self-emits a second for 2 seconds, on a clock the test moves
    clock = Clock(1_000_000.0)
    rt = make_runtime(storm_rate=10, storm_seconds=2, clock=clock)

    def handler(event):
        if event == "go":
            rt.emit_many(["x"] * 11, "loop")  # over the rate, in the current second

    define(rt, "loop", handler, concurrency=1)
    for second in range(3):
        # When, in each whole second of the clock, one run emits 11 messages to itself
        clock.now = 1_000_000.0 + second + 0.5
        rt.emit("go", "loop")
        runs = 1 + 12 * second  # each "go" and the 11 it emitted
        assert wait_until(lambda n=runs: rt.counts("loop")["done"] >= n)
        assert wait_until(lambda: rt.counts("loop")["running"] == 0)
        # Then it runs on through the first two seconds over the rate, and is paused in the
        # third: after exactly storm_seconds whole seconds over it, not one more
        if second < 2:
            assert rt.wait("loop", 10) and not rt.is_paused("loop"), (second, rt.counts("loop"))
        else:
            assert rt.is_paused("loop"), rt.counts("loop")
            assert rt.counts("loop")["queued"] == 11  # nothing dropped
    assert "more than 10 messages a second for 2 s" in rt.pause_reason("loop")


def test_emits_from_other_workers_do_not_trip_the_rate_guard(make_runtime):
    rt = make_runtime(storm_rate=10, storm_seconds=1)
    define(rt, "fan", lambda e: rt.emit_many(range(50), "leaf"))
    define(rt, "leaf", lambda e: None)
    for i in range(20):
        rt.emit(i, "fan")
    assert rt.wait(None, 10)
    assert not rt.is_paused("leaf") and rt.counts("leaf")["done"] == 1000


def test_a_queue_past_its_limit_pauses_its_worker(make_runtime):
    rt = make_runtime(max_queued=100)
    gate = threading.Event()
    define(rt, "w", lambda e: gate.wait(10), concurrency=1)
    rt.emit_many(range(150), "w")
    assert rt.is_paused("w")
    assert "more than 100 messages queued" in rt.pause_reason("w")
    assert rt.counts("w")["queued"] + rt.counts("w")["running"] == 150
    gate.set()
    rt.resume("w")
    assert rt.wait("w", 10) and rt.counts("w")["done"] == 150


def test_a_manual_pause_has_a_reason_too_and_pause_reasons_survive_a_restart(make_runtime):
    rt = make_runtime(max_queued=1)
    define(rt, "w", lambda e: None)
    rt.pause("m")
    assert "by hand" in rt.pause_reason("m")
    rt.pause("w")
    rt.resume("w")
    rt.define("w", from_function("w", lambda e: time.sleep(1)), 1)
    rt.emit_many(range(5), "w")
    reason = rt.pause_reason("w")
    rt.stop()
    rt2 = make_runtime()
    assert rt2.pause_reason("w") == reason and "storm guard" in reason


def test_a_purge_or_a_pause_counts_as_unwritten_until_written(rt):
    rt.pause("w")
    rt.emit_many(range(3), "w")
    rt.flush()
    rt.purge("w")
    assert rt.has_unwritten
    rt.flush()
    assert not rt.has_unwritten and rt.store.load().messages == []


@pytest.mark.parametrize("delay", [float("inf"), float("nan"), 1e12])
def test_impossible_delays_are_refused(rt, delay):
    with pytest.raises(ValueError, match="ten years"):
        rt.emit(1, "w", delay=delay)


def test_a_delayed_message_that_came_due_has_no_due_time(rt):
    rt.pause("w")
    rt.emit(1, "w", delay=0.05)
    deadline = time.monotonic() + 5
    while rt.messages("w")[0]["due_at"] is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert rt.messages("w")[0]["due_at"] is None


def test_a_wait_on_a_paused_worker_with_messages_says_why_it_waits(make_runtime, logged):
    # A new user's nw.wait("w") on a worker paused with messages sat for its whole timeout,
    # with no word why
    rt = make_runtime()
    define(rt, "w", print)
    rt.pause("w")
    rt.emit(1, "w")
    assert rt.wait("w", 0.1) is False
    said = [r.getMessage() for r in logged.records]
    assert said == [
        "nw.wait('w'): 'w' is paused with 1 queued, which wait for nw.resume('w'); this waits "
        "for 0.1 s (then False) unless something resumes it"
    ], said
    # Resumed, it drains, and a wait on what has nothing queued says nothing
    rt.resume("w")
    assert rt.wait("w", 10)
    rt.pause("w")
    assert rt.wait("w", 1) and len(logged.records) == 1
