"""Priorities: emit(..., priority=n) runs higher first among a worker's ready messages, first
in first out within one; the ready queue (engine/ready.py) that keeps that order without a
scan; durable across a restart; shown by nw.messages."""

from __future__ import annotations

import itertools
import threading

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbworkers.engine.policy import Policy
from nbworkers.engine.ready import MAX_PRIORITY, ReadyQueue
from nbworkers.errors import ArgumentTypeError, ArgumentValueError
from nbworkers.handlers import from_function
from nbworkers.message import Message
from nbworkers.store import SCHEMA_VERSION
from tests.conftest import Clock


def msg(seq: int, priority: int = 0) -> Message:
    return Message(seq, "w", float(seq), 1, b"", priority=priority)


def seqs(queue) -> list[int]:
    return [m.seq for m in queue]


def recorder(rt, name, concurrency=1, **policy):
    """Define ``name`` as a worker recording the events it runs, in order."""
    ran = []
    rt.define(name, from_function(name, ran.append), concurrency, policy=Policy(**policy))
    return ran


# ----- the ready queue -------------------------------------------------------------------------


def test_ready_queue_runs_higher_priority_first_and_fifo_within_one():
    q = ReadyQueue()
    for seq, priority in [(1, 0), (2, 5), (3, -2), (4, 5), (5, 0), (6, 9), (7, -2)]:
        q.append(msg(seq, priority))
    assert len(q) == 7 and q
    assert seqs(q) == [6, 2, 4, 1, 5, 3, 7]  # iteration is run order
    assert seqs(itertools.islice(q, 3)) == [6, 2, 4]
    assert q.first().seq == 6
    assert q.by_priority() == {9: 1, 5: 2, 0: 2, -2: 2}
    assert [q.popleft().seq for _ in range(7)] == [6, 2, 4, 1, 5, 3, 7]
    assert not q and len(q) == 0 and q.first() is None
    with pytest.raises(IndexError):
        q.popleft()


def test_ready_queue_appendleft_goes_to_the_front_of_its_own_priority():
    q = ReadyQueue([msg(1, 3), msg(2, 0), msg(3, 3)])
    q.appendleft(msg(4, 0))  # a retry with no backoff: before the other 0s, after the 3s
    q.extendleft([msg(5, 3), msg(6, 3)])  # as deque.extendleft: 6 ends up first
    assert seqs(q) == [6, 5, 1, 3, 4, 2]


def test_ready_queue_extend_with_one_priority_and_mixed():
    q = ReadyQueue()
    q.extend([msg(1, 2), msg(2, 2)], 2)
    q.extend([msg(3), msg(4)], 0)
    q.extend([], 7)  # nothing: no empty priority left behind
    q.extend(m for m in [msg(5, -1), msg(6, 2)])
    assert seqs(q) == [1, 2, 6, 3, 4, 5]
    assert q.by_priority() == {2: 3, 0: 2, -1: 1}


def test_ready_queue_remove_and_lazy_discard_keep_the_counts_right():
    q = ReadyQueue([msg(1), msg(2, 4), msg(3), msg(4, 4)])
    q.remove(q.first())  # seq 2
    with pytest.raises(ValueError):
        q.remove(msg(99, 4))
    one = next(m for m in q if m.seq == 1)
    q.discard(one)
    assert len(q) == 2 and seqs(q) == [4, 3] and q.by_priority() == {4: 1, 0: 1}
    assert [q.popleft().seq, q.popleft().seq] == [4, 3]
    assert not q
    q.clear()
    assert len(q) == 0 and not q


def test_ready_queue_discarding_most_of_it_compacts():
    messages = [msg(seq, seq % 3) for seq in range(1, 1001)]
    q = ReadyQueue(messages)
    for m in messages[:900]:
        q.discard(m)
    assert len(q) == 100
    assert q._held() < 1000  # the discarded ones were dropped once they were most of it
    expected = sorted(messages[900:], key=lambda m: (-m.priority, m.seq))
    assert seqs(q) == [m.seq for m in expected]
    assert [q.popleft().seq for _ in range(100)] == [m.seq for m in expected]


