"""Live values (``nw.live``): the tracer and its views on handlers made here, then in a kernel
as a notebook user meets them."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

from nbworkers import handlers
from nbworkers.develop import live_view, tracer, values
from nbworkers.develop.live import run
from nbworkers.errors import ArgumentValueError
from tests.kernel import view_action, wait_for

HAS_PANDAS = importlib.util.find_spec("pandas") is not None
GOLDEN = Path(__file__).parent / "golden" / "live.json"


def cell(source: str, event=None, namespace=None, kind="worker", **kw):
    """Live values of a ``%%worker`` (or ``%%cron``) cell body run on ``event``."""
    handler = handlers.from_cell("w", textwrap.dedent(source), namespace or {}, kind=kind)
    return run("w", "t1", handler, event, None, **kw)


def body(live) -> list[str]:
    """The text form without its header (which says how long the run took)."""
    return str(live).splitlines()[1:]


LOOP = """\
total = 0
for i in range(event):
    total += i
if total > 100:
    print("big")
seen = {}
seen["total"] = total
print("sum", total)
len(seen)
total
"""


def test_a_loop_a_branch_not_taken_and_bare_expressions_in_text():
    live = cell(LOOP, 4)
    assert live.ok and live.result == 6
    assert body(live) == [
        "   1  total = 0               # total = 0",
        "   2  for i in range(event):  # i = 3   (\u00d75)",
        "   3      total += i          # total = 6   (\u00d74)",
        "   4  if total > 100:",
        '   5      print("big")        # (not reached)',
        "   6  seen = {}               # seen = {}",
        "   7  seen[\"total\"] = total   # seen = {'total': 6}",
        '   8  print("sum", total)     # \u00bb sum 6',
        "   9  len(seen)               # \u2192 1",
        "  10  total                   # \u2192 6",
        "printed:",
        "  sum 6",
    ]
    assert str(live).startswith("live values of 'w' on trace t1: ok \u00b7 ")


def test_an_exception_is_shown_at_its_line_and_never_raised():
    live = cell("x = [1, 2]\ny = x[event]\n'after'\n", 5)
    assert live.failed and live.error == "IndexError: list index out of range"
    assert body(live)[:3] == [
        "   1  x = [1, 2]    # x = [1, 2]",
        "   2  y = x[event]  # \u2717 IndexError: list index out of range",
        "   3  'after'       # (not reached)",
    ]
    assert body(live)[3] == "traceback:"
    assert 'File "<worker w #' in live.traceback and "y = x[event]" in live.traceback
    assert "failed: IndexError: list index out of range" in str(live).splitlines()[0]


def test_an_exception_raised_in_a_nested_function_shows_where_raised_only():
    source = """\
    def check(v):
        if v < 0:
            raise ValueError(f"negative: {v}")
        return v
    check(event)
    """
    live = cell(source, -3)
    assert live.show(3) == "\u2717 ValueError: negative: -3"
    assert live.show(5) == ""  # the caller's line shows it once, where it was raised
    assert live.runs(4) == 0 and live.show(4) == "(not reached)"


def test_pick_an_iteration_of_a_loop():
    live = cell("for i in range(event):\n    sq = i * i\n", 10)
    assert live.runs(2) == 10
    assert live.show(2) == "sq = 81"  # the last run
    assert [live.show(2, k) for k in (1, 2, 3, -3, -2, -1)] == [
        "sq = 0",
        "sq = 1",
        "sq = 4",
        "sq = 49",
        "sq = 64",
        "sq = 81",
    ]
    with pytest.raises(ArgumentValueError, match=r"run 5 was not kept \(kept: 1, 2, 3, 8, 9, 10\)"):
        live.show(2, 5)
    with pytest.raises(ArgumentValueError, match="line must be a line number of the handler"):
        live.show(7)
    second = live.iteration(2)
    assert body(second) == [
        "   1  for i in range(event):  # i = 1   (run 2 of \u00d711)",
        "   2      sq = i * i          # sq = 1   (run 2 of \u00d710)",
    ]
    not_kept = "   2      sq = i * i          # (run 5 of \u00d710 not kept)"
    assert body(live.iteration(5))[1] == not_kept
    assert body(cell("a = 1\n").iteration(2)) == ["   1  a = 1  # (ran once: no run 2)"]
    with pytest.raises(ArgumentValueError, match="k must be a run number"):
        live.iteration(0)


def test_a_hundred_thousand_iterations_finish_with_a_count_and_bounded_memory():
    live = cell("s = 0\nfor i in range(event):\n    s += i\ns\n", 100_000)
    assert live.ok and live.result == sum(range(100_000))
    assert live.runs(3) == 100_000
    assert len(live.records[3].kept()) == 2 * tracer.KEEP
    assert live.show(3, -1) == f"s = {sum(range(100_000))}"
    assert body(live)[2].endswith("(\u00d7100,000)")


def test_tracing_stops_at_its_cap_and_the_run_goes_on(monkeypatch):
    monkeypatch.setattr(tracer, "MAX_EVENTS", 1000)
    live = cell("s = 0\nfor i in range(event):\n    s += i\ns\n", 5000)
    assert live.ok and live.result == sum(range(5000))
    assert live.notes == ["tracing stopped after 1,000 lines; the run went on"]
    assert live.runs(3) < 1000


def test_a_time_limit_stops_the_handler_and_says_so():
    live = cell("n = 0\nwhile True:\n    n += 1\n", timeout_s=0.05)
    assert live.failed and live.error.startswith("LiveTimeout")
    assert "stopped at the time limit" in live.notes
    assert "stopped: the time limit passed" in str(live)


def test_an_interrupt_stops_the_run_and_shows_what_ran():
    live = cell("done = 1\nraise KeyboardInterrupt\nnever = 2\n")
    assert live.failed and live.error == "KeyboardInterrupt: "
    assert live.show(1) == "done = 1" and live.show(2) == "\u2717 KeyboardInterrupt: "
    assert live.show(3) == "(not reached)"


def test_what_the_handler_prints_is_captured_not_printed(capsys):
    live = cell("print('hello')\nprint('to stderr', file=__import__('sys').stderr)\n")
    assert live.printed == "hello\nto stderr\n"
    assert live.show(1) == "\u00bb hello"
    assert capsys.readouterr() == ("", "")


def test_a_cron_cell_has_no_event():
    live = cell("stamp = message\n'tick'\n", kind="cron")
    assert live.ok and live.result == "tick"
    assert live.show(1) == "stamp = None" and live.show(2) == "\u2192 'tick'"


def test_a_function_worker_with_a_closure_and_a_nested_function():
    offset = 10

    def handle(event):
        "Adds the offset."

        def twice(v):
            return v * 2

        doubled = twice(event) + offset
        [doubled]  # noqa: B018 - a bare expression, shown
        return doubled

    live = run("f", "t2", handlers.from_function("f", handle), 4, None)
    first = handle.__code__.co_firstlineno
    assert live.ok and live.result == 18 and live.notes == []
    assert live.first_lineno == first
    assert live.show(first + 4) == "\u2192 8"  # inside the nested function
    assert live.show(first + 6) == "doubled = 18"
    assert live.show(first + 7) == "\u2192 [18]"  # a bare expression
    assert live.show(first + 8) == "\u2192 18"
    assert live.show(first + 1) == "(no code on this line)"  # the docstring


def test_a_recursive_function_worker_shows_its_bare_expressions():
    live = run("f", "t2", handlers.from_function("f", countdown), 3, None)
    first = countdown.__code__.co_firstlineno
    assert live.ok and live.result == 0 and live.notes == []
    # Seven calls on 3, 2, 1 (each calls itself twice), all traced; the first run's value is
    # its own (recursive calls through the global name run the handler's original code)
    assert live.runs(first + 3) == 7 and live.show(first + 3, 1) == "\u2192 0"
    assert live.show(first + 4, -1) == "\u2192 0"


def test_a_handler_whose_source_cannot_be_read_still_shows_names():
    namespace: dict = {}
    exec("def handle(event):\n    x = event + 1\n    x\n    return x\n", namespace)
    handler = handlers.from_function("f", namespace["handle"])
    live = run("f", "t2", handler, 1, None)
    assert live.ok and live.result == 2
    assert live.notes[0].startswith("the handler's source was not found")
    assert live.records[2].latest().values[0][:1] == ["x"]


def test_a_handler_that_is_not_a_python_function_runs_and_says_why_nothing_shows():
    live = run("f", "t2", handlers.from_function("f", abs), -3, None)
    assert live.ok and live.result == 3 and live.records == {}
    assert live.notes[0] == (
        "the handler is a builtin_function_or_method, not a Python function: no values per line"
    )


def test_the_tracer_gives_back_the_trace_function_it_found():
    def previous(frame, event, arg):
        return None

    sys.settrace(previous)
    try:
        cell("a = 1\n")
        assert sys.gettrace() is previous
    finally:
        sys.settrace(None)


def test_values_are_one_bounded_line():
    assert values.show("a\nb") == "'a\\nb'"
    assert values.show(list(range(100))) == "[0, 1, 2, 3, 4, 5, 6, 7, ...]"
    assert len(values.show("x" * 10_000)) <= values.MAX_CHARS
    assert values.one_line("a\nb") == "a\u23ceb"

    class Broken:
        def __repr__(self):
            raise RuntimeError("no")

    assert values.show(Broken()).startswith("<Broken instance at 0x")


@pytest.mark.skipif(not HAS_PANDAS, reason="pandas is not installed (pip install pandas)")
def test_dataframes_series_and_arrays_show_shape_dtype_and_head():
    import numpy as np
    import pandas as pd

    df = pd.DataFrame({"a": [1, 2, 3, 4], "b": ["x", "y", "z", "w"]})
    shown = values.show(df)
    assert shown.startswith("DataFrame 4\u00d72 (a: int64, b: ")
    assert "a=1, b='x' | a=2, b='y' | a=3, b='z' | \u2026" in shown
    assert values.show(df["a"]) == "Series 'a' 4 \u00b7 int64 \u00b7 [1, 2, 3, \u2026]"
    zeros = "ndarray 2\u00d73 \u00b7 float64 \u00b7 [0.0, 0.0, 0.0, \u2026]"
    assert values.show(np.zeros((2, 3))) == zeros


def test_values_do_not_import_pandas_or_numpy():
    code = (
        "import sys; from nbworkers.develop import values; values.show([1, {'a': 2}]); "
        "assert 'pandas' not in sys.modules and 'numpy' not in sys.modules"
    )
    assert os.system(f'{sys.executable} -c "{code}"') == 0


def test_html_fades_lines_not_reached_lists_kept_runs_and_escapes():
    live = cell("for i in range(event):\n    s = '<b>' * i\nif s == 1:\n    no = 0\n", 9)
    shown = live._repr_html_()
    assert '<tr class="nbw-live-line nbw-live-unreached" style="opacity:0.4' in shown
    assert "<b>" not in shown.replace("<b>w</b>", "")  # the name is bold, the values escaped
    assert "s = &#x27;&lt;b&gt;&lt;b&gt;" in shown
    # Both loop lines list their first and last 3 runs, and how many between were not kept
    assert shown.count('class="nbw-live-run"') == 12
    assert "⋯ 4 runs not kept ⋯" in shown and "⋯ 3 runs not kept ⋯" in shown
    assert "<details" in shown and "\u00d79" in shown


def golden_cases() -> dict[str, str]:
    cases = {}
    for key, (source, event) in {
        "loop": (LOOP, 4),
        "error": ("x = [1]\ny = x[event]\n", 3),
        "many": ("for i in range(event):\n    s = i\n", 20),
    }.items():
        live = cell(source, event)
        live.duration_s = 0.0125
        if live.traceback:
            live.traceback = "Traceback (its cell's number varies)\n"
        cases[f"{key}_html"] = live._repr_html_()
        cases[f"{key}_text"] = str(live)
        cases[f"{key}_data"] = json.dumps(live_view.data(live), ensure_ascii=False)
    return cases


def test_the_live_html_and_text_are_exactly_as_pinned():
    cases = golden_cases()
    if os.environ.get("NBWORKERS_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(cases, indent=1, ensure_ascii=False) + "\n")
    pinned = json.loads(GOLDEN.read_text())
    assert set(cases) == set(pinned)
    for name, shown in cases.items():
        assert shown == pinned[name], name


# ----- in a kernel -------------------------------------------------------------------------

WAIT = "assert nw.wait(timeout=20)"
UNCHANGED = "(nw.counts('w'), [(t.id, t.result, t.error) for t in nw.traces('w')])"


def test_live_values_in_a_kernel_record_nothing_and_count_nothing(kernel):
    # Given a worker with a loop, a branch and a failure for some inputs, and two traces
    kernel.ok(
        "%%worker w --concurrency 1\n"
        "total = 0\n"
        "for i in range(event):\n"
        "    total += i\n"
        "if total > 100:\n"
        "    print('big')\n"
        "ratio = 10 / (total - 3)\n"
        "ratio"
    )
    kernel.ok(f"emit(4, 'w')\nemit(3, 'w')\n{WAIT}")
    before = kernel.eval(UNCHANGED)
    # When live values of the newest trace (3: total is 3, a division by zero) are computed
    assert kernel.eval("[t.input for t in nw.traces('w')]") == [3, 4]  # one at a time
    reply = kernel.ok("lv = nw.live('w')\nlv")
    # Then the failure shows at its line, the loop its count, the branch not taken is faded
    assert kernel.eval("lv.failed") and kernel.eval("lv.error") == (
        "ZeroDivisionError: division by zero"
    )
    text = kernel.eval("str(lv)")
    assert "   6  ratio = 10 / (total - 3)  # \u2717 ZeroDivisionError: division by zero" in text
    assert "   2  for i in range(event):    # i = 2   (\u00d74)" in text
    assert "   5      print('big')          # (not reached)" in text
    assert "   7  ratio                     # (not reached)" in text
    [shown] = [m for m in reply.outputs if m["msg_type"] == "execute_result"]
    html = shown["content"]["data"]["text/html"]
    assert "nbw-live-unreached" in html and "ZeroDivisionError" in html
    # The older trace (4) succeeds, and nothing was recorded or counted by either
    first = kernel.eval("nw.traces('w')[1].id")
    assert kernel.eval(f"nw.live('w', {first!r}).show(6)") == "ratio = 3.3333333333333335"
    assert kernel.eval(UNCHANGED) == before


def test_unknown_workers_and_traces_are_the_errors_of_replay(kernel):
    for call in ("nw.live('nobody')", "nw.replay('nobody')"):
        reply = kernel.run(call)
        assert reply.ename == "NBWorkersError"
        assert "no worker named 'nobody' is defined; run its cell first" in reply.evalue
    kernel.ok("%%worker w\nevent")
    reply = kernel.run("nw.live('w')")
    assert "worker 'w' has no trace to replay yet" in reply.evalue
    kernel.ok(f"emit(1, 'w')\n{WAIT}")
    reply = kernel.run("nw.live('w', 't999')")
    assert reply.ename == "NBWorkersError" and "has no trace 't999' (kept: t" in reply.evalue


@pytest.mark.skipif(not HAS_PANDAS, reason="pandas is not installed (pip install pandas)")
def test_a_dataframe_shows_its_shape_dtypes_and_head(kernel):
    kernel.ok(
        "%%worker frames\n"
        "import pandas as pd\n"
        "df = pd.DataFrame({'n': range(event), 'half': [i / 2 for i in range(event)]})\n"
        "df['n'].sum()"
    )
    kernel.ok(f"emit(500, 'frames')\n{WAIT}")
    shown = kernel.eval("nw.live('frames').show(2)")
    head = "df = DataFrame 500\u00d72 (n: int64, half: float64) \u00b7 n=0, half=0.0"
    assert shown.startswith(head)
    assert kernel.eval("nw.live('frames').show(3)") == "\u2192 np.int64(124750)"


def test_function_workers_crons_and_process_workers_run_here(kernel):
    kernel.ok("@nw.worker('f')\ndef f(event):\n    doubled = event * 2\n    return doubled\n")
    kernel.ok("%%worker p --executor processes\nimport os\npid = os.getpid()\nevent + 1")
    kernel.ok("%%cron hourly c\nwhen = message.enqueued_at\n'tick'")
    kernel.ok(f"emit(5, 'f')\nemit(5, 'p')\n{WAIT}")
    kernel.ok("assert nw.wait('p', timeout=60)")
    assert kernel.eval("nw.live('f').show(3)") == "doubled = 10"
    kernel_pid = kernel.eval("__import__('os').getpid()")
    assert kernel.eval("nw.live('p').show(2)") == f"pid = {kernel_pid}"  # here, not in the pool
    wait_for(kernel, "len(nw.traces('c')) == 1")
    assert kernel.eval("nw.live('c').show(2)") == "\u2192 'tick'"


def test_a_cell_shows_as_written_with_globals_classes_and_generators(kernel):
    kernel.ok("counter = 0")
    kernel.ok(
        "%%worker w\n"
        "global counter\n"
        "counter += event\n"
        "echoed = !echo hi\n"
        "class P:\n"
        "    def __init__(self, v):\n"
        "        self.v = v\n"
        "p = P(event)\n"
        "def gen(n):\n"
        "    yield from range(n)\n"
        "list(gen(2))"
    )
    kernel.ok(f"emit(5, 'w')\n{WAIT}")
    kernel.ok("lv = nw.live('w')")
    assert kernel.eval("lv.notes") == []
    assert kernel.eval("str(lv)").splitlines()[1:6] == [
        "   1  global counter",
        "   2  counter += event            # counter = 10",  # a global: it ran again
        "   3  echoed = !echo hi           # echoed = ['hi']",  # as written (IPython syntax)
        "   4  class P:",
        "   5      def __init__(self, v):",
    ]
    assert kernel.eval("lv.show(6)").startswith("self = <__main__.worker_w.<locals>.P object at 0x")
    assert kernel.eval("lv.show(7)").startswith("p = <__main__.worker_w.<locals>.P object")
    assert kernel.eval("lv.runs(4)") == 1
    assert kernel.eval("lv.show(10)") == "\u2192 [0, 1]" and kernel.eval("lv.result") == [0, 1]


def test_from_the_panel_the_workers_time_limit_stops_live_values(kernel):
    # Given a trace of a worker with a time limit, whose current code never ends
    kernel.ok("%%worker w --timeout 0.5\nn = event")
    kernel.ok("from nbworkers.widgets import panels\np = panels('w')[0]")
    kernel.ok(f"emit(1, 'w')\n{WAIT}")
    wait_for(kernel, "len(p.view.traces) == 1")
    kernel.ok("%%worker w --timeout 0.5\nn = event\nwhile True:\n    n += 1")
    kernel.ok("p = panels('w')[-1]")
    wait_for(kernel, "len(p.view.traces) == 1")
    kernel.ok("p.view.selected = p.view.traces[0]['id']")
    # When its live values are asked for from the panel
    view_action(kernel, "p", "live")
    # Then they stop at the time limit, and say so where the handler was
    wait_for(kernel, "p.view.live.get('state') == 'done'", timeout=30)
    shown = kernel.eval("p.view.live")
    assert shown["ok"] is False and shown["error"].startswith("LiveTimeout")
    # the line it was at, in red, says so; and a note under the lines
    halted = [line for line in shown["lines"] if "stopped: the time limit passed" in line["note"]]
    assert len(halted) == 1 and halted[0]["error"] is True
    assert "stopped at the time limit" in shown["notes"]
    assert kernel.eval("nw.counts('w')['failed']") == 0


def test_the_panel_shows_live_values_of_the_selected_trace(kernel):
    kernel.ok("%%worker w\nprint('saw', event)\nif event > 5:\n    big = True\nhalf = event / 2")
    kernel.ok("from nbworkers.widgets import panels\np = panels('w')[0]")
    kernel.ok(f"emit(4, 'w')\n{WAIT}")
    wait_for(kernel, "len(p.view.traces) == 1")
    assert kernel.eval("p.view.detail") == {}  # no trace selected: no Live values button
    kernel.ok("p.view.selected = p.view.traces[0]['id']")
    assert kernel.eval("p.view.detail['id']") == kernel.eval("p.view.selected")
    view_action(kernel, "p", "live")
    wait_for(kernel, "p.view.live.get('state') == 'done'")
    lines = kernel.eval(
        "{line['lineno']: (line['kind'], line['note']) for line in p.view.live['lines']}"
    )
    assert [kind for kind, _ in lines.values()] == ["values", "values", "faded", "values"]
    assert "saw 4" in lines[min(lines)][1] and lines[max(lines)][1] == "half = 2.0"
    assert kernel.eval("len(nw.traces('w'))") == 1  # no new trace
    # Selecting another trace clears them; an error says what went wrong, in the panel
    kernel.ok("p.view.selected = ''")
    assert kernel.eval("p.view.live") == {}
    kernel.ok("p._compute_live('t999', p._live_token, None)")
    failed = kernel.eval("p.view.live")
    assert failed["state"] == "error" and failed["error"].startswith("NBWorkersError")


def countdown(event):
    if event <= 0:
        return 0
    countdown(event - 1)  # a bare expression
    return countdown(event - 1)
