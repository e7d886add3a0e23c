"""What a hostile review of flow control found, each as the user met it."""

from __future__ import annotations

import threading
import time

import pytest

from nbworkers.engine.policy import Policy
from nbworkers.errors import ArgumentValueError, MessageFailed, NBWorkersError
from nbworkers.handlers import from_function
from nbworkers.schedule import parse
from tests.conftest import Clock
from tests.waiting import wait_until


def define(rt, name, fn, **policy):
    concurrency = policy.pop("concurrency", None)
    rt.define(name, from_function(name, fn), concurrency, policy=Policy(**policy))


def test_a_second_stop_of_the_attempt_shown_does_not_stop_its_retry(rt):
    # Given a worker whose first attempt spins until stopped and whose retry succeeds
    second = threading.Event()

    def handler(event, message):
        if message.attempt == 1:
            while True:
                pass
        second.set()
        time.sleep(0.3)
        return "ok"

    define(rt, "w", handler, retries=1, backoff_s=0)
    mid = rt.emit("x", "w")
    assert wait_until(lambda: rt.counts("w")["running"] == 1, 10)
    # When Stop is clicked twice on attempt 1 (the second click after the retry started)
    assert rt.stop_run(mid, attempt=1)
    assert second.wait(10)
    assert not rt.stop_run(mid, attempt=1)
    # Then the retry runs to its end
    assert rt.wait("w", 10)
    assert rt.counts("w")["done"] == 1 and rt.dead_letters("w") == []


def test_wait_for_everything_waits_for_a_removed_worker_s_run(rt):
    going = threading.Event()
    release = threading.Event()

    def handler(event):
        going.set()
        release.wait(10)

    define(rt, "slow", handler)
    rt.emit("r", "slow")
    assert going.wait(10)
    rt.remove("slow")
    assert rt.wait(None, 0.2) is False  # a run still goes
    release.set()
    assert rt.wait(None, 10)


def test_a_ttl_equal_to_the_delay_is_refused(rt):
    with pytest.raises(ArgumentValueError, match="could never run"):
        rt.emit(1, "w", ttl=1, delay=1)
    assert rt.counts("w")["queued"] == 0


def test_what_expired_while_no_kernel_ran_is_dead_before_anyone_looks(make_runtime):
    rt = make_runtime()
    rt.pause("w")
    rt.emit("short", "w", ttl=5)
    rt.flush()
    rt.stop()
    rt2 = make_runtime(clock=Clock(time.time() + 6))
    counts = rt2.counts("w")  # at once: no timer pass yet
    assert counts["queued"] == 0 and counts["dead"] == 1
    assert rt2.messages("w") == []


def test_then_may_not_name_a_cron(rt):
    rt.define_cron("c", from_function("c", lambda: None, kind="cron"), parse("1h"), paused=True)
    with pytest.raises(ArgumentValueError, match="is a cron"):
        rt.emit_many([1, 2], "w", then="c")
    assert rt.counts("w")["queued"] == 0


def test_set_rate_on_a_cron_or_a_removed_worker_says_which(rt):
    rt.define_cron("c", from_function("c", lambda: None, kind="cron"), parse("1h"), paused=True)
    with pytest.raises(NBWorkersError, match="is a cron"):
        rt.set_rate("c", "1/s")
    define(rt, "w", lambda e: e)
    rt.remove("w")
    with pytest.raises(NBWorkersError, match=r"removed with nw\.remove"):
        rt.set_rate("w", "1/s")


def test_the_failure_of_a_stopped_or_cancelled_message_says_why_first(rt):
    def handler(event):
        while True:
            pass

    define(rt, "w", handler)
    mid = rt.emit("x", "w")
    assert wait_until(lambda: rt.counts("w")["running"] == 1, 10)
    assert rt.stop_run(mid, retry=False)
    with pytest.raises(MessageFailed, match=r"failed: Stopped: nw.stop\('m"):
        rt.result(mid, timeout=10)
    rt.pause("w")
    cancelled = rt.emit("y", "w")
    assert rt.cancel(cancelled)
    with pytest.raises(MessageFailed, match="failed: Cancelled") as caught:
        rt.result(cancelled, timeout=5)
    assert "dead_letters" not in str(caught.value)
