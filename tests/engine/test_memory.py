"""Freed memory goes back to the system at quiet moments (engine/memory.py, issue #22: memory
was not given back after a big drain or a requeue): a drained ``wait``, a large ``discard``,
the panels' idle tick; never while messages wait or run, and not for a handful of messages."""

from __future__ import annotations

import threading

import pytest

from nbworkers.engine import events, memory
from nbworkers.handlers import from_function
from tests.waiting import wait_until


@pytest.fixture
def trims(rt, monkeypatch):
    """The runtime's trims, counted instead of done, with a threshold of 100 messages."""
    monkeypatch.setattr(memory, "TRIM_AFTER", 100)
    calls = []
    rt.trimmer._trim = lambda pad: calls.append(pad) or 1
    return calls


def test_a_drained_wait_trims_once_enough_ended_and_not_again_for_nothing(rt, trims):
    rt.define("w", from_function("w", lambda event: event), 2)
    # Given fewer messages than the threshold, drained
    rt.emit_many(range(99), "w")
    assert rt.wait("w", 30)
    # Then no trim: too little ended
    assert trims == []
    # When more end (failed ones count too) and a wait sees them drained
    rt.define("f", from_function("f", lambda event: 1 / 0), 2)
    rt.emit_many(range(5), "f")
    assert rt.wait(None, 30)
    # Then memory is handed back once, and a second wait with nothing new does not trim again
    assert trims == [0]
    assert rt.wait(None, 30) and trims == [0]


def test_no_trim_while_messages_wait_anywhere(rt, trims):
    # Given one worker drained of 200 messages while another, paused, holds a queue
    rt.define("w", from_function("w", lambda event: event), 2)
    rt.define("held", from_function("held", lambda event: event), 1, paused=True)
    rt.emit(1, "held")
    rt.emit_many(range(200), "w")
    # When a wait for the drained worker returns
    assert rt.wait("w", 30)
    # Then no trim: the queue left needs its memory; once it drains too, the trim comes
    assert trims == []
    rt.resume("held")
    assert rt.wait(None, 30) and trims == [0]


def test_discarding_many_dead_letters_trims(rt, trims):
    def fail(event):
        raise ValueError(event)

    rt.define("w", from_function("w", fail), 2)
    rt.emit_many(range(150), "w")
    assert rt.wait("w", 30) and trims == [0]  # (the failing drain's wait trimmed once)
    # When its 150 dead letters are discarded
    assert rt.discard("w") == 150
    # Then the discard hands their memory back too
    assert trims == [0, 0]


def test_the_panels_idle_tick_trims(rt, trims, monkeypatch):
    # Given a listener (a panel) and a short idle tick
    monkeypatch.setattr(events, "NOTIFY_IDLE_S", 0.05)
    ticks = threading.Event()
    rt.add_listener(lambda names: ticks.set() if not names else None)
    rt.define("w", from_function("w", lambda event: event), 2)
    rt.emit_many(range(150), "w")
    # When the queue drains and nothing changes for the idle tick (nobody calls wait)
    assert wait_until(lambda: rt.counts("w")["done"] == 150)
    # Then the notifier thread hands the memory back
    assert wait_until(lambda: trims == [0], timeout=10)


def test_glibc_trim_is_found_and_runs_here():
    # This machine runs on glibc (Linux): the trim exists and returns 0 or 1
    trim = memory.libc_trim()
    assert trim is not None and trim(0) in (0, 1)


def test_a_reopened_file_does_not_trim_for_what_ended_before(make_runtime, monkeypatch):
    # Given a file whose counts say 150 messages ended, in an earlier process
    monkeypatch.setattr(memory, "TRIM_AFTER", 100)
    rt = make_runtime()
    rt.define("w", from_function("w", lambda event: event), 2)
    rt.emit_many(range(150), "w")
    assert rt.wait("w", 30)
    rt.stop()
    # When a new runtime opens it and a wait finds everything drained
    again = make_runtime()
    calls = []
    again.trimmer._trim = lambda pad: calls.append(pad) or 1
    again.define("w", from_function("w", lambda event: event), 2)
    assert again.counts("w")["done"] == 150 and again.wait(None, 30)
    # Then no trim: this process freed nothing yet
    assert calls == []
