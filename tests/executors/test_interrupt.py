"""``executors/interrupt.py``: an exception raised into a run thread only while armed for
that run, at most once, never inside a masked (nbworkers) call."""

from __future__ import annotations

import sys
import threading

import pytest

from nbworkers.errors import RunStopped
from nbworkers.executors.interrupt import Interrupt, shielded, this_thread
from tests.waiting import wait_until


class FakeRun:
    def __init__(self):
        self.stop = None
        self.interrupt = None


def test_a_run_stopped_before_its_handler_starts_does_not_start():
    interrupt = Interrupt(threading.get_ident())
    run = FakeRun()
    run.stop = "asked"
    with pytest.raises(RunStopped):
        interrupt.arm(run)
    interrupt.disarm()


def test_fire_raises_once_only_while_armed_for_that_run():
    interrupt = this_thread()
    run, other = FakeRun(), FakeRun()
    assert interrupt.fire(run) is False  # not armed
    interrupt.arm(run)
    try:
        assert interrupt.fire(other) is False  # armed for another run
        with pytest.raises(RunStopped):
            assert interrupt.fire(run) is True
            for _ in range(1_000_000):  # lands at a bytecode of this loop
                pass
        assert interrupt.fire(run) is False  # at most once a run
    finally:
        interrupt.disarm()
    assert interrupt.fire(run) is False  # disarmed


def test_disarm_clears_an_exception_that_has_not_landed():
    interrupt = this_thread()
    run = FakeRun()
    interrupt.arm(run)
    # Raised, then disarmed before any bytecode could run it: nothing lands afterwards
    with pytest.raises(RunStopped):
        try:
            interrupt.fire(run)
        finally:
            interrupt.disarm()  # (it may land in here: still inside the try)
        raise RunStopped  # what landing would have done
    for _ in range(100_000):
        pass  # nothing pending any more


def test_a_masked_call_is_never_cut_and_a_stop_asked_meanwhile_lands_when_it_returns():
    interrupt = this_thread()
    run = FakeRun()
    done = []

    def nbworkers_call():
        run.stop = "asked"
        assert interrupt.fire(run) is False  # masked: not now
        for _ in range(100_000):
            pass
        done.append("whole")
        return "its value"

    call = shielded(nbworkers_call)
    interrupt.arm(run)
    try:
        with pytest.raises(RunStopped):
            call()
    finally:
        interrupt.disarm()
    assert done == ["whole"]
    # Outside a run, a shielded call is the call
    run2 = FakeRun()
    run2.stop = "asked"
    assert shielded(lambda: "plain")() == "plain"


def test_the_exception_lands_in_another_thread():
    ready = threading.Event()
    caught = []
    run = FakeRun()

    def target():
        interrupt = this_thread()
        try:
            try:
                interrupt.arm(run)
                ready.set()
                while True:
                    pass
            finally:
                interrupt.disarm()
        except RunStopped:
            caught.append(True)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    assert ready.wait(10)
    assert wait_until(lambda: run.interrupt is not None)
    assert run.interrupt.fire(run) is True
    thread.join(10)
    assert caught == [True] and not thread.is_alive()


# A stop of a thread run hung the whole process when a trace function was installed (coverage.py,
# a debugger): the pending exception was cleared with PyThreadState_SetAsyncExc(id, NULL), which
# on CPython 3.11 leaves the interpreter's eval breaker set with nothing to handle, and a traced
# call then loops forever at its first instruction. Run in a fresh interpreter with a tracer, so
# it fails (times out) whether or not pytest itself runs under coverage.
TRACED_STOP = """
import sys, threading
sys.settrace(lambda frame, event, arg: None)
threading.settrace(lambda frame, event, arg: None)
from nbworkers.engine import Runtime
from nbworkers.handlers import from_function
from nbworkers.engine.policy import Policy
rt = Runtime(sys.argv[1])
started = threading.Event()
def handler(event, message):
    started.set()
    while True:
        pass
rt.define("w", from_function("w", handler), 1, policy=Policy())
mid = rt.emit("x", "w")
assert started.wait(20)
assert rt.stop_run(mid) is True
assert rt.wait("w", 20)
counts = rt.counts("w")
assert (counts["failed"], counts["running"]) == (1, 0), counts
for _ in range(3):  # traced calls after the stop go on
    rt.counts("w")
rt.stop()
print("stopped and went on")
"""


def test_a_stop_under_a_trace_function_lands_and_the_process_goes_on(tmp_path):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", TRACED_STOP, str(tmp_path / "q.duckdb")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "stopped and went on"


# Found in review, not fixed: on CPython 3.11 an exception raised into a thread sets the
# interpreter-wide eval breaker until that thread takes the GIL again. Under a trace function
# every other thread's next Python call waits for that: a stop of a handler blocked in C (a
# sleep, a socket read, a lock's wait) froze the kernel's own thread until that call returned.
BLOCKED_STOP = """
import sys, threading
sys.settrace(lambda frame, event, arg: None)
from nbworkers.executors.interrupt import this_thread
from nbworkers.errors import RunStopped

class Run:
    stop = None
    interrupt = None

run, armed, gate, landed = Run(), threading.Event(), threading.Lock(), []
gate.acquire()  # the main thread lets the handler go on once it has gone on itself

def handler_thread():
    interrupt = this_thread()
    try:
        try:
            interrupt.arm(run)
            armed.set()
            gate.acquire(timeout=5)  # blocked in C: it holds the gate if let go, else not
            for _ in range(10):
                pass
        finally:
            interrupt.disarm()
    except RunStopped:
        landed.append("stopped")

def call():
    pass

def blocked_in_c():
    # (as tests/waiting.wait_blocked_in_c: its innermost frame, the handler's, stays at one
    # instruction for 50 ms; a stop fired before it blocks lands in Python, and this test
    # would pass by chance)
    import time
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        frame = sys._current_frames().get(thread.ident)
        if frame is not None and frame.f_code.co_name == "handler_thread":
            at = frame.f_lasti
            time.sleep(0.05)
            again = sys._current_frames().get(thread.ident)
            if again is not None and again.f_code is frame.f_code and again.f_lasti == at:
                return
        time.sleep(0.01)
    raise SystemExit("the handler thread never blocked in C")

thread = threading.Thread(target=handler_thread)
thread.start()
armed.wait()
blocked_in_c()
run.stop = "asked"
assert run.interrupt.fire(run)
call()  # this thread goes on at once, and lets the handler go on
gate.release()
thread.join()
print(landed, "let go" if gate.locked() else "timed out")
"""


@pytest.mark.xfail(
    sys.version_info[:2] == (3, 11),
    reason="CPython 3.11: a pending async exception stalls other traced threads",
    strict=True,
)
def test_a_stop_of_a_handler_blocked_in_c_under_a_tracer_leaves_the_other_threads_going():
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", BLOCKED_STOP], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['stopped'] let go"
