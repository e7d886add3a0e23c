"""User code (a result's repr and pickling, an event's unpickling) runs where a run runs, never in
the writer, and a failure in it ends like any failed run."""

from __future__ import annotations

import pickle
import sys
import threading
import time

import duckdb
import pytest

from nbworkers.engine import Runtime
from nbworkers.engine.policy import Policy
from nbworkers.engine.settings import Settings
from nbworkers.handlers import from_function
from nbworkers.trace import NOT_COPIED, preview, run_result
from tests.kernel import Kernel, wait_for
from tests.waiting import wait_until


class _SlowRepr:
    """A result whose repr waits until ``release`` is set (at most 10 s)."""

    def __init__(self, entered: threading.Event, release: threading.Event):
        self.entered = entered
        self.release = release

    def __repr__(self):
        self.entered.set()
        self.release.wait(10)
        return "<slow>"

    def __reduce__(self):
        return (str, ("slow",))


# ----- a result's repr and pickling ----------------------------------------------------------


def test_a_slow_result_repr_does_not_hold_up_other_writes(rt):
    entered, release = threading.Event(), threading.Event()
    rt.define("slow", from_function("slow", lambda e: _SlowRepr(entered, release)))
    try:
        rt.emit(1, "slow")
        assert entered.wait(5)  # the run ended; its result's repr is being made
        # Another worker's message reaches the disk meanwhile: the writer is not the thread
        # making that repr (it took the whole 10 s before)
        rt.emit("keep me", "other")
        rt.flush(timeout=5)
        assert [m.worker for m in rt.store.load().messages] == ["slow", "other"]
    finally:
        release.set()
    assert rt.wait("slow", 5)
    rt.flush(timeout=5)
    assert rt.store.load().traces[0].result_repr == "<slow>"


def test_a_result_repr_past_the_time_limit_times_the_run_out(rt):
    entered, release = threading.Event(), threading.Event()
    rt.define(
        "slow",
        from_function("slow", lambda e: _SlowRepr(entered, release)),
        policy=Policy(timeout_s=0.3),
    )
    try:
        rt.emit(1, "slow")
        assert rt.wait("slow", 5)  # the timer ended the run while its repr was being made
        assert entered.is_set()
        (trace,) = rt.traces("slow")
        assert trace.timed_out and "time limit of 0.3 s" in trace.error
        assert rt.counts("slow")["failed"] == 1 and rt.counts("slow")["done"] == 0
    finally:
        release.set()


class _PrintingRepr:
    def __repr__(self):
        print("made my repr")
        return "<printing>"


def test_what_a_result_repr_prints_goes_to_its_trace(rt):
    rt.define("w", from_function("w", lambda e: _PrintingRepr()))
    rt.emit(1, "w")
    assert rt.wait("w", 5)
    (trace,) = rt.traces("w")
    assert trace.result_repr == "<printing>" and trace.stdout == "made my repr\n"


def test_a_result_past_result_max_bytes_keeps_only_its_repr(tmp_path):
    rt = Runtime(str(tmp_path / "q.duckdb"), Settings(result_max_bytes=1000))
    try:
        # One run at a time: the big result is the newest trace
        rt.define("w", from_function("w", lambda e: b"x" * e), 1)
        rt.emit(10, "w")
        rt.emit(100_000, "w")
        assert rt.wait("w", 5)
        assert rt.traces("w")[0].result == b"x" * 100_000  # in memory: the value itself
        rt.flush(timeout=5)
        stored = {len(t.result_repr): t for t in rt.store.load().traces}
        assert pickle.loads(stored[len(repr(b"x" * 10))].result) == b"x" * 10
        (big,) = [t for t in stored.values() if t.result is None]
        assert big.result_repr.startswith("b'xxx")
    finally:
        rt.stop()


@pytest.mark.parametrize(
    "value",
    [
        *(None, 0, -7, 10**39, 10**40, 10**5000, 1.5, True),
        *("", "a'b", "é" * 41, "\n" * 200, b"\x00" * 50),
    ],
    ids=lambda value: type(value).__name__,
)
def test_the_quick_copy_of_a_plain_result_is_the_same_as_the_general_one(value):
    copy = run_result(value, 65536)
    assert copy.repr == preview(value)
    if value is None:
        assert copy.data is None
    else:
        assert pickle.loads(copy.data) == value


def test_a_drain_copies_the_results_of_the_traces_it_keeps(rt):
    rt.define("w", from_function("w", lambda e: {"n": e}), 1, paused=True)
    rt.emit_many(range(25), "w")
    rt.resume("w")
    assert rt.wait("w", 10)
    rt.flush(timeout=5)
    stored = rt.store.load().traces
    assert sorted(t.result_repr for t in stored) == sorted(repr({"n": n}) for n in range(15, 25))
    assert sorted(pickle.loads(t.result)["n"] for t in stored) == list(range(15, 25))


def _blocking_on(n: int, entered: threading.Event, release: threading.Event):
    def handler(e):
        if e == n:
            entered.set()
            release.wait(10)
        return _PrintingRepr()

    return handler


