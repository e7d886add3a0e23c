"""Trying new code on a worker's traces before it goes live (``nw.try_code``, ``nw.apply``,
``%%worker NAME --try``): on the runtime of this process, then in a real kernel."""

from __future__ import annotations

import pytest

from nbworkers.develop import tryout
from nbworkers.errors import ArgumentTypeError, ArgumentValueError, NBWorkersError
from tests.kernel import click, wait_for


@pytest.fixture
def nw(fresh_runtime):
    """nbworkers on a fresh runtime, with no try pending from another test."""
    import nbworkers

    tryout._pending.clear()
    yield nbworkers
    tryout._pending.clear()


def double(event):
    return event * 2


def define_with_traces(nw, name="double", handler=double, events=range(10)):
    nw.worker(name, concurrency=1)(handler)  # one at a time: traces in the order emitted
    nw.emit_many(list(events), name)
    assert nw.wait(name, 10)


def live_handler(nw, name):
    return next(d.handler for d in nw.api.runtime().definitions() if d.name == name)


def test_a_try_over_ten_traces_shows_the_one_changed_result(nw):
    define_with_traces(nw)
    live = live_handler(nw, "double")
    before = (nw.counts("double"), [t.id for t in nw.traces("double")])

    result = nw.try_code("double", lambda e: "three" if e == 3 else e * 2)

    assert [r.trace_id for r in result.rows] == [t.id for t in nw.traces("double")]
    assert [r.input for r in result.rows] == [repr(e) for e in reversed(range(10))]
    changed = result.changed
    assert [(r.input, r.old, r.new) for r in changed] == [("3", "6", "'three'")]
    assert all(r.changed is False and r.old == r.new for r in result.rows if r not in changed)
    assert "1 changed, 9 unchanged" in result.summary()
    # Nothing recorded, nothing counted, and the live code is the old one
    assert (nw.counts("double"), [t.id for t in nw.traces("double")]) == before
    assert live_handler(nw, "double") is live
    nw.emit(3, "double")
    assert nw.wait("double", 10) and nw.traces("double")[0].result == 6


def test_the_worker_runs_its_live_code_on_new_messages_during_a_try(nw):
    define_with_traces(nw, events=[1, 2])
    seen = []

    def new_code(event):
        # While the try runs here, a new message goes through the live (old) code
        nw.emit(100, "double")
        assert nw.wait("double", 10)
        seen.append(nw.traces("double")[0].result)
        return event * 3

    result = nw.try_code("double", new_code, n=1)
    assert seen == [200]
    assert [(r.input, r.old, r.new) for r in result.rows] == [("2", "4", "6")]


def test_only_the_last_n_traces_are_tried_and_replays_are_left_out(nw):
    define_with_traces(nw, events=range(5))
    nw.replay("double")
    assert nw.traces("double")[0].replay
    result = nw.try_code("double", double, n=3)
    assert [r.input for r in result.rows] == ["4", "3", "2"]
    assert not result.changed


def test_errors_and_output_of_the_tried_code_stay_in_their_rows(nw):
    define_with_traces(nw, events=[1, 2, 3])

    def new_code(event):
        print("trying", event)
        if event == 2:
            raise ValueError(f"bad {event}")
        if event == 1:
            raise SystemExit("the code exits")
        return event * 2

    result = nw.try_code("double", new_code)
    by_input = {r.input: r for r in result.rows}
    assert by_input["2"].new == "ValueError: bad 2" and by_input["2"].new_error
    assert 'raise ValueError(f"bad {event}")' in by_input["2"].traceback
    assert "nbworkers/develop" not in by_input["2"].traceback
    assert by_input["1"].new == "SystemExit: the code exits"
    assert by_input["3"].new == "6" and not by_input["3"].changed
    order = [t.input for t in nw.traces("double")]  # runs ended in any order
    assert [r.printed for r in result.rows] == [f"trying {e}\n" for e in order]
    assert "2 changed (2 newly failing), 1 unchanged" in result.summary()
    text = repr(result)
    assert "ValueError: bad 2" in text and "printed: trying 2" in text
    html = result._repr_html_()
    assert "printed (1 line)</summary>" in html and "traceback</summary>" in html


def test_a_fix_of_failing_runs_is_shown_as_fixed(nw):
    def parse(event):
        return int(event)

    define_with_traces(nw, "parse", parse, ["1", "N/A", "3"])
    result = nw.try_code("parse", "int(event) if event.isdigit() else None")
    rows = {r.input: r for r in result.rows}
    assert rows["'N/A'"].old == "ValueError: invalid literal for int() with base 10: 'N/A'"
    assert rows["'N/A'"].old_error and rows["'N/A'"].new == "None" and rows["'N/A'"].fixed
    assert "1 changed (1 fixed), 2 unchanged" in result.summary()


