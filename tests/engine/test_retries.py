"""Failure handling: retries with backoff, dead letters, time limits, alerts."""

from __future__ import annotations

import random
import threading
import time

import pytest

from nbworkers.engine.policy import MAX_BACKOFF_S, Policy
from nbworkers.errors import NBWorkersError
from nbworkers.handlers import from_function
from nbworkers.store import MemoryStore
from tests.conftest import Clock
from tests.waiting import wait_until


def define(rt, name, fn, **policy):
    concurrency = policy.pop("concurrency", None)
    rt.define(name, from_function(name, fn), concurrency, policy=Policy(**policy))


def failing_on(bad):
    """A handler failing on ``bad`` events, recording (event, attempt) of every run."""
    runs = []

    def handler(event, message):
        runs.append((event, message.attempt))
        if event in bad:
            raise ValueError(f"bad event {event}")
        return event

    return handler, runs


# ----- backoff ---------------------------------------------------------------------------------


def test_backoff_doubles_with_jitter_between_half_and_all_and_is_capped():
    policy = Policy(retries=5, backoff_s=2.0)
    low, high = random.Random(), random.Random()
    low.uniform = lambda a, b: a
    high.uniform = lambda a, b: b
    assert [policy.retry_delay_s(n, low) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]
    assert [policy.retry_delay_s(n, high) for n in (1, 2, 3)] == [2.0, 4.0, 8.0]
    assert policy.retry_delay_s(40, high) == MAX_BACKOFF_S
    spread = {round(policy.retry_delay_s(3, random.Random(seed)), 6) for seed in range(20)}
    assert len(spread) > 10 and all(4.0 <= d <= 8.0 for d in spread)


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"retries": -1}, "retries must be a whole number"),
        ({"retries": 1.5}, "retries must be a whole number"),
        ({"backoff_s": -2}, "backoff must be a number of seconds"),
        ({"backoff_s": float("nan")}, "backoff must be a number of seconds"),
        ({"timeout_s": 0}, "timeout must be a number of seconds above 0"),
        ({"timeout_s": "5"}, "timeout must be a number of seconds above 0"),
    ],
)
def test_bad_policies_say_what_is_wrong(kw, words):
    with pytest.raises(ValueError, match=words):
        Policy(**kw)


# ----- retries and dead letters ----------------------------------------------------------------


def test_a_failing_message_is_tried_retries_plus_one_times_then_dead_lettered(make_runtime):
    rt = make_runtime()
    handler, runs = failing_on({"bad"})
    define(rt, "w", handler, retries=2, backoff_s=0.01)
    rt.emit("ok", "w")
    bad_id = rt.emit("bad", "w")
    assert rt.wait("w", 10)
    assert sorted(runs) == [("bad", 1), ("bad", 2), ("bad", 3), ("ok", 1)]
    # Every attempt left a trace, numbered
    bad_traces = [t for t in rt.traces("w") if t.message_id == bad_id]
    assert [t.attempt for t in bad_traces] == [3, 2, 1]
    assert not any(t.ok for t in bad_traces)
    counts = rt.counts("w")
    assert (counts["done"], counts["failed"], counts["dead"], counts["retried"]) == (1, 1, 1, 2)
    [dead] = rt.dead_letters("w")
    assert dead["id"] == bad_id and dead["attempt"] == 3 and dead["preview"] == "'bad'"
    assert dead["error"].strip().endswith("ValueError: bad event bad")


def test_a_retry_with_no_backoff_runs_before_newer_messages(make_runtime):
    # Given a worker, one run at a time, whose message "a" fails its first attempt and is
    # retried with no backoff
    rt = make_runtime()
    runs = []

    def handler(event, message):
        runs.append((event, message.attempt))
        if event == "a" and message.attempt == 1:
            raise ValueError("first attempt of a")

    rt.pause("w")
    define(rt, "w", handler, retries=1, backoff_s=0, concurrency=1)
    # When "b" and "c" were queued after "a" (the pause holds them all until resumed)
    rt.emit_many(["a", "b", "c"], "w")
    rt.resume("w")
    assert rt.wait("w", 10)
    # Then the retry of "a" runs next, before the newer "b" and "c" (README: nw.messages)
    assert runs == [("a", 1), ("a", 2), ("b", 1), ("c", 1)]


