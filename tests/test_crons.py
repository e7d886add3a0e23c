"""Crons in the runtime, on a clock the test moves (no real minutes waited)."""

from __future__ import annotations

import itertools
import threading

import pytest

from nbworkers.errors import NBWorkersError
from nbworkers.handlers import from_function
from nbworkers.runtime import Runtime
from nbworkers.schedule import HOUR, parse
from tests.conftest import Clock

T0 = 1_800_000_000.0


@pytest.fixture
def make_runtime(tmp_path):
    made = []

    def make(clock):
        rt = Runtime(str(tmp_path / "q.duckdb"), clock=clock, timezone="UTC")
        made.append(rt)
        return rt

    yield make
    for rt in made:
        rt.stop()


def define(rt, name, fn, spec="hourly", at=None, paused=False):
    rt.define_cron(name, from_function(name, fn, kind="cron"), parse(spec, at), paused)


def test_runs_at_once_then_once_per_interval(make_runtime):
    clock = Clock(T0)
    rt = make_runtime(clock)
    runs = []
    define(rt, "c", lambda: runs.append(clock.now))
    rt.run_timers()
    assert rt.wait("c", 5) and runs == [T0]
    assert rt.next_run("c").timestamp() == T0 + HOUR
    # When half an hour passes nothing runs; when the hour is up it runs again
    clock.now = T0 + HOUR / 2
    assert rt.run_timers() == T0 + HOUR
    clock.now = T0 + HOUR
    rt.run_timers()
    assert rt.wait("c", 5) and runs == [T0, T0 + HOUR]
    trace = rt.traces("c")[0]
    assert trace.input is None and trace.ok
    assert rt.counts("c") == {
        "queued": 0,
        "running": 0,
        "done": 2,
        "failed": 0,
        "dead": 0,
        "retried": 0,
        "oldest_age_s": None,
        "skipped": 0,
    }


def test_a_one_second_cron_runs_once_in_every_second_of_the_clock(make_runtime):
    clock = Clock(T0)
    rt = make_runtime(clock)
    runs = []
    define(rt, "c", lambda: runs.append(clock.now), spec="1s")
    # When the clock moves on in steps of a quarter of a second, for three seconds
    for step in range(13):
        clock.now = T0 + step * 0.25
        rt.run_timers()
        assert rt.wait("c", 5)
    # Then it ran at once and then at each whole second, never in between
    assert runs == [T0, T0 + 1, T0 + 2, T0 + 3]


def test_a_run_still_going_makes_the_tick_skip(make_runtime):
    clock = Clock(T0)
    rt = make_runtime(clock)
    gate = threading.Event()
    started = threading.Event()
    define(rt, "c", lambda: started.set() or gate.wait(10))
    rt.run_timers()
    assert started.wait(5)
    clock.now = T0 + HOUR
    rt.run_timers()
    assert rt.counts("c")["skipped"] == 1
    assert rt.counts("c")["queued"] == 0
    gate.set()
    assert rt.wait("c", 5) and rt.counts("c")["done"] == 1


def test_run_now_leaves_the_schedule_and_works_while_paused(make_runtime):
    clock = Clock(T0)
    rt = make_runtime(clock)
    runs = []
    define(rt, "c", lambda message: runs.append(message.id))
    rt.run_timers()
    assert rt.wait("c", 5)
    clock.now = T0 + 60
    rt.run_now("c")
    assert rt.wait("c", 5) and len(runs) == 2
    assert rt.next_run("c").timestamp() == T0 + HOUR
    rt.pause("c")
    assert rt.next_run("c") is None
    clock.now = T0 + 5 * HOUR
    rt.run_timers()
    assert rt.counts("c")["queued"] == 0 and len(runs) == 2
    rt.run_now("c")
    assert rt.wait("c", 5) and len(runs) == 3
    with pytest.raises(NBWorkersError, match="no cron"):
        rt.run_now("nope")


def test_restart_neither_runs_twice_in_an_interval_nor_loses_its_place(make_runtime, tmp_path):
    clock = Clock(T0)
    rt = make_runtime(clock)
    runs = []
    define(rt, "c", lambda: runs.append(clock.now))
    rt.run_timers()
    assert rt.wait("c", 5)
    rt.stop()
    # Given a restart 20 minutes later and the cron defined again
    clock.now = T0 + 1200
    rt2 = make_runtime(clock)
    define(rt2, "c", lambda: runs.append(clock.now))
    rt2.run_timers()
    assert rt2.wait("c", 5) and runs == [T0]
    assert rt2.next_run("c").timestamp() == T0 + HOUR
    rt2.stop()
    # Given a restart after five missed hours: a single catch-up run
    clock.now = T0 + 5 * HOUR + 1
    rt3 = make_runtime(clock)
    define(rt3, "c", lambda: runs.append(clock.now))
    rt3.run_timers()
    rt3.run_timers()
    assert rt3.wait("c", 5) and runs == [T0, T0 + 5 * HOUR + 1]