def test_oldest_candidates_include_the_first_of_every_priority():
    q = ReadyQueue([msg(seq, 5) for seq in range(10, 80)] + [msg(1, 0)])
    assert 1 in seqs(q.firsts(64))  # the oldest waits behind 70 higher ones


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("append"), st.integers(-3, 3)),
            st.tuples(st.just("appendleft"), st.integers(-3, 3)),
            st.tuples(st.just("pop"), st.just(0)),
            st.tuples(st.just("discard"), st.integers(0, 50)),
        ),
        max_size=120,
    )
)
def test_ready_queue_matches_a_model_of_one_list_per_priority(ops):
    """Whatever the operations, the queue runs in the order of a plain model: the highest
    priority's list first, each list in order (appendleft at its front)."""
    q = ReadyQueue()
    model: dict[int, list[Message]] = {}
    seq = itertools.count(1)
    for op, arg in ops:
        if op in ("append", "appendleft"):
            m = msg(next(seq), arg)
            getattr(q, op)(m)
            line = model.setdefault(arg, [])
            line.insert(0, m) if op == "appendleft" else line.append(m)
        elif op == "pop":
            expected = [m for p in sorted(model, reverse=True) for m in model[p]]
            if expected:
                assert q.popleft() is expected[0]
                model[expected[0].priority].remove(expected[0])
            else:
                with pytest.raises(IndexError):
                    q.popleft()
        else:
            held = [m for line in model.values() for m in line]
            if held:
                victim = held[arg % len(held)]
                q.discard(victim)
                model[victim.priority].remove(victim)
        in_order = [m.seq for p in sorted(model, reverse=True) for m in model[p]]
        assert seqs(q) == in_order and len(q) == len(in_order) and bool(q) == bool(in_order)


# ----- emit(..., priority=) ---------------------------------------------------------------------


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(-MAX_PRIORITY, MAX_PRIORITY), min_size=1, max_size=30))
def test_a_resumed_worker_runs_in_order_of_priority_then_emit(tmp_path_factory, priorities):
    from tests.conftest import open_runtime

    rt = open_runtime(str(tmp_path_factory.mktemp("p") / "q.duckdb"))
    try:
        rt.pause("w")
        ran = recorder(rt, "w")
        for i, priority in enumerate(priorities):
            rt.emit((i, priority), "w", priority=priority)
        rt.resume("w")
        assert rt.wait("w", 30)
        assert ran == sorted(enumerate(priorities), key=lambda e: (-e[1], e[0]))
    finally:
        rt.stop()


def test_emit_many_gives_each_the_priority_and_messages_shows_it(make_runtime):
    rt = make_runtime()
    rt.pause("w")
    low = rt.emit_many(["a", "b"], "w", priority=-1)
    normal = rt.emit("c", "w")
    high = rt.emit_many(["d", "e"], "w", priority=10)
    listed = rt.messages("w")
    assert [m["id"] for m in listed] == [*high, normal, *low]
    assert [m["priority"] for m in listed] == [10, 10, 0, -1, -1]
    assert rt.counts("w")["queued"] == 5


@pytest.mark.parametrize(
    ("priority", "error", "says"),
    [
        (1.5, ArgumentTypeError, "priority must be a whole number"),
        (True, ArgumentTypeError, "priority must be a whole number"),
        ("1", ArgumentTypeError, "priority must be a whole number"),
        (None, ArgumentTypeError, "priority must be a whole number"),
        (MAX_PRIORITY + 1, ArgumentValueError, "priority must be from -1,000 to 1,000"),
        (-MAX_PRIORITY - 1, ArgumentValueError, "priority must be from -1,000 to 1,000"),
    ],
)
def test_a_bad_priority_is_refused_and_nothing_is_enqueued(make_runtime, priority, error, says):
    rt = make_runtime()
    with pytest.raises(error, match=says):
        rt.emit("x", "w", priority=priority)
    with pytest.raises(error, match=says):
        rt.emit_many(["x", "y"], "w", priority=priority)
    assert rt.counts("w")["queued"] == 0 and rt.messages("w") == []