def test_a_retry_waits_for_its_backoff(make_runtime):
    clock = Clock(1_000_000.0)
    rt = make_runtime(clock=clock)
    handler, runs = failing_on({"bad"})
    define(rt, "w", handler, retries=1, backoff_s=60)
    rt.emit("bad", "w")
    assert wait_until(lambda: runs == [("bad", 1)], 10)
    assert rt.wait("w", 0.5) is False  # the retry waits, counted as queued
    assert runs == [("bad", 1)]
    [waiting] = rt.messages("w")
    assert waiting["attempt"] == 2
    due = waiting["due_at"].timestamp()
    assert clock.now + 30 <= due <= clock.now + 60
    # When its time comes it runs (due_at is a datetime: to the microsecond)
    clock.now = due + 1e-6
    rt.run_timers()
    assert rt.wait("w", 5)
    assert runs == [("bad", 1), ("bad", 2)] and rt.counts("w")["dead"] == 1


def test_a_message_succeeding_on_a_retry_is_done_not_dead(make_runtime):
    rt = make_runtime()
    tries = []

    def flaky(event, message):
        tries.append(message.attempt)
        if message.attempt < 3:
            raise ConnectionError("try again")
        return "fetched"

    define(rt, "w", flaky, retries=5, backoff_s=0)
    rt.emit("x", "w")
    assert rt.wait("w", 5)
    assert tries == [1, 2, 3]
    counts = rt.counts("w")
    assert (counts["done"], counts["failed"], counts["dead"], counts["retried"]) == (1, 0, 0, 2)
    assert rt.traces("w")[0].result == "fetched"


def test_dead_letters_survive_a_restart_and_can_be_requeued(make_runtime):
    rt = make_runtime()
    handler, _ = failing_on({"a", "b", "c"})
    define(rt, "w", handler)
    ids = [rt.emit(e, "w") for e in "abc"]
    assert rt.wait("w", 5)
    died = [d["id"] for d in rt.dead_letters("w")]  # in the order they died
    assert sorted(died) == ids
    rt.stop()

    # Given a new runtime on the same file, with a fixed handler
    rt2 = make_runtime()
    assert [d["id"] for d in rt2.dead_letters("w")] == died
    assert rt2.counts("w")["dead"] == 3
    seen = []
    define(rt2, "w", lambda e: seen.append(e))
    # When one is requeued by id, then the rest
    [new] = rt2.requeue("w", [ids[1]])
    assert new not in ids
    assert rt2.wait("w", 5) and seen == ["b"]
    assert [d["id"] for d in rt2.dead_letters("w")] == [i for i in died if i != ids[1]]
    assert len(rt2.requeue("w")) == 2
    assert rt2.wait("w", 5) and sorted(seen) == ["a", "b", "c"]
    assert rt2.dead_letters("w") == [] and rt2.counts("w")["dead"] == 0
    rt2.stop()
    # The requeued ones are gone from the file too
    assert make_runtime().dead_letters("w") == []


def test_discard_drops_dead_letters_for_good(make_runtime):
    rt = make_runtime()
    handler, _ = failing_on({1, 2, 3})
    define(rt, "w", handler)
    ids = rt.emit_many([1, 2, 3], "w")
    assert rt.wait("w", 5)
    assert rt.discard("w", ids[0]) == 1
    with pytest.raises(NBWorkersError, match=f"no dead letter {ids[0]}.*Nothing was changed"):
        rt.discard("w", [ids[0], ids[1]])
    assert len(rt.dead_letters("w")) == 2
    assert rt.discard("w") == 2
    rt.flush()
    rt.stop()
    assert make_runtime().dead_letters("w") == []


def test_a_dead_letter_discarded_before_the_writer_took_it_is_gone_from_the_file(make_runtime):
    rt = make_runtime(flush_interval_s=0.5)
    handler, _ = failing_on({"x"})
    define(rt, "w", handler)
    rt.emit("x", "w")
    assert rt.wait("w", 5)
    assert rt.discard("w") == 1
    rt.flush()
    assert rt.store.dead_page("w", None, 0) == [] and rt.store.load().dead_groups == []


