"""Bugs found in review, each pinned by the reproduction that showed it."""

from __future__ import annotations

import contextlib
import io
import pickle
import sys
import threading
import time

import pytest

from nbworkers.engine import Runtime
from nbworkers.errors import NBWorkersError
from nbworkers.handlers import from_cell, from_function
from nbworkers.schedule import parse
from nbworkers.store import MemoryStore
from tests.ondisk import rows
from tests.waiting import wait_until


@pytest.fixture
def rt(tmp_path):
    runtime = Runtime(str(tmp_path / "q.duckdb"))
    yield runtime
    runtime.stop()


def test_stop_writes_the_runs_that_end_while_it_waits(tmp_path):
    rt = Runtime(str(tmp_path / "q.duckdb"))
    started = threading.Event()
    rt.define("w", from_function("w", lambda e: started.set() or time.sleep(0.3)))
    rt.emit(1, "w")
    assert started.wait(5)
    rt.stop(timeout_s=5)
    path = tmp_path / "q.duckdb"
    assert rows(path, "select count(*) from messages") == [(0,)]
    assert rows(path, "select done from workers where name = 'w'") == [(1,)]
    assert rows(path, "select count(*) from traces") == [(1,)]


def test_undecodable_text_in_output_does_not_block_writes(rt, tmp_path):
    rt.define("w", from_function("w", lambda e: print("bad \udcff name")))
    rt.emit(1, "w")
    assert rt.wait("w", 5)
    rt.flush()
    rt.emit(2, "nobody")
    rt.flush()
    assert rt.store.load().traces[0].stdout == "bad \\udcff name\n"


def test_a_cell_waits_for_a_batch_already_being_written(tmp_path):
    store = MemoryStore()
    rt = Runtime(str(tmp_path / "q.duckdb"), store=store)
    try:
        writing = threading.Event()
        store.on_apply = lambda batch: writing.set() or time.sleep(0.3)
        rt.emit(1, "nobody")
        assert writing.wait(5)  # the writer has taken the batch and is committing it (slowly)
        assert rt.has_unwritten
        rt.flush()
        assert not rt.has_unwritten
        assert len(rt.store.load().messages) == 1
    finally:
        rt.stop()


def test_run_now_on_a_paused_cron_does_not_let_later_messages_through(rt):
    gate = threading.Event()
    runs = []
    rt.define_cron(
        "c",
        from_function("c", lambda message: gate.wait(5) and runs.append(message.id), "cron"),
        parse("hourly"),
    )
    assert wait_until(lambda: rt.counts("c")["running"] == 1)  # the first run holds the gate
    rt.pause("c")
    rt.run_now("c")
    rt.resume("c")
    gate.set()
    assert rt.wait("c", 5)
    rt.pause("c")
    rt.run_now("c")  # goes through the pause
    assert rt.wait("c", 5) and len(runs) == 3
    rt.intake.enqueue("c", [b"\x80\x05N."])  # a plain tick while paused must wait
    time.sleep(0.2)
    assert len(runs) == 3 and rt.counts("c")["queued"] == 1


def test_handler_output_stays_captured_after_a_redirect_replaced_the_router(rt):
    rt.define("w", from_function("w", lambda e: print("HANDLER PRINT")))
    cell = io.StringIO()
    # As %%capture or redirect_stdout do: a plain stream stands where the router was
    with contextlib.redirect_stdout(cell):
        rt.emit(1, "w")
        assert rt.wait("w", 5)
    assert "HANDLER PRINT" not in cell.getvalue()
    assert rt.traces("w")[0].stdout == "HANDLER PRINT\n"


def test_a_result_whose_repr_raises_system_exit_does_not_kill_the_writer(rt):
    class Nasty:
        def __repr__(self):
            raise SystemExit("no repr for you")

    rt.define("w", from_function("w", lambda e: Nasty()))
    rt.emit(1, "w")
    assert rt.wait("w", 5)
    rt.flush(timeout=5)
    assert "unrepresentable" in rt.store.load().traces[0].result_repr
    rt.emit(2, "nobody")
    rt.flush(timeout=5)
    # and the writer still writes: the message emitted after it is on disk
    assert [(m.worker, pickle.loads(m.data)) for m in rt.store.load().messages] == [("nobody", 2)]


