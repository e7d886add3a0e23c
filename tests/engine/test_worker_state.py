"""One worker's state (``worker.py``) and message ids (``message.py``), as plain objects: the
fast unit tests that mutation testing runs against these modules (see README, "Mutation
testing")."""

from __future__ import annotations

import gc
import pickle
import random
import threading
from datetime import UTC, datetime

import pytest

from nbworkers.engine.dead import letter
from nbworkers.engine.policy import MAX_BACKOFF_S, Policy
from nbworkers.engine.worker import Run, WorkerState
from nbworkers.fingerprint import fingerprint
from nbworkers.message import ClassNotDefined, Message, load_event, message_id, parse_id
from nbworkers.schedule import parse
from nbworkers.store.rows import DeadRow


def state(traces_kept: int = 10) -> WorkerState:
    return WorkerState("w", threading.Lock(), traces_kept)


def msg(seq: int, enqueued_at_s: float = 100.0, due_at_s=None, key=None) -> Message:
    return Message(seq, "w", enqueued_at_s, 1, b"", due_at_s, key)


class Fixed:
    """An rng whose ``uniform(a, b)`` returns the fraction ``f`` of the way from a to b."""

    def __init__(self, f: float):
        self.f = f
        self.calls = []

    def uniform(self, a, b):
        self.calls.append((a, b))
        return a + (b - a) * self.f


# ----- ids --------------------------------------------------------------------------------


def test_ids_round_trip_and_anything_else_is_refused():
    assert message_id(0) == "m0"
    assert message_id(42) == "m42"
    assert parse_id("m42", "m") == 42
    assert parse_id("t7", "t") == 7
    for bad in ["t42", "m", "m-1", "m4x", "42", "", None, 42, " m4"]:
        with pytest.raises(ValueError, match="is not an nbworkers id"):
            parse_id(bad, "m")


def test_a_message_shows_its_times_in_utc_and_its_id_in_its_repr():
    m = Message(3, "resize", 0.0, 2, b"", due_at_s=60.0)
    assert m.id == "m3"
    assert m.enqueued_at == datetime(1970, 1, 1, tzinfo=UTC)
    assert m.due_at == datetime(1970, 1, 1, 0, 1, tzinfo=UTC)
    assert repr(m) == "<Message m3 to 'resize', attempt 2>"
    assert Message(4, "w", 0.0, 1, b"").due_at is None
    assert (m.started, m.written) == (False, False)


class BadState:
    """Its ``__setstate__`` (user code) raises AttributeError."""

    def __init__(self):
        self.width = 3

    def __setstate__(self, state):
        raise AttributeError("BadState has no attribute 'size'")


def test_an_event_loads_as_a_fresh_copy():
    event = {"path": "a.png", "sizes": [1, 2]}
    data = pickle.dumps(event)
    first, second = load_event(data), load_event(data)
    assert first == second == event
    assert first is not second and first["sizes"] is not second["sizes"]


@pytest.mark.parametrize(
    ("data", "message", "error"),
    [
        (
            b"cnbw_no_such_module\nThing\n.",  # a pickle of nbw_no_such_module.Thing
            "nbw_no_such_module.Thing is not defined (ModuleNotFoundError: No module named "
            "'nbw_no_such_module'); run the cell that defines it (or make its module importable)",
            ModuleNotFoundError,
        ),
        (
            b"cbuiltins\nNoSuchThing\n.",
            "builtins.NoSuchThing is not defined (AttributeError: Can't get attribute "
            "'NoSuchThing' on <module 'builtins' (built-in)>); run the cell that defines it (or "
            "make its module importable)",
            AttributeError,
        ),
    ],
)
def test_an_event_naming_a_class_that_is_not_defined_says_to_run_its_cell(data, message, error):
    with pytest.raises(ClassNotDefined) as info:
        load_event(data)
    assert str(info.value) == message
    assert type(info.value.error) is error
    assert info.value.__cause__ is not None


def test_an_attribute_error_from_user_code_while_loading_is_raised_as_it_is():
    with pytest.raises(AttributeError, match="BadState has no attribute 'size'") as info:
        load_event(pickle.dumps(BadState()))
    assert type(info.value) is AttributeError


# ----- Policy -----------------------------------------------------------------------------


