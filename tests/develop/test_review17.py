"""Review of #17 (live values and tries), as users break them: each test is a problem found."""

from __future__ import annotations

import functools
import textwrap

import pytest

from nbworkers import handlers
from nbworkers.develop import tryout, tryout_table, values
from nbworkers.develop.live import run
from nbworkers.errors import ArgumentValueError
from tests.kernel import view_action, wait_for


def cell(source: str, event=None, namespace=None, kind="worker", **kw):
    """Live values of a ``%%worker`` cell body run on ``event``."""
    handler = handlers.from_cell("w", textwrap.dedent(source), namespace or {}, kind=kind)
    return run("w", "t1", handler, event, None, **kw)


def times_ten(fn):
    @functools.wraps(fn)
    def wrapper(event):
        return fn(event) * 10

    return wrapper


@times_ten
def wrapped(event):
    a = event + 1
    return a


def test_live_values_of_a_function_under_another_decorator_show_its_lines():
    # Given an @nw.worker function wrapped by a decorator of its own (functools.wraps)
    live = run("f", "t2", handlers.from_function("f", wrapped), 1, None)
    first = wrapped.__wrapped__.__code__.co_firstlineno  # the decorator's line
    # Then its lines show what they did (they ran: the result is 20), not "(not reached)"
    assert live.ok and live.result == 20
    assert live.show(first + 2) == "a = 2"
    assert live.show(first + 3) == "\u2192 2"


def test_a_live_traceback_shows_no_frame_of_the_tracer():
    # A recursion too deep fails in the tracer's own call event: the user's frames only
    live = cell("def f(n):\n    return 0 if n == 0 else f(n - 1)\nf(event)\n", 100_000)
    assert live.failed and live.error.startswith("RecursionError")
    assert "nbworkers" not in live.traceback
    assert 'File "<worker w #' in live.traceback


CRON_TRY = """\
%%cron 1h tick --try
'new'
"""


def test_a_cron_cell_can_be_tried_and_applying_keeps_it_a_cron(kernel):
    # Given a cron that ran once
    kernel.ok("%%cron 1h tick\n'old'")
    kernel.ok("assert nw.wait('tick', 20)")
    # When its cell is run with --try
    reply = kernel.ok(CRON_TRY)
    # Then the table compares the old and new results, and the cron keeps its code
    assert "'old'" in reply.value and "'new'" in reply.value
    assert kernel.eval("nw.traces('tick')[0].result") == "old"
    assert kernel.eval("len(nw.traces('tick'))") == 1
    # And applying it keeps it a cron, on its schedule
    kernel.ok("nw.apply('tick')")
    assert kernel.eval("nw.next_run('tick') is not None") is True
    kernel.ok(
        "nw.run_now('tick')\nimport time\n_d = time.time() + 20\n"
        "while len(nw.traces('tick')) < 2 and time.time() < _d: time.sleep(0.02)"
    )
    assert kernel.eval("nw.traces('tick')[0].result") == "new"


@pytest.fixture
def nw(fresh_runtime):
    """nbworkers on a fresh runtime, with no try pending from another test."""
    import nbworkers

    tryout._pending.clear()
    yield nbworkers
    tryout._pending.clear()


def test_an_interrupted_try_shows_the_row_it_stopped_in_with_what_it_printed(nw):
    # Given a worker with three traces
    nw.worker("w", concurrency=1)(lambda e: e)
    nw.emit_many([1, 2, 3], "w")
    assert nw.wait("w", 10)

    # When the tried code hangs on the second and the user presses Ctrl-C
    def hangs(event):
        print("working on", event)
        if event == 2:
            raise KeyboardInterrupt
        return event

    result = nw.try_code("w", hangs)
    # Then the table has the row it stopped in, with what it printed, as neither changed nor
    # newly failing
    assert result.interrupted and [r.input for r in result.rows] == ["3", "2"]
    stopped = result.rows[1]
    assert stopped.printed == "working on 2\n" and stopped.new_error
    assert "interrupted" in stopped.new and stopped.changed is None
    assert "1 unknown" in result.summary() and "newly failing" not in result.summary()
    assert (nw.counts("w")["done"], len(nw.traces("w"))) == (3, 3)