def test_defining_a_worker_over_a_cron_stops_its_ticks(rt):
    rt.define_cron("d", from_function("d", lambda: None, "cron"), parse("1s"))
    rt.define("d", from_function("d", lambda e: e))
    assert [d.schedule for d in rt.definitions() if d.name == "d"] == [None]
    assert rt.run_timers(time.time() + 3600) is None


def test_wait_right_after_defining_an_interval_cron_covers_its_first_run(rt):
    runs = []
    rt.define_cron("c", from_function("c", lambda: runs.append(1), "cron"), parse("hourly"))
    assert rt.wait(timeout=5) and runs == [1]


def test_a_parked_message_leaves_one_trace_however_often_it_is_retried(rt):
    rt.define("w", from_function("w", lambda e: e), concurrency=1)
    rt.intake.enqueue("w", [b"c__main__\nNotDefinedYetNbw\n)\x81."])  # a class the notebook lacks
    assert wait_until(lambda: rt.messages("w") and rt.messages("w")[0]["parked"])
    for _ in range(3):
        rt.retry_parked()
        assert wait_until(lambda: rt.messages("w") and rt.messages("w")[0]["parked"])
    assert len(rt.traces("w")) == 1
    assert "cannot be unpickled" in rt.traces("w")[0].error
    assert rt.counts("w")["queued"] == 1


@pytest.mark.parametrize("body", ["yield event", "x = yield", "await thing()"])
def test_generator_and_async_cells_are_refused(body):
    with pytest.raises(SyntaxError, match="top level"):
        from_cell("w", body, {})
    from_cell("w", "def gen():\n    yield 1\nlist(gen())", {})  # nested is fine


# ----- found by the review of retries, dead letters, delays and time limits ---------------------


def test_redefining_without_a_timeout_during_a_timed_run_keeps_the_timer_alive(rt):
    from nbworkers.engine.worker import Policy

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


def test_a_lone_surrogate_in_a_dead_letters_error_does_not_block_writes(rt):
    def fail(event):
        raise FileNotFoundError(f"no such file: {event}")

    rt.define("w", from_function("w", fail), 1)
    rt.emit("caf\udce9.txt", "w")
    assert rt.wait("w", 5)
    rt.emit("x", "other")
    rt.flush()  # raised for ever before
    loaded = rt.store.load()
    assert "caf\\udce9.txt" in loaded.dead[0].error and len(loaded.messages) == 1
    with pytest.raises(ValueError, match="not valid text"):
        rt.emit(1, "w", key="caf\udce9")


def test_a_purge_or_a_pause_counts_as_unwritten_until_written(rt):
    rt.pause("w")
    rt.emit_many(range(3), "w")
    rt.flush()
    rt.purge("w")
    assert rt.has_unwritten
    rt.flush()
    assert not rt.has_unwritten and rt.store.load().messages == []


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
    assert time.monotonic() - started < 3
    gate.set()


class _ExitsWhenUnpickled:
    def __reduce__(self):
        return (sys.exit, (3,))


def test_an_event_whose_unpickling_raises_systemexit_is_a_failed_run_not_a_dead_thread(rt):
    rt.define("w", from_function("w", lambda e: e), 1)
    rt.emit(_ExitsWhenUnpickled(), "w")
    assert rt.wait("w", 5)
    assert "cannot be unpickled" in rt.traces("w")[0].error
    assert "SystemExit: 3" in rt.dead_letters("w")[0]["error"]
    assert rt.counts("w")["running"] == 0
    rt.emit("fine", "w")
    assert rt.wait("w", 5) and rt.counts("w")["done"] == 1


@pytest.mark.parametrize("delay", [float("inf"), float("nan"), 1e12])
def test_impossible_delays_are_refused(rt, delay):
    with pytest.raises(ValueError, match="ten years"):
        rt.emit(1, "w", delay=delay)


def test_a_cron_cannot_be_given_more_concurrency(rt):
    rt.define_cron("c", from_function("c", lambda: None, kind="cron"), parse("hourly"))
    with pytest.raises(NBWorkersError, match="crons run one at a time"):
        rt.set_concurrency("c", 3)


def test_a_delayed_message_that_came_due_has_no_due_time(rt):
    rt.pause("w")
    rt.emit(1, "w", delay=0.05)
    deadline = time.monotonic() + 5
    while rt.messages("w")[0]["due_at"] is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert rt.messages("w")[0]["due_at"] is None