def test_a_ctrl_c_during_a_try_ends_it_with_the_rows_so_far(nw):
    define_with_traces(nw, events=[1, 2, 3])

    def new_code(event):
        if event == 2:
            raise KeyboardInterrupt
        return event

    result = nw.try_code("double", new_code)
    order = [t.input for t in nw.traces("double")]  # runs ended in any order
    # The rows before, and the one it stopped in (review17)
    assert [r.input for r in result.rows] == [repr(e) for e in order[: order.index(2) + 1]]
    assert result.interrupted
    assert "Interrupted" in result.summary()


def test_apply_makes_the_tried_code_live_with_its_options(nw):
    define_with_traces(nw, events=[1])
    result = nw.try_code("double", lambda e: e * 10, retries=2, timeout=5.0, concurrency=2)
    assert tryout.pending("double") is result._tried
    nw.apply("double")
    definition = next(d for d in nw.api.runtime().definitions() if d.name == "double")
    assert definition.handler is result._tried.handler
    assert (definition.policy.retries, definition.policy.timeout_s) == (2, 5.0)
    assert definition.concurrency == 2
    nw.emit(4, "double")
    assert nw.wait("double", 10) and nw.traces("double")[0].result == 40
    # Applied once: there is nothing left to apply
    with pytest.raises(NBWorkersError, match="--try first"):
        nw.apply("double")
    with pytest.raises(NBWorkersError, match="already live"):
        result.apply()


def test_apply_with_nothing_tried_says_to_try_first(nw):
    with pytest.raises(NBWorkersError, match=r"run its cell with --try first"):
        nw.apply("double")


def test_a_worker_with_no_traces_has_nothing_to_try_on_and_nothing_changes(nw):
    nw.worker("double")(double)
    live = live_handler(nw, "double")
    result = nw.try_code("double", lambda e: e)
    assert result.rows == [] and "Nothing to try on yet" in repr(result)
    assert "no traces" in result._repr_html_()
    assert tryout.pending("double") is None and live_handler(nw, "double") is live
    with pytest.raises(NBWorkersError, match="--try first"):
        nw.apply("double")


def test_a_newer_try_or_a_new_definition_makes_an_older_try_stale(nw):
    define_with_traces(nw, events=[1])
    first = nw.try_code("double", lambda e: 1)
    second = nw.try_code("double", lambda e: 2)
    with pytest.raises(NBWorkersError, match="newer try"):
        first.apply()
    nw.worker("double")(lambda e: 3)  # defined again, not through the try
    with pytest.raises(NBWorkersError, match=r"defined again \(or nbworkers restarted\) since"):
        second.apply()


def test_a_cell_source_is_compiled_in_the_given_namespace(nw):
    define_with_traces(nw, events=[1, 2])
    result = nw.try_code("double", "print('n', event)\nevent + OFFSET", namespace={"OFFSET": 5})
    assert [(r.new, r.printed) for r in result.rows] == [("7", "n 2\n"), ("6", "n 1\n")]
    with pytest.raises(SyntaxError) as info:
        nw.try_code("double", "event +", namespace={})
    assert "Nothing was tried" in "".join(info.value.__notes__)


def test_a_cron_is_tried_with_no_input_and_stays_a_cron_when_applied(nw):
    nw.cron("1h", name="tick")(lambda: "old")
    assert nw.wait("tick", 10)
    result = nw.try_code("tick", "message.worker + ' new'", namespace={})
    assert [(r.input, r.old, r.new) for r in result.rows] == [("None", "'old'", "'tick new'")]
    nw.apply("tick")
    definition = next(d for d in nw.api.runtime().definitions() if d.name == "tick")
    assert definition.schedule is not None and definition.handler is result._tried.handler


def test_bad_arguments_are_refused_clearly(nw):
    define_with_traces(nw, events=[1])
    with pytest.raises(ArgumentValueError, match="at least 1"):
        nw.try_code("double", double, n=0)
    with pytest.raises(ArgumentTypeError, match="a str\\) or a function"):
        nw.try_code("double", 42)
    with pytest.raises(ArgumentValueError, match="not a valid worker name"):
        nw.try_code("bad name", double)


def test_a_try_from_inside_a_run_is_refused(nw):
    define_with_traces(nw, events=[1])
    nw.worker("inner")(lambda e: nw.try_code("double", double))
    nw.emit(1, "inner")
    assert nw.wait("inner", 10)
    assert "call it from a cell, not from inside a run of 'inner'" in nw.traces("inner")[0].error


class Gone:
    """A class whose instances are emitted, then removed from its module."""