def test_an_input_that_cannot_be_unpickled_is_unknown_not_newly_failing(nw):
    nw.worker("w")(lambda e: e)
    nw.emit(1, "w")
    assert nw.wait("w", 10)
    trace = nw.traces("w")[0]
    # The trace's input cannot be unpickled any more (its class was removed, say)
    row = tryout.run_on(handlers.from_function("w", lambda e: e), _unpicklable(trace), "w")
    result = tryout_table.TryResult("w", 10, [row])
    assert row.changed is None and not row.broken
    assert result.summary().endswith("0 changed, 0 unchanged, 1 unknown.")


def _unpicklable(trace):
    import copy
    import pickle

    broken = copy.copy(trace)
    broken.input_data = pickle.dumps(1)[:-3]  # cut short
    return broken


def test_ctrl_c_on_a_try_that_never_ends_shows_its_row_in_the_kernel(kernel, tmp_path):
    import threading
    import time

    kernel.ok("%%worker w\nevent")
    kernel.ok("emit(1, 'w')\nassert nw.wait('w', 20)")
    started = tmp_path / "started"
    cell = (
        "%%worker w --try\nprint('before the loop')\n"
        f"open({str(started)!r}, 'w').close()\nwhile True:\n    pass\n"
    )

    def interrupt_once_started():
        deadline = time.monotonic() + 30
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        kernel.km.interrupt_kernel()

    threading.Thread(target=interrupt_once_started, daemon=True).start()
    reply = kernel.ok(cell)
    assert "Interrupted" in reply.value and "before the loop" in reply.value
    assert "stopped here (interrupted)" in kernel.eval("_.rows[0].new")
    assert kernel.eval("(nw.counts('w')['done'], len(nw.traces('w')))") == (1, 1)


def test_asking_for_a_run_a_line_never_had_says_how_many_it_had():
    live = cell("for i in range(event):\n    sq = i * i\n", 2)
    with pytest.raises(ArgumentValueError, match=r"line 2 ran 2 times: there is no run 5"):
        live.show(2, 5)
    with pytest.raises(ArgumentValueError, match=r"line 2 ran 2 times: there is no run -3"):
        live.show(2, -3)
    with pytest.raises(ArgumentValueError, match="k must be a run number"):
        live.show(2, 0)


def test_a_handler_printing_megabytes_shows_a_bounded_view_and_keeps_it_all(nw):
    # Given a worker whose run printed 10 MB (a progress line in a long loop, say)
    nw.worker("big", concurrency=1)(_prints)
    nw.emit(10_000_000, "big")
    assert nw.wait("big", 30)
    # Its live values and a try show the start of it, and say how much more there is
    live = nw.live("big")
    tried = nw.try_code("big", _prints)
    for shown in (live._repr_html_(), str(live), tried._repr_html_(), repr(tried)):
        assert len(shown) < 50_000 and "more characters)" in shown
    # while the whole of it is kept
    assert len(live.printed) == len(tried.rows[0].printed) == 10_000_001


def _prints(event):
    print("y" * event)
    return len("x" * event)


LIVE_THREADS = "sum(t.name == 'nbworkers-live' for t in __import__('threading').enumerate())"


def test_panel_live_values_of_code_that_never_ends_stop_with_nbworkers(kernel):
    # Given a worker with no time limit whose current code never ends
    kernel.ok("%%worker w\nn = event")
    kernel.ok("from nbworkers.widgets import panels\np = panels('w')[0]")
    kernel.ok("emit(1, 'w')\nassert nw.wait('w', 20)")
    wait_for(kernel, "len(p.view.traces) == 1")
    kernel.ok("%%worker w\nn = event\nwhile True:\n    n += 1")
    kernel.ok("p = panels('w')[-1]")
    wait_for(kernel, "len(p.view.traces) == 1")
    kernel.ok("p.view.selected = p.view.traces[0]['id']")
    # When its live values are asked for from the panel, twice
    view_action(kernel, "p", "live")
    wait_for(kernel, f"{LIVE_THREADS} == 1")
    view_action(kernel, "p", "live")
    # Then the first run stops when the second is asked for (its values would not be shown)
    wait_for(kernel, "p.view.live.get('state') == 'running'")
    wait_for(kernel, f"{LIVE_THREADS} == 1", timeout=20)
    # And selecting no trace stops the second; so would nbworkers stopping
    kernel.ok("p.view.selected = ''")
    wait_for(kernel, f"{LIVE_THREADS} == 0", timeout=20)
    kernel.ok("p.view.selected = p.view.traces[0]['id']")
    view_action(kernel, "p", "live")
    wait_for(kernel, f"{LIVE_THREADS} == 1")
    kernel.ok("nw.shutdown()")
    wait_for(kernel, f"{LIVE_THREADS} == 0", timeout=20)