def test_pause_of_a_cron_is_kept_across_restarts(make_runtime):
    clock = Clock(T0)
    rt = make_runtime(clock)
    define(rt, "c", lambda: None, paused=True)
    rt.run_timers()
    assert rt.counts("c")["done"] == 0
    rt.stop()
    rt2 = make_runtime(clock)
    define(rt2, "c", lambda: None)
    assert rt2.is_paused("c") and rt2.next_run("c") is None


def test_wall_clock_crons_run_at_their_time(make_runtime):
    clock = Clock(T0)  # 2027-01-15 08:00 UTC
    rt = make_runtime(clock)
    runs = []
    define(rt, "c", lambda: runs.append(clock.now), spec="daily", at="09:30")
    rt.run_timers()
    assert runs == [] and rt.next_run("c").timestamp() == T0 + 1.5 * HOUR
    clock.now = T0 + 1.5 * HOUR
    rt.run_timers()
    assert rt.wait("c", 5) and runs == [T0 + 1.5 * HOUR]


def test_a_failing_cron_is_counted_and_traced(make_runtime):
    rt = make_runtime(Clock(T0))

    def boom():
        print("trying")
        raise RuntimeError("no network")

    define(rt, "c", boom)
    rt.run_timers()
    assert rt.wait("c", 5)
    trace = rt.traces("c")[0]
    assert rt.counts("c")["failed"] == 1
    assert "RuntimeError: no network" in trace.error and trace.stdout == "trying\n"


def test_the_scheduler_thread_sleeps_until_due(make_runtime):
    import time

    rt = make_runtime(time.time)
    runs = []
    define(rt, "c", lambda: runs.append(time.time()), spec="1s")
    deadline = time.time() + 10
    while len(runs) < 3 and time.time() < deadline:
        time.sleep(0.05)
    assert len(runs) >= 3
    gaps = [b - a for a, b in itertools.pairwise(runs)]
    assert all(0.9 < g < 5 for g in gaps), gaps  # never early; late only under heavy load


def test_undefining_a_cron_stops_its_ticks_and_keeps_its_messages_unhandled(make_runtime):
    # Given an hourly cron that has run once (renaming its %%cron cell undefines it)
    clock = Clock(T0)
    rt = make_runtime(clock)
    runs = []
    define(rt, "c", lambda: runs.append(clock.now))
    rt.run_timers()
    assert rt.wait("c", 5) and runs == [T0]
    # When it is undefined
    rt.undefine("c")
    # Then it is no longer a worker or a cron, its run thread ends, and it never ticks again
    assert rt.workers() == []
    with pytest.raises(NBWorkersError, match="no cron named 'c'"):
        rt.next_run("c")
    assert _wait_for(lambda: "nbworkers-run-c-0" not in {t.name for t in threading.enumerate()})
    clock.now = T0 + 3 * HOUR
    assert rt.run_timers() is None
    # and what is sent to its name waits, unhandled, for the next definition of that name
    rt.emit("kept", "c")
    assert rt.unhandled() == {"c": 1} and runs == [T0]
    seen = []
    rt.define("c", from_function("c", seen.append))
    assert rt.wait("c", 5) and seen == ["kept"]


def test_a_failing_timer_pass_is_reported_and_the_timer_goes_on(tmp_path, capfd):
    # Given a runtime whose first timer pass raises (a bug, a schedule that cannot answer)
    rt = Runtime(str(tmp_path / "q.duckdb"))
    real_run_timers = rt.run_timers
    passes = []

    def run_timers(now=None):
        passes.append(now)
        if len(passes) == 1:
            raise RuntimeError("this timer pass broke")
        return real_run_timers(now)

    rt.run_timers = run_timers
    try:
        seen = []
        rt.define("w", from_function("w", seen.append))
        # When a delayed message starts the timer thread
        rt.emit("later", "w", delay=0.1)
        # Then the failure is reported on the kernel's stderr, and the next pass delivers it
        assert _wait_for(lambda: seen == ["later"])
        assert len(passes) >= 2
    finally:
        rt.stop()
    err = capfd.readouterr().err
    assert "nbworkers: the timer failed (it goes on)" in err
    assert "RuntimeError: this timer pass broke" in err


def _wait_for(condition, timeout=10.0):
    """True once ``condition()`` is; False if ``timeout`` seconds pass first."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
