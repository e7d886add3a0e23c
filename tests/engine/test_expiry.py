"""Expiry: emit(..., ttl=) and a worker's --ttl. A message still queued after its time to
live is not run: it becomes a dead letter with reason "expired", even in a paused worker or
for a name with no handler, and whether it waits ready, delayed, for a retry or parked."""

from __future__ import annotations

import math
import threading
import time

import pytest

from nbworkers.engine.policy import Policy
from nbworkers.errors import ArgumentTypeError, ArgumentValueError
from nbworkers.handlers import from_function
from tests.conftest import Clock, advance
from tests.waiting import wait_until


def define(rt, name, fn, concurrency=1, **policy):
    rt.define(name, from_function(name, fn), concurrency, policy=Policy(**policy))


def clocked(make_runtime):
    """A runtime whose clock the test moves (starting at the wall clock's now, as emit
    times are), and that clock."""
    clock = Clock(time.time())
    return make_runtime(clock=clock), clock


# ----- a message's own ttl ----------------------------------------------------------------------


def test_a_message_queued_past_its_ttl_becomes_an_expired_dead_letter(make_runtime):
    rt, clock = clocked(make_runtime)
    rt.pause("w")
    ran = []
    define(rt, "w", ran.append)
    kept = rt.emit("kept", "w", ttl=100)
    gone = rt.emit("gone", "w", ttl=10)
    advance(clock, 12)
    rt.run_timers(clock.now)
    (letter,) = rt.dead_letters("w")
    assert letter["id"] == gone and letter["reason"] == "expired"
    assert letter["error"].startswith("Expired: queued 1")  # 11.9 or 12.0 s: emit took time
    assert (
        "past its time to live of 10 s (its own: emit(..., ttl=)); it never ran"
        in (letter["error"])
    )
    assert [m["id"] for m in rt.messages("w")] == [kept]
    counts = rt.counts("w")
    assert (counts["queued"], counts["dead"], counts["failed"], counts["expired"]) == (1, 1, 0, 1)
    # Then resuming runs only what did not expire
    rt.resume("w")
    assert rt.wait("w", 10) and ran == ["kept"]
    assert rt.traces("w")[0].input == "kept" and len(rt.traces("w")) == 1  # no trace: no run


def test_expiry_happens_on_its_own_in_a_paused_worker_and_an_unhandled_name(make_runtime):
    rt = make_runtime()
    rt.pause("w")
    define(rt, "w", print)
    rt.emit("a", "w", ttl=0.2)
    rt.emit("b", "nobody-yet", ttl=0.2)
    # The timer thread dead-letters them, with nothing taking them
    assert wait_until(lambda: rt.counts("w")["dead"] == 1 and rt.counts("nobody-yet")["dead"], 10)
    assert rt.counts("w")["queued"] == 0 and rt.unhandled() == {}
    assert rt.dead_letters("nobody-yet")[0]["reason"] == "expired"
    assert rt.wait("nobody-yet", 5)


def test_a_message_expires_while_delayed_and_never_runs(make_runtime):
    rt, clock = clocked(make_runtime)
    ran = []
    define(rt, "w", ran.append, ttl_s=5)
    rt.emit("later", "w", delay=60)  # its worker's ttl ends long before it is due
    assert rt.counts("w")["queued"] == 1
    advance(clock, 6)
    rt.run_timers(clock.now)
    assert rt.counts("w")["queued"] == 0 and rt.snapshot("w").delayed == 0
    assert rt.messages("w") == [] and rt.dead_letters("w")[0]["reason"] == "expired"
    advance(clock, 60)
    rt.run_timers(clock.now)
    assert rt.wait("w", 5) and ran == []


def test_a_ttl_that_would_end_before_the_message_is_due_is_refused(make_runtime):
    rt = make_runtime()
    with pytest.raises(ArgumentValueError, match="would end before it is due"):
        rt.emit("x", "w", delay=60, ttl=30)
    assert rt.counts("w")["queued"] == 0


@pytest.mark.parametrize(
    "ttl, error, says",
    [(t, ArgumentValueError, "ttl must be seconds above 0") for t in (0, -1, math.inf, math.nan)]
    + [(11 * 365 * 86400, ArgumentValueError, "ttl must be seconds above 0")]
    + [(t, ArgumentTypeError, "ttl must be a number of seconds") for t in (True, "5", [1])],
)
def test_a_bad_ttl_is_refused_and_nothing_is_enqueued(make_runtime, ttl, error, says):
    rt = make_runtime()
    with pytest.raises(error, match=says):
        rt.emit("x", "w", ttl=ttl)
    with pytest.raises(error, match=says):
        rt.emit_many(["x"], "w", ttl=ttl)
    assert rt.counts("w")["queued"] == 0


@pytest.mark.parametrize("ttl", [0, -2.5, math.inf, False, "10"])
def test_a_bad_worker_ttl_is_refused(ttl):
    with pytest.raises(ArgumentValueError, match="ttl must be a number of seconds above 0"):
        Policy(ttl_s=ttl)


# ----- the worker's ttl -------------------------------------------------------------------------


def test_the_worker_ttl_applies_from_emit_and_a_message_own_ttl_wins(make_runtime):
    rt, clock = clocked(make_runtime)
    rt.pause("w")
    define(rt, "w", print, ttl_s=10)
    plain = rt.emit_many(["a", "b"], "w")
    longer = rt.emit("own", "w", ttl=100)
    expires = {m["id"]: m["expires_at"].timestamp() for m in rt.messages("w")}
    assert expires[longer] - expires[plain[0]] == pytest.approx(90, abs=1)
    advance(clock, 11)
    rt.run_timers(clock.now)
    assert [d["id"] for d in rt.dead_letters("w")] == plain
    assert "(its worker's --ttl)" in rt.dead_letters("w")[0]["error"]
    assert [m["id"] for m in rt.messages("w")] == [longer]