def test_an_attempt_interrupted_by_a_crash_counts(make_runtime):
    store = MemoryStore()
    rt = make_runtime(store=store)
    started, release = threading.Event(), threading.Event()
    define(rt, "w", lambda e: started.set() or release.wait(30), concurrency=1)
    rt.emit("x", "w")
    assert started.wait(5)
    rt.flush()
    # The kernel dies mid-run: nothing more reaches the file
    store.fail_with = OSError("the process died")
    rt.stop(timeout_s=0.1)
    store.fail_with = None
    try:
        rt2 = make_runtime(store=store)
        [waiting] = rt2.messages("w")
        assert waiting["attempt"] == 2
    finally:
        release.set()


# ----- time limits -----------------------------------------------------------------------------


def test_a_run_past_its_timeout_is_abandoned_and_frees_its_slot(make_runtime):
    # (time limits on the test's clock: the timer pass is run when the test says, so that a
    # stall of the machine cannot time out the fast run too)
    clock = Clock(1_000_000.0)
    rt = make_runtime(clock=clock)
    release, started = threading.Event(), threading.Event()
    done = []

    def slow(event):
        if event == "slow":
            started.set()
            release.wait(30)
        done.append(event)

    define(rt, "w", slow, concurrency=1, timeout_s=0.2)
    rt.emit("slow", "w")
    rt.emit("fast", "w")
    assert started.wait(10)
    rt.run_timers(clock.now + 1)  # the slow run's limit has passed
    # The fast message runs although the one slot is taken by a run that never ends
    assert rt.wait("w", 10)
    assert done == ["fast"]
    timed_out = next(t for t in rt.traces("w") if not t.ok)
    assert timed_out.timed_out and "TimeoutError" in timed_out.error
    assert "--timeout" in timed_out.error and "cannot be stopped" in timed_out.error
    counts = rt.counts("w")
    assert (counts["running"], counts["done"], counts["failed"], counts["dead"]) == (0, 1, 1, 1)
    # When the abandoned run ends, nothing about it changes
    release.set()
    deadline = time.monotonic() + 5
    while "slow" not in done and time.monotonic() < deadline:
        time.sleep(0.01)
    assert rt.counts("w") == counts and len(rt.traces("w")) == 2


def test_a_timed_out_run_is_retried(make_runtime):
    clock = Clock(1_000_000.0)
    rt = make_runtime(clock=clock)
    attempts = []

    release = threading.Event()

    def handler(event, message):
        attempts.append(message.attempt)
        if message.attempt == 1:
            release.wait(10)

    define(rt, "w", handler, timeout_s=0.2, retries=1, backoff_s=0)
    rt.emit("x", "w")
    assert wait_until(lambda: attempts == [1], 10)
    rt.run_timers(clock.now + 1)  # its limit has passed (the test's clock: see above)
    assert rt.wait("w", 10)
    release.set()
    assert attempts == [1, 2]
    assert rt.counts("w")["done"] == 1 and rt.counts("w")["retried"] == 1


# ----- alerts ----------------------------------------------------------------------------------


def test_on_failure_hears_every_failed_run_and_a_broken_callback_is_reported(make_runtime, logged):
    rt = make_runtime()
    heard = []
    handler, _ = failing_on({"bad"})
    define(rt, "w", handler, retries=1, backoff_s=0)

    def alert(worker, trace):
        heard.append((worker, trace.attempt, trace.error.splitlines()[-1]))

    def broken(worker, trace):
        raise RuntimeError("the alert itself failed")

    rt.on_failure(alert)
    rt.on_failure(broken)
    rt.emit("ok", "w")
    rt.emit("bad", "w")
    assert rt.wait("w", 5)
    deadline = time.monotonic() + 5
    while len(heard) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(heard) == [
        ("w", 1, "ValueError: bad event bad"),
        ("w", 2, "ValueError: bad event bad"),
    ]
    # The broken callback's traceback is logged (on the kernel's stderr), once per failure
    said = []

    def raised():
        said[:] = [r.message + "\n" + r.exc_text for r in logged.records if r.exc_text]
        return len(said)

    deadline = time.monotonic() + 10
    while raised() < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(said) == 2
    assert all("RuntimeError: the alert itself failed" in text for text in said)