def test_a_lambda_runs_as_part_of_its_line_and_hides_no_value():
    # A key function called once per item: its calls are not runs of the line
    live = cell("ys = sorted(event, key=lambda r: -r)\nlen(ys)\n", [1, 2, 3])
    assert live.runs(1) == 1 and live.show(1) == "ys = [3, 2, 1]"
    live = cell("f = lambda x: x + 1\nys = [f(i) for i in event]\n", [1, 2])
    assert live.runs(1) == 1 and "<lambda> at 0x" in live.show(1)
    assert live.show(2) == "ys = [2, 3]"
    # An exception raised in one shows at the line that called it
    live = cell("f = lambda x: 1 / x\nf(event)\n", 0)
    assert live.show(2) == "\u2717 ZeroDivisionError: division by zero"


def test_a_lambda_worker_is_still_traced():
    live = run("f", "t2", handlers.from_function("f", lambda e: [e] * 2), 1, None)
    assert live.ok and live.result == [1, 1]
    assert live.runs(live.first_lineno) == 1


def test_live_refuses_a_time_limit_that_is_not_a_number_of_seconds(nw):
    nw.worker("w")(double)
    nw.emit(1, "w")
    assert nw.wait("w", 10)
    for bad in ("5", -1, 0, float("nan"), True):
        with pytest.raises(ArgumentValueError, match="timeout_s must be a number of seconds"):
            nw.live("w", timeout_s=bad)
    assert nw.live("w", timeout_s=5).ok


def test_a_try_refuses_a_concurrency_its_apply_would_refuse(nw):
    nw.worker("w")(double)
    nw.emit(1, "w")
    assert nw.wait("w", 10)
    for bad in (0, "x", 1.5):
        with pytest.raises(ArgumentValueError, match="concurrency must be a whole number"):
            nw.try_code("w", double, concurrency=bad)
    assert tryout.pending("w") is None


def double(event):
    return event * 2


class _Key:
    """A dict key that counts how often it is compared (a sort would compare them)."""

    compared = 0

    def __init__(self, n):
        self.n = n

    def __lt__(self, other):
        _Key.compared += 1
        return self.n < other.n

    def __repr__(self):
        return f"K{self.n}"


def test_a_dict_or_set_is_shown_in_its_own_order_without_sorting_it():
    # A dict keeps insertion order; sorting it at each run of a loop made a loop that fills a
    # dict take time in the square of its size (40,000 items: ten seconds)
    assert values.show({"b": 1, "a": 2}) == "{'b': 1, 'a': 2}"
    _Key.compared = 0
    keys = [_Key(n) for n in (3, 1, 2)]
    assert values.show(dict.fromkeys(keys, 0)) == "{K3: 0, K1: 0, K2: 0}"
    assert values.show(set(keys)).startswith("{K") and values.show(frozenset(keys))
    assert _Key.compared == 0
    live = cell("d = {}\nfor i in event:\n    d[i] = i\n", [5, 4])
    assert live.show(3) == "d = {5: 5, 4: 4}"


class _Chatty:
    """A value whose __repr__ prints (a debug line left in a class, say)."""

    def __repr__(self):
        print("repr called")
        return "Chatty()"


def test_what_a_values_repr_prints_is_not_the_handlers_output():
    live = cell("c = event\nprint('mine')\n[c]\n", _Chatty())
    assert live.printed == "mine\n"
    assert live.show(1) == "c = Chatty()" and live.show(2) == "\u00bb mine"
    assert live.show(3) == "\u2192 [Chatty()]"


def test_live_values_from_inside_a_run_are_refused_as_a_try_is(nw):
    nw.worker("w")(double)
    nw.emit(1, "w")
    assert nw.wait("w", 10)
    nw.worker("inner")(lambda e: str(nw.live("w")))
    nw.emit(1, "inner")
    assert nw.wait("inner", 10)
    error = nw.traces("inner")[0].error
    assert error and "call it from a cell, not from inside a run of 'inner'" in error


def test_a_cron_cell_tried_before_it_ever_ran_is_called_a_cron(nw):
    from nbworkers import schedule

    handler = handlers.from_cell("tick", "1", {}, kind="cron")
    result = tryout.try_handler("tick", handler, plan=schedule.parse("1h"))
    assert result.summary().startswith("Nothing to try on yet: cron 'tick' has no traces")