def test_policy_defaults():
    p = Policy()
    assert (p.retries, p.backoff_s, p.timeout_s, p.executor) == (0, 1.0, None, "threads")


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"retries": -1}, "retries must be a whole number"),
        ({"retries": True}, "retries must be a whole number"),
        ({"retries": 1.5}, "retries must be a whole number"),
        ({"backoff_s": -0.1}, "backoff must be a number of seconds"),
        ({"backoff_s": float("nan")}, "backoff must be a number of seconds"),
        ({"backoff_s": False}, "backoff must be a number of seconds"),
        ({"timeout_s": 0}, "timeout must be a number of seconds above 0"),
        ({"timeout_s": -1}, "timeout must be a number of seconds above 0"),
        ({"timeout_s": float("inf")}, "timeout must be a number of seconds above 0"),
        ({"timeout_s": "5"}, "timeout must be a number of seconds above 0"),
    ],
)
def test_policy_refuses_bad_values(kw, words):
    with pytest.raises(ValueError, match=words):
        Policy(**kw)


def test_policy_accepts_the_edges():
    assert Policy(retries=0, backoff_s=0, timeout_s=0.001).backoff_s == 0
    assert Policy(retries=5, backoff_s=2.5).retries == 5


def test_retry_delay_is_exponential_with_equal_jitter():
    p = Policy(retries=5, backoff_s=2.0)
    # With no jitter drawn the wait is half the full backoff; with all of it, the whole.
    assert [p.retry_delay_s(n, Fixed(0.0)) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert [p.retry_delay_s(n, Fixed(1.0)) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]
    rng = Fixed(0.5)
    assert p.retry_delay_s(3, rng) == 6.0
    assert rng.calls == [(0, 4.0)]


def test_retry_delay_is_capped_at_an_hour_however_many_attempts_failed():
    p = Policy(retries=1000, backoff_s=1.0)
    assert p.retry_delay_s(13, Fixed(1.0)) == MAX_BACKOFF_S == 3600.0
    assert p.retry_delay_s(500, Fixed(0.0)) == MAX_BACKOFF_S / 2
    assert Policy(backoff_s=0).retry_delay_s(3, random.Random(1)) == 0


# ----- queue, delays, waiting ---------------------------------------------------------------


def test_take_is_first_in_first_out_unless_paused_then_only_forced_runs():
    w = state()
    w.handler = object()
    assert not w.ready()
    w.queue.extend([msg(1), msg(2), msg(3)])
    assert w.ready()
    assert w.take().seq == 1
    w.paused = True
    assert not w.ready()
    w.forced.add(3)
    assert w.ready()
    assert w.take().seq == 3  # the run_now message goes through the pause, past the others
    assert w.forced == set()
    assert [m.seq for m in w.queue] == [2]
    assert not w.ready()


def test_a_queue_without_a_handler_is_not_ready():
    w = state()
    w.queue.append(msg(1))
    assert not w.ready()


def test_delayed_messages_come_due_in_time_order_and_only_when_due():
    w = state()
    for seq, due in [(1, 30.0), (2, 10.0), (3, 20.0), (4, 20.0)]:
        w.delay(msg(seq, due_at_s=due))
    assert w.next_due_s() == 10.0
    assert w.due(9.999) == []
    assert [m.seq for m in w.due(10.0)] == [2]  # due exactly at its time
    assert [m.seq for m in w.due(25.0)] == [3, 4]
    assert w.next_due_s() == 30.0
    assert [m.seq for m in w.due(1e9)] == [1]
    assert w.next_due_s() is None


def test_waiting_lists_ready_then_delayed_soonest_first_then_parked():
    w = state()
    w.queue.extend([msg(5), msg(1)])
    w.delay(msg(7, due_at_s=50.0))
    w.delay(msg(6, due_at_s=40.0))
    w.parked.append((msg(9), "class missing"))
    assert [m.seq for m in w.waiting()] == [5, 1, 6, 7, 9]
    assert [m.seq for m in w.waiting(3)] == [5, 1, 6]
    assert [m.seq for m in w.waiting(0)] == []
    assert w.queued() == 5


def test_remove_waiting_takes_the_named_ones_from_everywhere_and_forgets_their_keys():
    w = state()
    keyed = msg(2, key="k")
    w.keys["k"] = keyed
    w.queue.extend([msg(1), keyed])
    w.delay(msg(3, due_at_s=5.0))
    w.delay(msg(4, due_at_s=6.0))
    w.parked.append((msg(5), "r"))
    w.forced.update({1, 2})
    removed = w.remove_waiting({2, 3, 5, 99})
    assert sorted(m.seq for m in removed) == [2, 3, 5]
    assert [m.seq for m in w.queue] == [1]
    assert [m.seq for m in w.due(1e9)] == [4]
    assert w.parked == []
    assert w.keys == {}
    assert w.forced == {1}
    assert w.remove_waiting({42}) == []


def test_remove_waiting_none_takes_everything():
    w = state()
    w.queue.extend([msg(1), msg(2)])
    w.delay(msg(3, due_at_s=5.0))
    assert sorted(m.seq for m in w.remove_waiting(None)) == [1, 2, 3]
    assert w.queued() == 0


def test_forget_key_forgets_only_the_message_that_holds_it():
    w = state()
    first, second = msg(1, key="k"), msg(2, key="k")
    w.keys["k"] = second
    w.forget_key(first)  # an older message with the same key no longer holds it
    assert w.keys == {"k": second}
    w.forget_key(msg(3))  # no key
    w.forget_key(second)
    assert w.keys == {}


# ----- storm guard ----------------------------------------------------------------------------


def test_the_storm_guard_trips_after_exactly_the_whole_seconds_in_a_row():
    w = state()
    rate, seconds = 10, 3
    # Seconds 100, 101, 102 each over the rate: three whole seconds in a row.
    for second in (100, 101, 102):
        assert not w.note_self_emits(rate + 1, second + 0.5, rate, seconds)
    # In second 103 the guard knows three whole seconds were over; it trips once this
    # second is over the rate too, not before.
    assert not w.note_self_emits(rate, 103.1, rate, seconds)
    assert w.note_self_emits(1, 103.2, rate, seconds)


def test_the_storm_guard_needs_the_seconds_in_a_row():
    w = state()
    rate, seconds = 10, 2
    assert not w.note_self_emits(11, 100.0, rate, seconds)
    assert not w.note_self_emits(11, 102.0, rate, seconds)  # a quiet second between: start again
    assert not w.note_self_emits(11, 103.0, rate, seconds)
    assert w.note_self_emits(11, 104.0, rate, seconds)
    # A second at the rate (not over it) breaks the run.
    assert not w.note_self_emits(10, 105.0, rate, seconds)
    assert not w.note_self_emits(11, 106.0, rate, seconds)
    assert w.storm_seconds == 0
    w.clear_storm()
    assert (w.storm_second, w.storm_count, w.storm_seconds) == (0, 0, 0)


# ----- counts ---------------------------------------------------------------------------------


def test_counts_of_a_worker_and_the_age_of_its_oldest_message():
    w = state()
    assert w.counts(1000.0) == {
        "queued": 0,
        "running": 0,
        "done": 0,
        "failed": 0,
        "dead": 0,
        "retried": 0,
        "oldest_age_s": None,
    }
    w.queue.extend([msg(1, enqueued_at_s=900.0), msg(2, enqueued_at_s=950.0)])
    w.delay(msg(3, enqueued_at_s=800.0, due_at_s=2000.0))
    w.parked.append((msg(4, enqueued_at_s=850.0), "r"))
    w.dead.add(letter(msg(5), "boom", 990.0))
    w.running, w.done, w.failed, w.retried = 2, 7, 1, 3
    counts = w.counts(1000.0)
    assert counts == {
        "queued": 4,
        "running": 2,
        "done": 7,
        "failed": 1,
        "dead": 1,
        "retried": 3,
        "oldest_age_s": 200.0,
    }
    assert w.counts(700.0)["oldest_age_s"] == 0.0  # a clock behind the emit shows no age
    assert w.oldest_s() == 800.0


def test_the_oldest_queued_message_is_found_among_retries_put_in_front():
    w = state()
    w.queue.extend([msg(10, enqueued_at_s=500.0), msg(1, enqueued_at_s=100.0)])
    assert w.oldest_s() == 100.0
    w.parked.append((msg(2, enqueued_at_s=50.0), "r"))
    assert w.oldest_s() == 50.0


def test_the_oldest_queued_message_is_found_when_a_delayed_one_came_due_behind_newer_ones():
    w = state()
    w.handler = object()
    w.delay(msg(1, enqueued_at_s=100.0, due_at_s=160.0))  # emit(..., delay=60) at 100
    w.delay(msg(70, enqueued_at_s=110.0, due_at_s=160.0))
    w.queue.extend(msg(seq, enqueued_at_s=130.0 + seq) for seq in range(2, 66))  # 64 newer
    w.queue.extend(w.due(160.0))  # as the runtime's timer moves it when it is due
    assert w.oldest_s() == 100.0
    # Once it is purged (or has run), the next oldest is found
    w.remove_waiting({1})
    assert w.oldest_s() == 110.0
    while w.queue:
        w.take()
    assert w.oldest_s() is None
    assert w.late == [] and w.late_seqs == set()


def test_the_late_messages_kept_stay_few_however_many_came_due():
    w = state()
    w.handler = object()
    for seq in range(1000):
        w.delay(msg(seq, enqueued_at_s=float(seq), due_at_s=1.0))
        w.queue.extend(w.due(1.0))
        w.take()
    assert len(w.late) <= 64 and w.late_seqs == set()


def test_a_cron_counts_skipped_ticks_and_says_what_it_is():
    w = state()
    assert (w.is_cron, w.kind_name) == (False, "worker")
    assert "skipped" not in w.counts(0.0)
    w.schedule = parse("hourly")
    w.skipped = 2
    assert (w.is_cron, w.kind_name) == (True, "cron")
    assert w.counts(0.0)["skipped"] == 2


def test_a_dead_letter_is_its_row_with_the_whole_error_and_its_group():
    made = letter(msg(12, key="k"), "ValueError: x 3", 5.0)
    row = DeadRow._make(made[:-1])
    assert made[-1] is None  # its own line: not formatted by this thread, cut by the store
    assert (row.seq, row.worker, row.key, row.error, row.died_at, row.reason) == (
        12,
        "w",
        "k",
        "ValueError: x 3",
        5.0,
        "failed",
    )
    assert (row.fingerprint, row.title) == (fingerprint(row.error).digest, "ValueError: x 3")
    # A plain tuple of plain values: the garbage collector stops tracking it (engine/dead.py)
    assert type(made) is tuple
    gc.collect()
    assert not gc.is_tracked(made)


def test_the_row_written_for_a_worker():
    w = state()
    w.paused, w.done, w.failed, w.last_run_s = True, 4, 2, 12.5
    w.skipped, w.pause_reason, w.retried, w.kind = 1, "why", 3, "worker"
    row = w.row()
    assert (row.name, row.paused, row.done, row.failed, row.last_run) == ("w", True, 4, 2, 12.5)
    assert (row.skipped, row.pause_reason, row.retried, row.kind) == (1, "why", 3, "worker")


def test_traces_kept_is_the_length_of_the_trace_list():
    w = state(traces_kept=3)
    w.traces.extend(range(5))
    assert list(w.traces) == [2, 3, 4]


def test_a_new_worker_state_is_empty_idle_and_unpaused():
    lock = threading.Lock()
    w = WorkerState("w", lock, 10)
    assert (w.name, w.handler, w.schedule, w.kind) == ("w", None, None, None)
    assert (w.paused, w.pause_reason, w.policy) == (False, None, Policy())
    assert (w.concurrency, w.running, w.idle, w.failing) == (0, 0, 0, 0)
    assert (w.done, w.failed, w.retried, w.skipped, w.last_run_s) == (0, 0, 0, 0, None)
    assert w.schedule_error is None  # the runtime computes a next run only while it is None
    assert (w.storm_second, w.storm_count, w.storm_seconds) == (0, 0, 0)
    assert (len(w.queue), w.delayed, w.parked, len(w.dead)) == (0, [], [], 0)
    assert (w.keys, w.runs, w.live, w.forced, w.parked_traced) == ({}, {}, set(), set(), set())
    # Run threads sleep on the runtime's own lock.
    with lock:
        w.cond.notify_all()  # only legal while holding the lock the condition was made with
    with pytest.raises(RuntimeError):
        w.cond.notify_all()


def test_a_run_keeps_what_a_time_limit_needs():
    m, policy = msg(1), Policy(timeout_s=3)
    run = Run(m, 2, 10.0, 5.0, "capture", 13.0, policy)
    assert (run.message, run.index, run.started_at_s, run.t0) == (m, 2, 10.0, 5.0)
    assert (run.capture, run.deadline_s, run.policy, run.timed_out) == (
        "capture",
        13.0,
        policy,
        False,
    )


def test_a_message_keeps_its_data():
    m = Message(1, "w", 0.0, 1, b"payload", key="k")
    assert (m.seq, m.worker, m.data, m.key, m.attempt) == (1, "w", b"payload", "k", 1)


def test_due_returns_the_messages_themselves():
    w = state()
    m = msg(1, due_at_s=1.0)
    w.delay(m)
    assert w.due(2.0) == [m]


def test_the_backoff_exponent_stops_growing_after_60_failed_attempts():
    # Far past the hour cap anyway; the exponent is bounded so that 2.0 ** n cannot overflow.
    tiny = Policy(backoff_s=2.0**-70)
    assert tiny.retry_delay_s(61, Fixed(1.0)) == 2.0**-10
    assert tiny.retry_delay_s(62, Fixed(1.0)) == 2.0**-10