def test_an_input_that_cannot_be_unpickled_any_more_is_said_in_its_row(nw, monkeypatch):
    define_with_traces(nw, "keep", lambda e: "kept", [Gone()])
    monkeypatch.delattr(__import__(__name__, fromlist=["Gone"]), "Gone")
    result = nw.try_code("keep", lambda e: "new")
    (row,) = result.rows
    assert row.new_error and "cannot be unpickled" in row.new and row.changed is None
    assert "1 unknown" in result.summary()


# ----- in a kernel ---------------------------------------------------------------------------


def test_try_cell_then_apply_in_a_kernel(kernel):
    # Given a worker with 10 traces
    kernel.ok("%%worker price\nround(event * 1.2, 2)")
    kernel.ok("nw.emit_many(list(range(10)), 'price')\nassert nw.wait('price', 10)")
    kernel.ok("before = nw.counts('price'); live = nw.api.runtime().definitions()[0].handler")
    # When new code is tried on them (it changes the result of one input)
    reply = kernel.ok(
        "%%worker price --try --retries 2 --timeout 5 --concurrency 2\n"
        "0 if event == 7 else round(event * 1.2, 2)"
    )
    # Then the table shows one changed row of ten, as a widget with HTML and text beside it
    (result,) = [m for m in reply.outputs if m["msg_type"] == "execute_result"]
    data = result["content"]["data"]
    assert "application/vnd.jupyter.widget-view+json" in data
    assert "1 changed, 9 unchanged" in data["text/html"]
    assert "1 changed, 9 unchanged" in data["text/plain"]
    kernel.ok("r = _")
    assert kernel.eval("[(row.input, row.old, row.new) for row in r.changed]") == [
        ("7", "8.4", "0")
    ]
    # and the worker still runs its old code, counts untouched
    assert kernel.eval("nw.api.runtime().definitions()[0].handler is live")
    assert kernel.eval("nw.counts('price') == before and len(nw.traces('price')) == 10")
    kernel.ok("emit(7, 'price')\nassert nw.wait('price', 10)")
    assert kernel.eval("nw.traces('price')[0].result") == 8.4
    # When Apply is clicked in the front end
    assert "--try line" in kernel.eval("r.apply_button.tooltip")
    click(kernel, "r.apply_button")
    wait_for(kernel, "r.apply_button.description == 'Applied'")
    # Then the tried code is live, with the options of its --try line
    kernel.ok("d = nw.api.runtime().definitions()[0]")
    assert kernel.eval("d.handler is r._tried.handler and d.concurrency == 2")
    assert kernel.eval("(d.policy.retries, d.policy.timeout_s)") == (2, 5.0)
    kernel.ok("emit(7, 'price')\nassert nw.wait('price', 10)")
    assert kernel.eval("nw.traces('price')[0].result") == 0
    assert "now live" in kernel.eval("r.notice.value")
    # and there is nothing left to apply
    reply = kernel.run("nw.apply('price')")
    assert reply.ename == "NBWorkersError" and "--try first" in reply.evalue


def test_try_then_nw_apply_or_running_the_cell_in_a_kernel(kernel):
    # A worker with no traces: nothing to try on, nothing changes (one run at a time, so that
    # its traces are in emit order)
    kernel.ok("%%worker w --concurrency 1\nevent")
    reply = kernel.ok("%%worker w --try\nevent + 1")
    assert "Nothing to try on yet" in reply.value and "no traces" in reply.value
    reply = kernel.run("nw.apply('w')")
    assert reply.ename == "NBWorkersError" and "run its cell with --try first" in reply.evalue
    # Tried on 3 traces (--try 3 of 5), then applied with nw.apply
    kernel.ok("nw.emit_many(list(range(5)), 'w')\nassert nw.wait('w', 10)")
    reply = kernel.ok("%%worker w --try 3\nprint('got', event)\nevent + 1")
    assert "3 traces: 3 changed" in reply.value and "printed: got 4" in reply.value
    kernel.ok("nw.apply('w')\nemit(10, 'w')\nassert nw.wait('w', 10)")
    assert kernel.eval("nw.traces('w')[0].result") == 11
    # Running the cell without --try makes it live and drops the pending try
    kernel.ok("%%worker w --try\nevent + 2")
    kernel.ok("%%worker w\nevent + 3")
    reply = kernel.run("nw.apply('w')")
    assert reply.ename == "NBWorkersError" and "--try first" in reply.evalue
    kernel.ok("emit(10, 'w')\nassert nw.wait('w', 10)")
    assert kernel.eval("nw.traces('w')[0].result") == 13
    # A bad count is a usage error
    reply = kernel.run("%%worker w --try 0\nevent")
    assert reply.ename == "UsageError" and "at least 1" in reply.evalue