def _wait_for_traces(rt, name: str, count: int) -> None:
    deadline = time.monotonic() + 5
    while len(rt.traces(name)) < count and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_run_that_ends_with_a_long_queue_behind_it_skips_the_copies(rt):
    # Its trace was to be replaced by later ones (a drain does not pay for copies no one
    # sees); a purge kept it among the newest: its value stays in memory, not on disk
    entered, release = threading.Event(), threading.Event()
    rt.define("w", from_function("w", _blocking_on(1, entered, release)), 1)
    rt.emit_many(range(20), "w")
    assert entered.wait(5)  # run 0 ended with 19 messages queued
    assert rt.purge("w") == 18
    release.set()
    _wait_for_traces(rt, "w", 2)
    newest, first = rt.traces("w")
    assert newest.result_repr == "<printing>" and newest.stdout == "made my repr\n"
    assert first.result_repr == NOT_COPIED and first.stdout == ""
    assert isinstance(first.result, _PrintingRepr)
    rt.flush(timeout=5)
    stored = {t.seq: t for t in rt.store.load().traces}
    assert stored[first.seq].result_repr == NOT_COPIED and stored[first.seq].result is None
    assert stored[newest.seq].result_repr == "<printing>"


def test_a_run_that_ends_while_its_worker_is_paused_copies_its_result(rt):
    entered, release = threading.Event(), threading.Event()
    rt.define("w", from_function("w", _blocking_on(0, entered, release)), 1)
    rt.emit_many(range(20), "w")
    assert entered.wait(5)
    rt.pause("w")  # the 19 queued may wait a long time: this trace stays the newest
    release.set()
    _wait_for_traces(rt, "w", 1)
    assert rt.traces("w")[0].result_repr == "<printing>"
    assert rt.counts("w")["queued"] == 19


def test_a_finished_cells_emit_is_on_disk_while_a_slow_repr_runs(tmp_path):
    db = tmp_path / "q.duckdb"
    k = Kernel(str(tmp_path), env={"NBWORKERS_DB": str(db)})
    try:
        k.ok("%load_ext nbworkers\nimport nbworkers as nw, threading, time")
        k.ok(
            "entered = threading.Event()\n"
            "class Slow:\n"
            "    def __repr__(self):\n"
            "        entered.set()\n"
            "        time.sleep(20)\n"
            "        return 'slow'"
        )
        k.ok("%%worker slow\nSlow()")
        assert k.run("emit(1, 'slow')", timeout=10).status == "ok"
        wait_for(k, "entered.is_set()")
        # The cell ends (its post-cell flush once waited for the repr) and its emit is written
        reply = k.run("emit('keep me', 'other')", timeout=10)
        assert reply.status == "ok" and reply.stderr == ""
        k.kill()  # SIGKILL while the repr still runs
        con = duckdb.connect(str(db), read_only=True)
        try:
            assert con.execute("select worker from messages order by seq").fetchall() == [
                ("slow",),
                ("other",),
            ]
        finally:
            con.close()
    finally:
        k.shutdown()


# ----- an event's unpickling -----------------------------------------------------------------


class _BadState:
    """Pickles, but its unpickling always raises ValueError."""

    def __getstate__(self):
        return {"x": 1}

    def __setstate__(self, state):
        raise ValueError("bad state")


class _SetstateAttributeError:
    """Its unpickling raises AttributeError from user code: not a missing class."""

    def __getstate__(self):
        return {"x": 1}

    def __setstate__(self, state):
        self.nothing_here.x = 1


# GLOBAL "__main__ NoSuchClass", EMPTY_TUPLE, NEWOBJ, STOP: an instance of a class that the
# notebook has not defined (yet), as after a restart
_MISSING_CLASS = b"c__main__\nNoSuchClassNbw\n)\x81."
_MISSING_MODULE = b"cno_such_module_nbw\nThing\n)\x81."


def test_an_event_whose_setstate_raises_is_retried_then_dead(rt):
    calls = []
    rt.define("w", from_function("w", calls.append), 1, policy=Policy(retries=1, backoff_s=0))
    message_id = rt.emit(_BadState(), "w")
    assert rt.wait("w", 5)
    assert calls == []
    assert [t.attempt for t in rt.traces("w")] == [2, 1]
    assert all("ValueError: bad state" in t.error for t in rt.traces("w"))
    counts = rt.counts("w")
    assert (counts["queued"], counts["failed"], counts["dead"], counts["retried"]) == (0, 1, 1, 1)
    (letter,) = rt.dead_letters("w")
    assert letter["id"] == message_id and "ValueError: bad state" in letter["error"]
    assert "define its class" not in letter["error"]


@pytest.mark.parametrize("cls", [_SetstateAttributeError])
def test_an_attribute_error_raised_by_setstate_is_not_a_missing_class(rt, cls):
    rt.define("w", from_function("w", lambda e: e), 1)
    rt.emit(cls(), "w")
    assert rt.wait("w", 5)
    assert rt.counts("w")["dead"] == 1
    assert "AttributeError" in rt.dead_letters("w")[0]["error"]


