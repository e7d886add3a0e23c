"""Paging (engine/paging.py): a worker keeps at most ``queue_window`` ready messages in memory;
the others stay only in the file and are read back in run order as the window drains.

Each test uses a window of a few messages, so that most of a queue is spilled, and checks
what users see: every message runs once, in the order it would have without paging (priority,
then first in first out), across a restart; counts, nw.messages, cancel and purge see the
spilled ones; memory holds the window only.
"""

from __future__ import annotations

import threading
import time

import pytest

from nbworkers.engine.policy import Policy
from nbworkers.errors import MessageFailed
from nbworkers.handlers import from_function

WINDOW = 4


def recorder(rt, name="w", concurrency=1, **policy):
    """Define ``name`` as a worker recording the events it runs, in order."""
    ran = []
    rt.define(name, from_function(name, ran.append), concurrency, policy=Policy(**policy))
    return ran


def late_behind_spilled(rt, clock) -> None:
    """Worker "w", paused, gets 0..5, a message "late" delayed 5 s, then 6..11; then the
    delay passes: "late" comes due behind the spilled ones."""
    rt.pause("w")
    rt.emit_many(list(range(6)), "w")
    rt.emit("late", "w", delay=5)
    rt.emit_many(list(range(6, 12)), "w")
    clock.now += 10
    rt.run_timers()


def in_memory(rt, name="w") -> int:
    with rt.registry.lock:
        return len(rt.registry.workers[name].queue)


def test_a_long_queue_keeps_only_the_window_in_memory_and_runs_every_message_once_in_order(
    make_runtime,
):
    rt = make_runtime(queue_window=WINDOW)
    ran = recorder(rt)
    rt.pause("w")
    rt.emit_many(list(range(50)), "w")
    for i in range(50, 60):
        rt.emit(i, "w")
    assert in_memory(rt) == WINDOW
    assert rt.counts("w")["queued"] == 60
    rt.resume("w")
    assert rt.wait("w", timeout=30)
    assert ran == list(range(60))
    assert rt.counts("w")["done"] == 60 and rt.counts("w")["queued"] == 0
    assert rt.registry.workers["w"].spill is None


def test_messages_emitted_while_the_worker_drains_are_read_back_as_soon_as_written(
    make_runtime,
):
    # The spilled messages are not in the file yet when the window empties: the worker
    # waits for the writer, and is woken when it has written them.
    rt = make_runtime(queue_window=WINDOW, flush_interval_s=0.05)
    ran = recorder(rt, concurrency=2)
    for chunk in range(10):
        rt.emit_many([chunk * 20 + i for i in range(20)], "w")
    assert rt.wait("w", timeout=30)
    assert sorted(ran) == list(range(200))


def test_an_emit_while_the_window_has_room_still_queues_behind_the_spilled_ones(make_runtime):
    rt = make_runtime(queue_window=WINDOW)
    ran = recorder(rt)
    rt.pause("w")
    ids = rt.emit_many(list(range(10)), "w")
    for message_id in ids[:3]:  # the window now has room for three
        assert rt.cancel(message_id)
    rt.emit_many([10, 11], "w")
    rt.resume("w")
    assert rt.wait("w", timeout=30)
    assert ran == list(range(3, 12))


def test_a_spilled_message_cancelled_does_not_run_though_its_removal_is_not_written(
    make_runtime,
):
    rt = make_runtime(queue_window=WINDOW, flush_interval_s=0.5)
    ran = recorder(rt)
    rt.pause("w")
    ids = rt.emit_many(list(range(10)), "w")
    assert rt.cancel(ids[6])  # its row is in the file until the writer's next batch
    rt.resume("w")
    assert rt.wait("w", timeout=30)
    assert ran == [i for i in range(10) if i != 6]


def test_priorities_run_in_the_same_order_as_without_paging(make_runtime):
    rt = make_runtime(queue_window=WINDOW)
    ran = recorder(rt)
    rt.pause("w")
    emits = [(0, 10), (5, 3), (-1, 10), (5, 4), (0, 3), (9, 2), (-1, 2)]
    expected = []
    for n, (priority, count) in enumerate(emits):
        events = [f"p{priority}-{n}-{i}" for i in range(count)]
        rt.emit_many(events, "w", priority=priority)
        expected += [(priority, n, e) for e in events]
    expected.sort(key=lambda t: (-t[0], t[1]))  # priority, then emit order
    listed = [m["id"] for m in rt.messages("w", limit=None)]
    assert len(listed) == len(expected) and len(set(listed)) == len(listed)
    rt.resume("w")
    assert rt.wait("w", timeout=30)
    assert ran == [e for _, _, e in expected]


