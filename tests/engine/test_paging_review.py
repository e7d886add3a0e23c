"""Paging (engine/paging.py): each problem a hostile review found, as the reviewer met it, with
a window of a few messages."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from nbworkers.engine.policy import Policy
from nbworkers.handlers import from_function
from nbworkers.schedule import parse
from nbworkers.store import MemoryStore
from tests.conftest import Clock, advance, open_runtime
from tests.engine.test_paging import recorder
from tests.waiting import wait_until


def test_cancelling_or_purging_a_spilled_keyed_message_frees_its_key(make_runtime):
    rt = make_runtime(queue_window=3)
    ran = recorder(rt)
    rt.pause("w")
    rt.emit_many(list(range(5)), "w")
    keyed = rt.emit("k", "w", key="k")  # spilled
    assert rt.cancel(keyed)
    again = rt.emit("again", "w", key="k")
    assert again != keyed  # queued anew, not taken for the cancelled one
    assert rt.purge("w") == 6
    after = rt.emit("after", "w", key="k")
    assert after != again
    rt.resume("w")
    assert rt.wait("w", timeout=30)
    assert ran == ["after"]


def test_run_now_of_a_paused_cron_whose_name_has_a_long_queue_runs(make_runtime):
    rt = make_runtime(queue_window=3)
    rt.emit_many([None] * 6, "c")  # before the cron is defined: 3 of them spilled
    runs = []
    cron = from_function("c", lambda message: runs.append(message.id), kind="cron")
    rt.define_cron("c", cron, parse("1h"), paused=True)
    now = rt.run_now("c")
    deadline = time.monotonic() + 10
    while not runs and time.monotonic() < deadline:
        time.sleep(0.01)
    assert runs == [now]
    rt.resume("c")
    assert rt.wait("c", timeout=30)
    assert rt.counts("c")["queued"] == 0


def test_an_emit_at_a_time_gone_by_into_a_long_queue_runs_in_its_turn(make_runtime):
    rt = make_runtime(queue_window=3)
    ran = recorder(rt)
    rt.pause("w")
    rt.emit_many(list(range(5)), "w")
    rt.emit("past", "w", at=datetime.now(UTC) - timedelta(seconds=5))
    rt.resume("w")
    assert rt.wait("w", timeout=30)
    assert ran == [0, 1, 2, 3, 4, "past"]


def test_a_delayed_message_held_behind_spilled_ones_expires_once_and_never_runs(make_runtime):
    clock = Clock(time.time())
    rt = make_runtime(queue_window=3, clock=clock)
    ran = recorder(rt)
    rt.pause("w")
    ids = rt.emit_many(list(range(6)), "w")
    rt.emit("late", "w", delay=5, ttl=10, priority=-1)
    advance(clock, 6)
    rt.run_timers()  # due: held behind the spilled ones
    advance(clock, 10)
    rt.run_timers()  # its time to live ends while held
    assert rt.snapshot("w").priorities == {0: 6}
    assert rt.cancel(ids[0])
    rt.resume("w")
    assert rt.wait("w", timeout=30)
    assert ran == [1, 2, 3, 4, 5]
    rt.flush()
    assert [d["reason"] for d in rt.dead_letters("w", limit=None)] == ["expired"]


def test_a_retry_of_a_lower_priority_waits_for_the_spilled_higher_ones(make_runtime):
    rt = make_runtime(queue_window=4)
    ran, gate, lock = [], threading.Event(), threading.Lock()

    def handler(event, message):
        with lock:
            ran.append((event, message.attempt))
        if event in ("a", "b") and message.attempt == 1:
            gate.wait(10)
            raise ValueError("fails once")

    rt.define("w", from_function("w", handler), 2, policy=Policy(retries=1, backoff_s=0))
    rt.emit("a", "w")
    rt.emit("b", "w")
    while rt.counts("w")["running"] < 2:
        time.sleep(0.01)
    rt.emit_many([f"hi{i}" for i in range(10)], "w", priority=5)  # 4 in memory, 6 spilled
    gate.set()
    assert rt.wait("w", timeout=30)
    order = [e for e, attempt in ran if not (e in ("a", "b") and attempt == 1)]
    assert order[:10] == [f"hi{i}" for i in range(10)]
    assert sorted(order[10:]) == ["a", "b"]


def test_after_a_restart_a_message_that_came_due_waits_for_higher_spilled_ones(make_runtime):
    clock = Clock(1_000_000.0)
    rt = make_runtime(queue_window=2, clock=clock)
    rt.emit("d", "w", delay=1)
    rt.flush()
    clock.now += 2
    rt.run_timers()  # due; its row keeps its due_at
    rt.emit_many(["a", "b"], "w", priority=2)
    rt.emit("c", "w", priority=1)
    rt.emit("e", "w")
    rt.stop()
    rt = make_runtime(queue_window=2, clock=clock)
    assert [m["preview"] for m in rt.messages("w", limit=None)] == [
        "'a'",
        "'b'",
        "'c'",
        "'d'",
        "'e'",
    ]
    ran = recorder(rt)
    assert rt.wait("w", timeout=30)
    assert ran == ["a", "b", "c", "d", "e"]


def _slow_writer(store: MemoryStore, seconds: float) -> None:
    def slow(batch):
        if threading.current_thread().name == "nbworkers-writer":
            time.sleep(seconds)

    store.on_apply = slow


@pytest.mark.parametrize("how", ["cancel", "purge"])
def test_a_spilled_message_is_not_read_back_while_a_cancel_or_purge_writes(tmp_path, how):
    # cancel and purge let the lock go while the writer thread ends a slow batch: a run thread
    # must not read the message back and run it meanwhile.
    store = MemoryStore()
    rt = open_runtime(str(tmp_path / "q"), queue_window=4, store=store)
    try:
        ran, gate = [], threading.Event()

        def handler(event):
            ran.append(event)
            if event == 3:
                gate.wait(10)

        rt.define("w", from_function("w", handler), 1)
        ids = rt.emit_many(list(range(8)), "w")  # 0..3 in memory, 4..7 spilled
        while not ran or ran[-1] != 3:
            time.sleep(0.01)
        rt.flush()
        _slow_writer(store, 1.0)
        rt.emit("x", "other")  # the writer thread takes a batch, and is slow
        time.sleep(0.2)
        threading.Timer(0.2, gate.set).start()  # the run ends while the write goes on
        if how == "cancel":
            assert rt.cancel(ids[7]) is True
        else:
            assert rt.purge("w") == 4
        store.on_apply = None
        assert rt.wait("w", timeout=30)
        assert ran == [0, 1, 2, 3, 4, 5, 6] if how == "cancel" else ran == [0, 1, 2, 3]
    finally:
        store.on_apply = None
        rt.stop(timeout_s=5)


def ten_queued_past_a_window_of_three(tmp_path):
    """A runtime on a MemoryStore whose paused worker ``w`` has 10 messages, 7 of them spilled;
    the runtime, its store and the list of what ``w`` ran."""
    store = MemoryStore()
    rt = open_runtime(str(tmp_path / "q"), queue_window=3, store=store)
    ran = recorder(rt)
    rt.pause("w")
    rt.emit_many(list(range(10)), "w")
    rt.flush()
    return rt, store, ran


def test_a_failing_read_of_spilled_messages_is_retried_a_second_later_not_at_once(tmp_path, caplog):
    rt, store, ran = ten_queued_past_a_window_of_three(tmp_path)
    try:
        calls, read = [0], store.queued_page

        def failing(*args, **kw):
            calls[0] += 1
            raise OSError("read failed")

        store.queued_page = failing
        with caplog.at_level(logging.ERROR, logger="nbworkers"):
            rt.resume("w")
            assert wait_until(lambda: calls[0] >= 1, 10)
            first = calls[0]
            time.sleep(1.5)
        assert calls[0] - first <= 2  # about one a second, not a loop
        assert "could not read 'w'" in caplog.text and "read failed" in caplog.text
        store.queued_page = read
        assert rt.wait("w", timeout=30)
        assert ran == list(range(10))
    finally:
        rt.stop(timeout_s=5)


def test_a_failed_read_is_retried_a_second_later_even_after_set_rate(tmp_path, caplog):
    # The second review: the retry's wake-up lived in the rate gate's ``wait_until_s``, which
    # set_rate clears; the spilled messages then waited for an idle run thread's timeout (10 s).
    rt, store, ran = ten_queued_past_a_window_of_three(tmp_path)
    try:
        read = store.queued_page

        def failing(*args, **kw):
            raise OSError("read failed")

        store.queued_page = failing
        with caplog.at_level(logging.ERROR, logger="nbworkers"):
            rt.resume("w")
            deadline = time.monotonic() + 5
            while ran != [0, 1, 2] and time.monotonic() < deadline:
                time.sleep(0.01)
            # the read after the window fails now
            assert wait_until(lambda: "could not read 'w'" in caplog.text, 10)
            rt.set_rate("w", None)
        store.queued_page = read
        started = time.monotonic()
        assert rt.wait("w", timeout=5)
        assert time.monotonic() - started < 6  # a second or so, not an idle thread's 10 s
        assert ran == list(range(10))
    finally:
        rt.stop(timeout_s=5)


def test_overlapping_freezes_of_one_worker_keep_it_frozen_until_the_last_ends(tmp_path):
    rt, _, _ = ten_queued_past_a_window_of_three(tmp_path)
    try:
        paging, w = rt.registry.paging, rt.registry.workers["w"]
        with rt.registry.lock:  # as admin.py freezes: under the lock (it lets it go to write)
            with paging.frozen([w]):
                with paging.frozen([w]):
                    pass
                assert w.spill.frozen  # the first block still writes
                assert paging.page_in(w) is False
            assert not w.spill.frozen
        rt.resume("w")
        assert rt.wait("w", timeout=10)
    finally:
        rt.stop(timeout_s=5)