@pytest.mark.parametrize(
    "data, error",
    [
        (_MISSING_CLASS, "AttributeError: Can't get attribute 'NoSuchClassNbw'"),
        (_MISSING_MODULE, "ModuleNotFoundError: No module named 'no_such_module_nbw'"),
    ],
)
def test_an_event_whose_class_is_not_defined_is_parked_naming_the_error(rt, data, error):
    rt.define("w", from_function("w", lambda e: e), 1, policy=Policy(retries=3))
    rt.intake.enqueue("w", [data])
    assert wait_until(lambda: len(rt.traces("w")) == 1, 10)
    assert rt.wait("w", 0.3) is False  # parked: it waits for the defining cell
    (waiting,) = rt.messages("w")
    assert error in waiting["parked"]
    (trace,) = rt.traces("w")
    assert "cannot be unpickled yet" in trace.error and error in trace.error
    counts = rt.counts("w")
    assert (counts["queued"], counts["failed"], counts["dead"]) == (1, 0, 0)


def test_a_setstate_error_in_a_kernel_is_retried_then_dead_and_wait_returns(kernel):
    kernel.ok(
        "class Broken:\n"
        "    def __getstate__(self):\n"
        "        return {'x': 1}\n"
        "    def __setstate__(self, state):\n"
        "        raise ValueError('cannot rebuild a Broken')"
    )
    kernel.ok("%%worker w --retries 1 --backoff 0\nevent")
    kernel.ok("emit(Broken(), 'w')")
    assert kernel.eval("nw.wait('w', timeout=10)") is True
    assert kernel.eval("[t.attempt for t in nw.traces('w')]") == [2, 1]
    (letter,) = kernel.eval("[d['error'] for d in nw.dead_letters('w')]")
    assert "ValueError: cannot rebuild a Broken" in letter
    assert kernel.eval("nw.messages('w')") == []


def test_a_parked_event_runs_once_its_class_is_defined(rt):
    rt.define("w", from_function("w", lambda e: type(e).__name__), 1)
    rt.intake.enqueue("w", [_MISSING_CLASS])
    deadline = time.monotonic() + 5
    while not rt.traces("w") and time.monotonic() < deadline:
        time.sleep(0.01)
    import __main__

    __main__.NoSuchClassNbw = type("NoSuchClassNbw", (), {})
    try:
        rt.retry_parked()
        assert rt.wait("w", 5)
        assert rt.traces("w")[0].result == "NoSuchClassNbw"
    finally:
        del __main__.NoSuchClassNbw


# ----- panels --------------------------------------------------------------------------------


class _CountedRepr:
    """An event that counts how often its repr is made."""

    calls = 0

    def __repr__(self):
        type(self).calls += 1
        return "<counted>"


def test_a_panel_refresh_does_not_unpickle_the_shown_input_again(fresh_runtime):
    from nbworkers.widgets.panel import Panel

    rt = fresh_runtime.runtime()
    rt.define("w", from_function("w", lambda e: None))
    rt.emit(_CountedRepr(), "w")
    assert rt.wait("w", 5)
    panel = Panel("w")
    try:
        panel.view.selected = panel.view.traces[0]["id"]
        assert panel.view.detail["blocks"][0]["text"] == "<counted>"
        shown = _CountedRepr.calls
        # The notifier thread refreshes panels every 0.4 s while anything changes: the input
        # shown (user code: its unpickling and repr) is not made again each time
        for _ in range(3):
            panel.refresh()
        assert _CountedRepr.calls == shown
    finally:
        panel.close()


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


def test_a_parked_message_leaves_one_trace_however_often_it_is_retried(rt):
    rt.define("w", from_function("w", lambda e: e), concurrency=1)
    rt.intake.enqueue("w", [b"c__main__\nNotDefinedYetNbw\n)\x81."])  # a class the notebook lacks
    assert wait_until(lambda: (m := rt.messages("w")) and m[0]["parked"])
    for _ in range(3):
        rt.retry_parked()
        assert wait_until(lambda: (m := rt.messages("w")) and m[0]["parked"])
    assert len(rt.traces("w")) == 1
    assert "cannot be unpickled" in rt.traces("w")[0].error
    assert rt.counts("w")["queued"] == 1


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


def test_a_traces_result_whose_class_is_not_defined_yet_says_so_after_a_restart(kernel):
    # A worker returned an instance of a notebook class; after a restart, before that cell
    # runs again, trace.result names the class and what to do, as trace.input does.
    kernel.ok(
        """
class Price:
    def __init__(self, value):
        self.value = value

@nw.worker("price")
def price(event):
    return Price(event)
"""
    )
    kernel.ok("emit(3, 'price')\nnw.wait('price')\nnw.flush()")
    kernel.restart()
    kernel.ok("%load_ext nbworkers\nimport nbworkers as nw")
    reply = kernel.run("nw.traces('price')[0].result")
    assert reply.ename == "NBWorkersError", reply.traceback
    assert "Price" in reply.evalue and "run the cell" in reply.evalue
