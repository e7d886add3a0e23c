"""Flow control's parts together: an expired message and a batch's messages end for
nw.result and fan-in like any other; priorities order a batch."""

from __future__ import annotations

import time

import pytest

from nbworkers.engine.policy import Policy
from nbworkers.errors import MessageFailed
from nbworkers.handlers import from_function
from tests.conftest import Clock, advance
from tests.waiting import wait_until


def define(rt, name, fn, **policy):
    concurrency = policy.pop("concurrency", None)
    rt.define(name, from_function(name, fn), concurrency, policy=Policy(**policy))


def test_an_expired_member_of_a_fan_in_counts_as_failed_and_its_result_raises(make_runtime):
    clock = Clock(time.time())
    rt = make_runtime(clock=clock)
    got = []
    define(rt, "tally", got.append)
    define(rt, "w", lambda e: e * 10)
    rt.pause("w")
    ids = rt.emit_many([1, 2], "w", ttl=5, then="tally")
    late = rt.emit(3, "w")  # no ttl: it runs
    advance(clock, 6)
    rt.run_timers(clock.now)
    rt.resume("w")
    assert rt.wait(None, 10)
    wait_until(lambda: got, 10)
    [event] = got
    assert event["ids"] == ids and event["results"] == [None, None]
    assert all(e.startswith("Expired:") for e in event["errors"])
    with pytest.raises(MessageFailed, match="Expired"):
        rt.result(ids[0], timeout=5)
    assert rt.result(late, timeout=5) == 30


def test_each_message_of_a_batch_has_the_batch_s_result(make_runtime):
    rt = make_runtime()
    define(rt, "w", lambda events: sum(events), batch=10, batch_wait_s=0)
    rt.pause("w")
    ids = rt.emit_many([1, 2, 3], "w")
    rt.resume("w")
    assert rt.wait("w", 10)
    assert [rt.result(i, timeout=5) for i in ids] == [6, 6, 6]


def test_a_failed_batch_s_messages_raise_its_error_and_a_fan_in_hears_of_each(make_runtime):
    rt = make_runtime()
    got = []
    define(rt, "tally", got.append)

    def handler(events):
        raise KeyError("text")

    define(rt, "w", handler, batch=10, batch_wait_s=0)
    rt.pause("w")
    ids = rt.emit_many(["a", "b"], "w", then="tally")
    rt.resume("w")
    assert rt.wait(None, 10)
    wait_until(lambda: got, 10)
    [event] = got
    assert event["results"] == [None, None]
    assert all("KeyError: 'text'" in e for e in event["errors"])
    for i in ids:
        with pytest.raises(MessageFailed, match="KeyError"):
            rt.result(i, timeout=5)


def test_a_batch_takes_the_highest_priorities_first(make_runtime):
    rt = make_runtime()
    batches = []
    define(rt, "w", batches.append, batch=2, batch_wait_s=0, concurrency=1)
    rt.pause("w")
    for event, priority in [("low", 0), ("high", 5), ("mid", 1), ("top", 9)]:
        rt.emit(event, "w", priority=priority)
    rt.resume("w")
    assert rt.wait("w", 10)
    assert batches == [["top", "high"], ["mid", "low"]]


def test_stopping_a_batch_member_stops_the_batch_and_each_is_a_stopped_dead_letter(make_runtime):
    import threading

    rt = make_runtime()
    started = threading.Event()

    def handler(events):
        started.set()
        while True:
            pass

    define(rt, "w", handler, batch=3, batch_wait_s=0)
    rt.pause("w")
    ids = rt.emit_many(["a", "b", "c"], "w")
    rt.resume("w")
    assert started.wait(10)
    assert rt.stop_run(ids[1], retry=False)  # not the batch's first message
    assert rt.wait("w", 10)
    letters = rt.dead_letters("w")
    assert sorted(d["id"] for d in letters) == sorted(ids)
    assert {d["reason"] for d in letters} == {"stopped"}
