"""A handler's output is its run's own: what it does to sys.stdout/sys.stderr stays in its run."""

from __future__ import annotations

import contextlib
import io
import threading

import pytest

from nbworkers import output
from nbworkers.handlers import from_function

# Each event is what one run does to the streams; later cells must print all the same.
MISCHIEF = {
    "close": "sys.stdout.close()\nsys.stderr.close()",
    "close-then-print": "sys.stdout.close()\nprint('lost', file=sys.stdout)",
    "close-then-flush": "sys.stderr.close()\nsys.stderr.flush()",
    "none": "sys.stdout = None\nsys.stderr = None",
    "process-streams": "sys.stdout = sys.__stdout__\nsys.stderr = sys.__stderr__",
}


def test_a_handler_closing_or_replacing_the_streams_leaves_later_cells_printing(kernel):
    kernel.ok(
        "%%worker mischief --concurrency 1\n"
        "import sys\n"
        "print('before', event)\n"
        "exec(MISCHIEF[event])\n"
        "sys.stdout.closed if sys.stdout is not None else 'no stdout'"
    )
    kernel.ok(f"MISCHIEF = {MISCHIEF!r}")
    for event in MISCHIEF:
        kernel.ok(f"nw.emit({event!r}, 'mischief')\nassert nw.wait('mischief', timeout=20)")
        reply = kernel.ok("import sys\nprint('cell out')\nprint('cell err', file=sys.stderr)")
        assert (reply.stdout, reply.stderr) == ("cell out\n", "cell err\n"), event
    traces = {t["input"]: t for t in kernel.eval(_TRACES)}
    # A close closes the run's own capture: its later writes fail as on any closed file
    assert traces["close"]["result"] is True and traces["close"]["error"] is None
    assert traces["close"]["stdout"] == "before close\n"
    for event in ("close-then-print", "close-then-flush"):
        last_line = traces[event]["error"].splitlines()[-1]
        assert last_line == "ValueError: I/O operation on closed file."
        assert traces[event]["stdout"] == f"before {event}\n"
    # Streams left unusable are put back when the run ends, and the trace says so
    for event in ("none", "process-streams"):
        assert traces[event]["error"] is None
        stdout = traces[event]["stdout"]
        assert stdout.startswith(f"before {event}\n"), stdout
        assert "sys.stdout was set to" in stdout and "was put back" in stdout, stdout
        assert "sys.stderr was set to" in stdout, stdout
    # The next run on the same thread prints into its own trace as usual
    kernel.ok("%%worker mischief --concurrency 1\nprint('fine', event)")
    kernel.ok("nw.emit(1, 'mischief')\nassert nw.wait('mischief', timeout=20)")
    assert kernel.eval("nw.traces('mischief')[0].stdout") == "fine 1\n"


_TRACES = (
    "[dict(input=t.input, result=t.result, error=t.error, stdout=t.stdout) "
    "for t in nw.traces('mischief')]"
)


def test_a_close_from_a_cell_outside_any_run_still_reaches_the_real_stream():
    class Real:
        closed = False

        def close(self):
            self.closed = True

    router = output._Router(Real(), "stdout")
    router.close()
    assert router.closed and router._nbworkers_real.closed


@pytest.mark.parametrize("name", ["stdout", "stderr"])
def test_a_close_from_another_thread_outside_any_run_closes_the_stream_for_that_thread_only(name):
    import io

    real = io.StringIO()
    router = output._Router(real, name)
    seen = {}

    def a_thread():
        router.write("a")
        router.close()
        seen["closed"] = router.closed
        seen["flush"] = router.flush()  # as ipykernel's stream after a close: no error
        try:
            router.write("b")
        except ValueError as exc:
            seen["write"] = str(exc)

    t = threading.Thread(target=a_thread)
    t.start()
    t.join()
    assert seen == {"closed": True, "flush": None, "write": "I/O operation on closed file."}
    router.write("c")  # the kernel's main thread, and the real stream, are not closed
    assert (real.getvalue(), real.closed, router.closed) == ("ac", False, False)


@pytest.mark.parametrize("name", ["stdout", "stderr"])
def test_a_close_inside_a_run_closes_only_that_runs_capture(name):
    import io

    real = io.StringIO()
    router = output._Router(real, name)
    with output.Capture() as first:
        router.write("a")
        router.close()
        assert router.closed
        with pytest.raises(ValueError, match="closed file"):
            router.write("b")
    with output.Capture() as second:
        router.write("c")
        assert not router.closed
    assert (first.text(), second.text(), real.closed) == ("a", "c", False)


