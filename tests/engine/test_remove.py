"""Removing a handler (``nw.remove``): no new run, a cron's schedule dropped, runs going
settled normally, its messages unhandled again (or purged), its kind in the database."""

from __future__ import annotations

import threading

import pytest

from nbworkers.errors import NBWorkersError
from nbworkers.handlers import from_function
from nbworkers.schedule import parse
from tests.conftest import Clock
from tests.waiting import wait_until


def define(rt, name, fn, concurrency=1):
    rt.define(name, from_function(name, fn), concurrency)


def kind_in_file(rt, name):
    rt.flush()
    rows = rt.store.sql("select kind from workers where worker = $1", [name]).fetchall()
    return rows[0][0] if rows else None


def test_a_removed_worker_finishes_its_run_and_its_messages_wait_unhandled(make_runtime):
    # Given a worker with a run going and messages queued behind it
    rt = make_runtime()
    gate = threading.Event()
    started = threading.Event()
    seen = []
    define(rt, "w", lambda e: (started.set(), gate.wait(30), seen.append(e)))
    rt.emit("running", "w")
    assert started.wait(10)
    rt.emit_many(["a", "b"], "w")
    # When it is removed
    assert rt.remove("w") == 0
    # Then it is not defined any more, its run finishes and is settled normally,
    assert "w" not in rt.workers()
    gate.set()
    assert wait_until(lambda: rt.counts("w")["running"] == 0)
    assert seen == ["running"] and rt.counts("w")["done"] == 1
    # no new run starts: its messages are unhandled, and emits still queue
    rt.emit("c", "w")
    assert rt.unhandled() == {"w": 3}
    assert kind_in_file(rt, "w") == "removed"
    # and defining it again runs them
    define(rt, "w", seen.append)
    assert rt.wait("w", 10) and seen == ["running", "a", "b", "c"]
    assert kind_in_file(rt, "w") == "worker"


def test_purge_true_drops_its_queue(make_runtime):
    rt = make_runtime()
    define(rt, "w", lambda e: None)
    rt.pause("w")
    rt.emit_many(range(5), "w")
    rt.emit("later", "w", delay=600)
    assert rt.remove("w", purge=True) == 6
    assert rt.unhandled() == {} and rt.counts("w")["queued"] == 0
    rt.flush()
    assert rt.store.load().messages == []


def test_a_removed_cron_has_no_schedule_and_its_kind_says_removed(make_runtime):
    # Given an hourly cron
    clock = Clock(1_800_000_000.0)
    rt = make_runtime(clock=clock)
    ran = []
    rt.define_cron("c", from_function("c", lambda: ran.append(1), kind="cron"), parse("1h"))
    assert rt.wait("c", 10) and ran == [1]  # (a cron that never ran runs at once)
    # When it is removed
    rt.remove("c")
    # Then its schedule is gone: no next run, no tick however late
    with pytest.raises(NBWorkersError, match="no cron named 'c'"):
        rt.next_run("c")
    assert rt.run_timers(clock.now + 10 * 3600) is None
    assert rt.counts("c")["queued"] == 0 and ran == [1]
    assert kind_in_file(rt, "c") == "removed"
    assert rt.snapshot("c").defined is False
    # And a restart keeps it removed (its kind read back from the file)
    rt.stop()
    rt2 = make_runtime(clock=clock)
    assert rt2.workers() == [] and kind_in_file(rt2, "c") == "removed"


def test_a_removed_paused_cron_keeps_its_queued_messages_or_purges_them(make_runtime):
    # Given a paused cron with a message queued for it (sent to its name before the cron was
    # defined: an emit to a cron is refused)
    rt = make_runtime(clock=Clock(1_800_000_000.0))
    cron = from_function("c", lambda: None, kind="cron")
    rt.emit(None, "c")
    rt.define_cron("c", cron, parse("1h"), paused=True)
    # When it is removed: the message waits, unhandled, and the pause stays
    assert rt.remove("c") == 0
    assert rt.unhandled() == {"c": 1} and rt.is_paused("c")
    # When it is defined again and removed with purge=True: the message is dropped
    rt.define_cron("c", cron, parse("1h"), paused=True)
    assert rt.remove("c", purge=True) == 1
    assert rt.unhandled() == {}


def test_what_has_no_handler_cannot_be_removed(make_runtime):
    rt = make_runtime()
    with pytest.raises(NBWorkersError, match="nothing is named 'ghost'"):
        rt.remove("ghost")
    rt.emit(1, "orphan")
    with pytest.raises(NBWorkersError, match=r"'orphan' has no handler: its 1 queued .*purge"):
        rt.remove("orphan")
    define(rt, "w", lambda e: None)
    rt.remove("w")
    with pytest.raises(NBWorkersError, match=r"'w' has no handler \(it was removed\)"):
        rt.remove("w")
    with pytest.raises(ValueError, match="not a valid worker name"):
        rt.remove("bad name!")
    with pytest.raises(TypeError, match="purge must be True or False"):
        rt.remove("orphan", purge=1)
    assert rt.unhandled() == {"orphan": 1}  # nothing changed


def test_the_status_command_shows_a_removed_name_as_removed(make_runtime, tmp_path, capsys):
    from nbworkers import cli

    rt = make_runtime()
    define(rt, "w", lambda e: None)
    rt.pause("w")
    rt.emit(1, "w")
    rt.remove("w")
    rt.stop()
    assert cli.main(["status", str(tmp_path / "q.duckdb")]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.split()[:1] == ["w"])
    assert row.split()[1] == "removed"