def test_nw_messages_shows_the_head_of_the_queue_across_memory_and_the_file(make_runtime):
    rt = make_runtime(queue_window=WINDOW)
    recorder(rt)
    rt.pause("w")
    ids = rt.emit_many(list(range(12)), "w")
    rt.flush()
    assert [m["id"] for m in rt.messages("w", limit=7)] == ids[:7]
    assert [m["id"] for m in rt.messages("w", limit=None)] == ids
    assert [m["preview"] for m in rt.messages("w", limit=None)][-1] == "11"


def test_a_restart_reads_only_the_window_and_runs_the_rest_in_order(make_runtime):
    rt = make_runtime(queue_window=WINDOW)
    rt.emit_many(list(range(30)), "w")  # no handler yet: they wait
    rt.emit_many(["high"] * 3, "w", priority=2)
    rt.stop()
    rt2 = make_runtime(queue_window=WINDOW)
    assert in_memory(rt2) == WINDOW
    assert rt2.counts("w")["queued"] == 33
    ran = recorder(rt2)
    assert rt2.wait("w", timeout=30)
    assert ran == ["high"] * 3 + list(range(30))


def test_a_run_cut_by_a_crash_beyond_the_window_gets_its_next_attempt(make_runtime):
    rt = make_runtime(queue_window=WINDOW)
    rt.emit_many(list(range(10)), "w")
    rt.flush()
    # As a kernel that died mid-run leaves it: message 7 (spilled after a restart) started.
    rt.store.con.execute(
        "UPDATE messages SET started = true WHERE seq = (SELECT min(seq) + 7 FROM messages)"
    )
    rt.stop()
    rt2 = make_runtime(queue_window=WINDOW)
    seen = []
    rt2.define("w", from_function("w", lambda e, message: seen.append((e, message.attempt))), 1)
    assert rt2.wait("w", timeout=30)
    assert seen == [(i, 2 if i == 7 else 1) for i in range(10)]


def test_cancel_and_purge_reach_spilled_messages(make_runtime):
    rt = make_runtime(queue_window=WINDOW)
    ran = recorder(rt)
    rt.pause("w")
    ids = rt.emit_many(list(range(20)), "w")
    assert rt.cancel(ids[15]) is True  # spilled, and maybe not written yet
    assert rt.cancel(ids[15]) is False
    assert rt.counts("w")["queued"] == 19
    with pytest.raises(MessageFailed, match="removed"):
        rt.result(ids[15], timeout=5)
    assert rt.purge("w") == 19
    assert rt.counts("w")["queued"] == 0
    rt.flush()
    assert rt.store.sql("SELECT count(*) FROM messages").fetchall() == [(0,)]
    rt.resume("w")
    rt.emit("after", "w")
    assert rt.wait("w", timeout=30)
    assert ran == ["after"]


def test_a_delayed_message_that_comes_due_runs_behind_those_spilled_before_it(make_runtime):
    # Without paging it would go to the back of the queue: so it does with paging, though
    # its seq is older than most spilled messages (and its retry now does not run twice).
    from tests.conftest import Clock

    clock = Clock(1_000_000.0)
    # Written half a second later: the delayed message comes due before its row is written,
    # which then has no due_at, as a spilled one (it must not be read back as one).
    rt = make_runtime(queue_window=WINDOW, clock=clock, flush_interval_s=0.5)
    attempts: dict = {}

    def handler(event, message):
        attempts[event] = attempts.get(event, 0) + 1
        if event == "late" and message.attempt == 1:
            raise ValueError("first attempt fails")

    rt.define("w", from_function("w", handler), 1, policy=Policy(retries=1, backoff_s=0))
    late_behind_spilled(rt, clock)
    rt.emit_many(list(range(12, 15)), "w")
    listed = [m["preview"] for m in rt.messages("w", limit=None)]
    assert listed == [repr(i) for i in range(12)] + ["'late'"] + [repr(i) for i in range(12, 15)]
    rt.resume("w")
    assert rt.wait("w", timeout=30)
    assert attempts == {**{i: 1 for i in range(15)}, "late": 2}