def test_a_ttl_given_to_a_worker_applies_to_messages_already_queued(make_runtime):
    rt, clock = clocked(make_runtime)
    rt.pause("w")
    old = rt.emit("queued before the worker had a ttl", "w")
    define(rt, "w", print, ttl_s=5)
    advance(clock, 6)
    rt.run_timers(clock.now)
    assert [d["id"] for d in rt.dead_letters("w")] == [old]
    # And removing the ttl stops what is queued from expiring
    clock.now = time.time()  # (emit times are the wall clock's)
    kept = rt.emit("x", "w")
    define(rt, "w", print)
    advance(clock, 60)
    rt.run_timers(clock.now)
    assert [m["id"] for m in rt.messages("w")] == [kept]


def test_a_message_is_checked_when_it_is_taken(make_runtime):
    rt, clock = clocked(make_runtime)
    gate = threading.Event()
    ran = []

    def handler(event):
        ran.append(event)
        gate.wait(10)

    define(rt, "w", handler, ttl_s=5)
    rt.emit("first", "w")
    assert wait_until(lambda: ran == ["first"])
    rt.emit("second", "w")
    advance(clock, 6)  # no timer pass: the run thread finds it expired as it takes it
    gate.set()
    assert wait_until(lambda: rt.counts("w")["dead"] == 1)
    assert rt.wait("w", 10) and ran == ["first"]
    assert rt.dead_letters("w")[0]["reason"] == "expired"


def test_a_running_message_is_not_expired_but_its_retry_is(make_runtime):
    rt, clock = clocked(make_runtime)
    attempts = []

    def handler(event, message):
        attempts.append(message.attempt)
        advance(clock, 6)  # the run outlives the ttl
        raise ValueError("flaky")

    define(rt, "w", handler, retries=2, backoff_s=30, ttl_s=5)
    rt.emit("x", "w")
    assert wait_until(lambda: rt.counts("w")["retried"] == 1)
    rt.run_timers(clock.now)  # (if the timer thread has not already: its ttl ended)
    (letter,) = rt.dead_letters("w")
    assert letter["reason"] == "expired" and letter["attempt"] == 2
    assert "its attempt 2 never started (the ones before it failed)" in letter["error"]
    counts = rt.counts("w")
    assert (counts["failed"], counts["dead"], counts["queued"]) == (0, 1, 0)
    assert attempts == [1]


def test_expiry_frees_the_dedupe_key(make_runtime):
    rt, clock = clocked(make_runtime)
    rt.pause("w")
    first = rt.emit("x", "w", key="k", ttl=5)
    assert rt.emit("y", "w", key="k") == first
    advance(clock, 6)
    rt.run_timers(clock.now)
    assert rt.emit("z", "w", key="k") != first


# ----- requeue, counts and a restart ------------------------------------------------------------


def test_requeue_of_an_expired_letter_gives_it_a_fresh_ttl(make_runtime):
    rt, clock = clocked(make_runtime)
    rt.pause("w")
    rt.emit("x", "w", ttl=10, priority=3)
    advance(clock, 11)
    rt.run_timers(clock.now)
    assert rt.counts("w")["expired"] == 1
    clock.now = time.time()  # (emit times, and so a requeue's, are the wall clock's)
    (new,) = rt.requeue("w")
    (queued,) = rt.messages("w")
    assert queued["id"] == new and queued["priority"] == 3
    assert queued["expires_at"].timestamp() == pytest.approx(time.time() + 10, abs=5)
    assert "expired" not in rt.counts("w")  # no expired dead letter kept any more
    rt.discard("w")


def test_expiries_and_expired_letters_survive_a_restart(make_runtime):
    rt = make_runtime()
    rt.pause("w")
    soon = rt.emit("soon", "w", ttl=5)
    later = rt.emit("later", "w", ttl=3600)
    rt.flush()
    rt.stop()
    # Given a kernel that comes back after the first ttl ended
    clock = Clock(time.time() + 6)
    rt2 = make_runtime(clock=clock)
    rt2.run_timers(clock.now)
    assert [d["id"] for d in rt2.dead_letters("w")] == [soon]
    assert [m["id"] for m in rt2.messages("w")] == [later]
    rt2.flush()
    rt2.stop()
    # Then a third one still knows the dead letter expired
    rt3 = make_runtime()
    (letter,) = rt3.dead_letters("w")
    assert letter["reason"] == "expired" and rt3.counts("w")["expired"] == 1


def test_a_draining_ttl_worker_keeps_entries_for_what_waits_not_what_ran(make_runtime):
    rt = make_runtime()
    done = []
    define(rt, "w", done.append, ttl_s=3600)
    for _ in range(5):
        rt.emit_many(list(range(200)), "w")
        assert rt.wait("w", 10)
    w = rt.registry.workers["w"]
    # The heap of a ttl worker that drains keeps about what waits, not what ran
    assert len(w.aging) <= 2 * 200 + 64 and len(done) == 1000


def test_the_panel_shows_the_ttl_and_the_expired_count(make_runtime):
    from nbworkers.widgets import state

    rt, clock = clocked(make_runtime)
    rt.pause("w")
    define(rt, "w", print, ttl_s=5)
    header = state.header(rt.snapshot("w"))
    assert "ttl 5 s" in header["facts"] and "expired" not in header["counts"]
    rt.emit("x", "w")
    advance(clock, 6)
    rt.run_timers(clock.now)
    counts = state.header(rt.snapshot("w"))["counts"]
    assert (counts["dead"], counts["expired"]) == (1, 1)