def test_a_stream_a_run_sets_to_none_is_put_back_when_it_ends_and_its_output_says_so(monkeypatch):
    import io
    import sys

    real = io.StringIO()
    monkeypatch.setattr(sys, "stdout", real)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    # As in a fresh process: no runtime installed, no router put in place yet (a runtime an
    # earlier test left running would make its router the stream to put back)
    monkeypatch.setattr(output, "_installs", 0)
    monkeypatch.setattr(output, "_last", {})
    with output.Capture() as run:
        print("before")
        sys.stdout = None
        # A run starting meanwhile gets the kernel's stream back, not a router around None
        with output.Capture() as other:
            print("other run")
    assert isinstance(sys.stdout, output._Router) and sys.stdout._nbworkers_real is real
    assert other.text().startswith("nbworkers: sys.stdout was None when this run started")
    assert other.text().endswith("put back.\nother run\n")
    assert run.text() == "before\n"
    print("after")
    assert real.getvalue() == "after\n"


def test_handler_output_stays_captured_after_a_redirect_replaced_the_router(rt):
    rt.define("w", from_function("w", lambda e: print("HANDLER PRINT")))
    cell = io.StringIO()
    # As %%capture or redirect_stdout do: a plain stream stands where the router was
    with contextlib.redirect_stdout(cell):
        rt.emit(1, "w")
        assert rt.wait("w", 5)
    assert "HANDLER PRINT" not in cell.getvalue()
    assert rt.traces("w")[0].stdout == "HANDLER PRINT\n"


def test_a_thread_a_handler_starts_cannot_close_the_kernels_stdout(kernel):
    # A handler hands work to a thread of its own (a library's background thread, say), and
    # that thread closes sys.stdout: later cells must still print.
    kernel.ok(
        """
import sys, threading
closed = threading.Event()

def close_it():
    try:
        sys.stdout.close()
    finally:
        closed.set()

@nw.worker("closer")
def closer(event):
    t = threading.Thread(target=close_it)
    t.start()
    t.join()
"""
    )
    kernel.ok("emit(1, 'closer')\nnw.wait('closer')\nassert closed.wait(30)")
    reply = kernel.run("print('still printing')")
    assert reply.status == "ok" and "still printing" in reply.stdout, reply.traceback


def test_a_run_that_starts_during_a_capture_cell_does_not_send_later_cells_output_there(kernel):
    # A run starts while a %%capture cell runs (sys.stdout is IPython's capture buffer then).
    # Later a handler sets sys.stdout = None and, while it is None, another run starts: the
    # stream put back must be the kernel's, not that old capture buffer (cells would print
    # into it, and nothing would show).
    kernel.ok(
        """
import sys, time

@nw.worker("quick")
def quick(event):
    return event

@nw.worker("breaker")
def breaker(event):
    sys.stdout = None
    nw.emit(2, "quick")  # a run starts while sys.stdout is None
    deadline = time.monotonic() + 30
    while nw.counts("quick")["done"] < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
"""
    )
    kernel.ok("%%capture captured\nemit(1, 'quick')\nnw.wait('quick')\nprint('in the capture')")
    kernel.ok("emit(1, 'breaker')\nnw.wait('breaker')")
    reply = kernel.run("print('shown')")
    assert reply.status == "ok" and "shown" in reply.stdout, (reply.stdout, reply.traceback)


def test_a_subshell_cell_that_closes_stdout_gets_its_reply_and_the_main_shell_still_prints(
    kernel,
):
    # ipykernel 7 runs a subshell's cells on a thread of its own, and flushes sys.stdout after
    # each: a close there must not make that flush raise (no reply would ever come).
    import queue

    kernel.ok("nw.emit(1, 'started'); nw.flush()")  # the runtime runs: its router is in place
    kc = kernel.kc
    kc.control_channel.send(kc.session.msg("create_subshell_request", {}))
    subshell = kc.get_control_msg(timeout=10)["content"]["subshell_id"]

    def in_subshell(code: str) -> str:
        request = kc.session.msg(
            "execute_request",
            {
                "code": code,
                "silent": False,
                "store_history": False,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": False,
            },
        )
        request["header"]["subshell_id"] = subshell
        kc.shell_channel.send(request)
        try:
            while True:
                reply = kc.get_shell_msg(timeout=15)
                if reply["parent_header"]["msg_id"] == request["header"]["msg_id"]:
                    return reply["content"]["status"]
        except queue.Empty:
            return "no reply"

    assert in_subshell("import sys\nsys.stdout.close()") == "ok"
    assert in_subshell("1 + 1") == "ok"
    assert "main ok" in kernel.ok("print('main ok')").stdout