def test_dedupe_keys_of_spilled_messages_hold_across_a_restart(make_runtime):
    rt = make_runtime(queue_window=WINDOW)
    rt.emit_many(list(range(10)), "w")
    first = rt.emit("keyed", "w", key="k")
    rt.stop()
    rt2 = make_runtime(queue_window=WINDOW)
    assert rt2.emit("again", "w", key="k") == first  # still queued: not queued twice
    ran = recorder(rt2)
    assert rt2.wait("w", timeout=30)
    assert ran == [*range(10), "keyed"]
    assert rt2.emit("again", "w", key="k") != first  # it ran: the key is free


def test_many_threads_emitting_and_draining_lose_and_repeat_nothing(make_runtime):
    rt = make_runtime(queue_window=WINDOW, flush_interval_s=0.002)
    ran = []
    lock = threading.Lock()

    def handler(event):
        with lock:
            ran.append(event)

    rt.define("w", from_function("w", handler), 4)

    def emitter(k):
        for i in range(50):
            rt.emit_many([(k, i, j) for j in range(5)], "w", priority=i % 3)

    threads = [threading.Thread(target=emitter, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert rt.wait("w", timeout=60)
    assert sorted(ran) == sorted((k, i, j) for k in range(4) for i in range(50) for j in range(5))
    assert rt.counts("w")["done"] == 1000


def test_the_oldest_age_and_the_counts_by_priority_include_spilled_messages(make_runtime):
    rt = make_runtime(queue_window=WINDOW)
    recorder(rt)
    rt.pause("w")
    ids = rt.emit_many(list(range(10)), "w")  # 4 in memory, 6 in the file
    time.sleep(0.3)
    rt.emit_many(["high"] * 5, "w", priority=5)  # in memory: they run first
    for message_id in ids[:4]:
        assert rt.cancel(message_id)
    assert rt.snapshot("w").priorities == {5: 5, 0: 6}
    # The oldest waiting message is one in the file, emitted 0.3 s before any in memory
    assert rt.counts("w")["oldest_age_s"] >= 0.3
    rt.stop()
    rt2 = make_runtime(queue_window=WINDOW)
    assert rt2.snapshot("w").priorities == {5: 5, 0: 6}
    assert rt2.counts("w")["oldest_age_s"] >= 0.3


def test_a_delayed_message_due_before_its_row_is_written_is_not_read_back_twice(tmp_path):
    # The writer makes a row from its message when it writes it: a delayed message that came
    # due before that has no due_at in the file, like a spilled one, in a spilled line's range.
    from nbworkers.store import MemoryStore
    from tests.conftest import Clock, open_runtime

    store, writes = MemoryStore(), threading.Event()
    store.on_apply = lambda batch: writes.wait(10)  # nothing is written until set
    clock = Clock(1_000_000.0)
    rt = open_runtime(str(tmp_path / "q"), queue_window=WINDOW, clock=clock, store=store)
    try:
        ran = recorder(rt)
        late_behind_spilled(rt, clock)
        writes.set()
        listed = [m["preview"] for m in rt.messages("w", limit=None)]
        assert listed == [*map(repr, range(12)), "'late'"]
        assert rt.counts("w")["queued"] == 13
        rt.resume("w")
        assert rt.wait("w", timeout=30)
        assert ran == [*range(12), "late"]
    finally:
        writes.set()
        rt.stop()


def test_a_purge_counts_a_delayed_message_held_behind_spilled_ones_once(make_runtime):
    from tests.conftest import Clock

    clock = Clock(1_000_000.0)
    rt = make_runtime(queue_window=WINDOW, clock=clock)
    recorder(rt)
    rt.pause("w")
    rt.emit_many(list(range(6)), "w")
    late = rt.emit("late", "w", delay=5)
    clock.now += 10
    rt.run_timers()  # due, and held behind the two spilled messages
    assert rt.counts("w")["queued"] == 7
    assert [m["id"] for m in rt.messages("w", limit=None)][-1] == late
    assert rt.purge("w") == 7
    assert rt.counts("w")["queued"] == 0 and rt.messages("w", limit=None) == []
    with pytest.raises(MessageFailed, match="removed"):
        rt.result(late, timeout=5)