def test_registering_a_callback_of_the_same_name_again_replaces_it(make_runtime):
    rt = make_runtime()
    heard = []

    def make_alert(tag):
        def alert(worker, trace):
            heard.append(tag)

        return alert

    rt.on_failure(make_alert("old"))
    rt.on_failure(make_alert("new"))  # the cell run again
    define(rt, "w", lambda e: 1 / 0)
    rt.emit(1, "w")
    assert rt.wait("w", 5)
    deadline = time.monotonic() + 5
    while not heard and time.monotonic() < deadline:
        time.sleep(0.01)
    assert heard == ["new"]


def test_a_worker_failing_again_and_again_leaves_one_notice(make_runtime):
    rt = make_runtime(failure_notice_after=3)
    define(rt, "w", lambda e: 1 / 0, concurrency=1)
    rt.emit_many(range(2), "w")
    assert rt.wait("w", 5) and rt.take_notices() == []
    assert rt.snapshot("w").failing == 0
    rt.emit_many(range(4), "w")
    assert rt.wait("w", 5)
    notice, counted = rt.take_notices()
    assert "'w' has failed 3 runs in a row" in notice and "ZeroDivisionError" in notice
    # The failures after it, of the same cause, are one count (test_failure_notices.py)
    assert "'w' failed 3 more runs for ZeroDivisionError: division by zero" in counted
    assert rt.snapshot("w").failing == 6
    # A success ends the streak
    define(rt, "w", lambda e: e)
    rt.emit(1, "w")
    assert rt.wait("w", 5) and rt.snapshot("w").failing == 0


def test_a_slot_freed_by_a_timeout_after_lowering_concurrency_comes_back(make_runtime):
    rt = make_runtime()
    release = threading.Event()
    running = []

    def handler(event):
        running.append(event)
        release.wait(10)

    define(rt, "w", handler, concurrency=2, timeout_s=0.3)
    rt.emit_many(["a", "b"], "w")
    deadline = time.monotonic() + 5
    while len(running) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    rt.set_concurrency("w", 1)
    # Given both runs timed out while the limit was 1
    while rt.counts("w")["failed"] < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    # When the limit goes back to 2, two runs go at once again
    rt.set_concurrency("w", 2)
    rt.define("w", from_function("w", handler), 2, policy=Policy(timeout_s=30))
    rt.emit_many(["c", "d"], "w")
    while rt.counts("w")["running"] < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert rt.counts("w")["running"] == 2
    release.set()
    assert rt.wait("w", 5) and sorted(running) == ["a", "b", "c", "d"]


def test_redefining_without_a_timeout_during_a_timed_run_keeps_the_timer_alive(rt):
    from nbworkers.engine.policy import Policy

    release = threading.Event()
    started = threading.Event()
    rt.define(
        "w",
        from_function("w", lambda e: (started.set(), release.wait(10))),
        1,
        policy=Policy(timeout_s=0.2),
    )
    rt.emit("x", "w")
    assert started.wait(5)
    rt.define("w", from_function("w", lambda e: e), 1)  # the cell run again, no --timeout
    # The run still times out under the limit it started with, and the timer goes on
    assert rt.wait("w", 5) and rt.counts("w")["failed"] == 1
    assert "time limit of 0.2 s" in rt.traces("w")[0].error
    rt.emit("later", "w", delay=0.1)
    assert rt.wait("w", 5) and rt.counts("w")["done"] == 1
    release.set()


def test_a_slow_on_failure_callback_does_not_hold_up_delays(rt):
    gate = threading.Event()
    rt.on_failure(lambda worker, trace: gate.wait(10))
    rt.define("bad", from_function("bad", lambda e: 1 / 0), 1)
    seen = []
    rt.define("w", from_function("w", seen.append), 1)
    rt.emit(1, "bad")
    assert rt.wait("bad", 5)
    started = time.monotonic()
    rt.emit("late", "w", delay=0.1)
    assert rt.wait("w", 5) and seen == ["late"]
    assert time.monotonic() - started < 7  # not held up by the callback's 10 s
    gate.set()