def test_a_retry_without_backoff_goes_to_the_front_of_its_own_priority(make_runtime):
    rt = make_runtime()
    rt.pause("w")
    ran = []
    failed_once = set()

    def handler(event):
        ran.append(event)
        if event == "high-flaky" and event not in failed_once:
            failed_once.add(event)
            raise ValueError("once")

    rt.define("w", from_function("w", handler), 1, policy=Policy(retries=1, backoff_s=0))
    rt.emit("low", "w", priority=-5)
    rt.emit("high-flaky", "w", priority=5)
    rt.emit("high-2", "w", priority=5)
    rt.emit("normal", "w")
    rt.resume("w")
    assert rt.wait("w", 10)
    assert ran == ["high-flaky", "high-flaky", "high-2", "normal", "low"]


def test_a_delayed_message_that_comes_due_joins_the_line_of_its_priority(make_runtime):
    clock = Clock(1_000_000.0)
    rt = make_runtime(clock=clock)
    rt.pause("w")
    rt.emit("late-high", "w", delay=10, priority=3)
    rt.emit("normal", "w")
    rt.emit("high", "w", priority=3)
    clock.now += 11
    rt.run_timers(clock.now)
    assert [m["preview"] for m in rt.messages("w")] == ["'high'", "'late-high'", "'normal'"]


def test_the_priority_order_survives_a_restart(make_runtime):
    rt = make_runtime()
    rt.pause("w")
    for event, priority in [("a", 0), ("b", 2), ("c", -1), ("d", 2), ("e", 0)]:
        rt.emit(event, "w", priority=priority)
    rt.flush()
    rt.stop()
    # Given a new runtime on the same file
    rt2 = make_runtime()
    assert [m["priority"] for m in rt2.messages("w")] == [2, 2, 0, 0, -1]
    ran = recorder(rt2, "w")
    rt2.resume("w")
    assert rt2.wait("w", 10)
    assert ran == ["b", "d", "a", "e", "c"]


def test_a_requeued_dead_letter_keeps_its_priority(make_runtime):
    rt = make_runtime()
    rt.pause("w")
    rt.define("w", from_function("w", lambda e: 1 / 0), 1)
    rt.emit("x", "w", priority=7)
    rt.resume("w")
    assert rt.wait("w", 10)
    (letter,) = rt.dead_letters("w")
    assert letter["priority"] == 7 and letter["reason"] == "failed"
    rt.pause("w")
    rt.requeue("w")
    assert [m["priority"] for m in rt.messages("w")] == [7]


def test_the_panel_shows_ready_messages_by_priority_only_when_one_is_not_0(make_runtime):
    from nbworkers.widgets import state

    rt = make_runtime()
    rt.pause("w")
    rt.emit_many(["a", "b"], "w")
    assert state.notices(rt.snapshot("w")) == []
    rt.emit("c", "w", priority=4)
    by = {"text": "ready by priority (higher first): 1 at 4 · 2 at 0", "tone": "muted"}
    assert by in state.notices(rt.snapshot("w"))


def test_concurrent_emits_of_many_priorities_lose_nothing(make_runtime):
    rt = make_runtime()
    rt.pause("w")
    ran = recorder(rt, "w", concurrency=4)

    def emitter(base):
        for i in range(200):
            rt.emit(base + i, "w", priority=i % 7 - 3)

    threads = [threading.Thread(target=emitter, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rt.resume("w")
    assert rt.wait("w", 30)
    assert sorted(ran) == sorted(k * 1000 + i for k in range(4) for i in range(200))


# ----- an old file -----------------------------------------------------------------------------

# The tables of schema version 3, as a file written before priorities and expiry has them.
SCHEMA_3 = """
CREATE TABLE meta (key VARCHAR, value VARCHAR);
CREATE TABLE messages (seq BIGINT, worker VARCHAR, enqueued_at DOUBLE, attempt INTEGER,
    data BLOB, started BOOLEAN DEFAULT false, due_at DOUBLE, key VARCHAR);
CREATE TABLE workers (name VARCHAR, paused BOOLEAN, done BIGINT, failed BIGINT,
    last_run DOUBLE, skipped BIGINT, pause_reason VARCHAR, retried BIGINT DEFAULT 0,
    kind VARCHAR, keep INTEGER);
CREATE TABLE traces (seq BIGINT, worker VARCHAR, message_seq BIGINT, started_at DOUBLE,
    duration DOUBLE, input BLOB, result BLOB, result_repr VARCHAR, stdout VARCHAR,
    error VARCHAR, replay BOOLEAN, attempt INTEGER DEFAULT 1, timed_out BOOLEAN DEFAULT false,
    calls BLOB, calls_text VARCHAR);
CREATE TABLE dead_letters (seq BIGINT, worker VARCHAR, enqueued_at DOUBLE, attempt INTEGER,
    data BLOB, key VARCHAR, error VARCHAR, died_at DOUBLE);
INSERT INTO meta VALUES ('schema_version', '3'), ('next_seq', '10');
"""


def test_a_schema_3_file_opens_and_gains_priority_expiry_and_reason(make_runtime, tmp_path):
    import pickle

    path = tmp_path / "q.duckdb"
    con = duckdb.connect(str(path))
    con.execute(SCHEMA_3)
    data = pickle.dumps("old")
    con.execute("INSERT INTO messages VALUES (3, 'w', 1.0, 1, ?, false, NULL, NULL)", [data])
    con.execute("INSERT INTO messages VALUES (4, 'w', 2.0, 1, ?, false, NULL, NULL)", [data])
    con.execute(
        "INSERT INTO dead_letters VALUES (5, 'w', 1.0, 2, ?, NULL, 'ValueError: x', 3.0)", [data]
    )
    con.close()
    # When a runtime of this version opens it
    rt = make_runtime()
    rt.pause("w")
    assert [(m["id"], m["priority"], m["expires_at"]) for m in rt.messages("w")] == [
        ("m3", 0, None),
        ("m4", 0, None),
    ]
    (letter,) = rt.dead_letters("w")
    assert letter["reason"] == "failed" and letter["priority"] == 0
    new = rt.emit("new", "w", priority=1, ttl=3600)
    assert rt.messages("w")[0]["id"] == new
    rt.flush()
    rt.stop()
    # Then the file has the new columns and says it is version 4
    con = duckdb.connect(str(path))
    try:
        columns = {
            t: {r[0] for r in con.execute(f"DESCRIBE {t}").fetchall()}
            for t in ("messages", "dead_letters")
        }
        assert {"priority", "expires_at"} <= columns["messages"]
        assert {"reason", "priority", "expires_at"} <= columns["dead_letters"]
        version = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
        assert version == [(str(SCHEMA_VERSION),)] and SCHEMA_VERSION >= 4
        assert con.execute("SELECT priority FROM messages ORDER BY seq").fetchall() == [
            (0,),
            (0,),
            (1,),
        ]
    finally:
        con.close()


def test_len_may_be_read_without_the_lock_while_priorities_come_and_go():
    """Dispatch._superseded reads len(w.queue) without the engine's lock (a guess): it must
    never fail while another thread adds and takes messages of many priorities."""
    import sys

    q = ReadyQueue()
    stop = threading.Event()
    errors = []

    def churn():
        seq = itertools.count(1)
        for _ in range(2000):
            for p in range(-20, 21):
                q.append(msg(next(seq), p))
            while q:
                q.popleft()
        stop.set()

    def read():
        try:
            while not stop.is_set():
                len(q)
        except Exception as exc:  # noqa: BLE001 - what the test looks for
            errors.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    threads = [threading.Thread(target=churn), threading.Thread(target=read)]
    try:
        for t in threads:
            t.start()
        threads[0].join(60)
    finally:
        stop.set()
        for t in threads:
            t.join()
        sys.setswitchinterval(interval)
    assert errors == []
