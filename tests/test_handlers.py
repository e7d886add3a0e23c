"""Turning cells and functions into handlers."""

from __future__ import annotations

import linecache
import random
import string
import traceback

import pytest

from nbworkers import handlers
from nbworkers.handlers import from_cell


def run_cell(source, event=None, ns=None, message=None):
    return handlers.from_cell("w", source, ns if ns is not None else {}).call(event, message)


def test_the_last_bare_expression_is_the_result():
    assert run_cell("x = event * 2\nx + 1", event=4) == 9
    assert run_cell("x = event * 2", event=4) is None
    assert run_cell("", event=4) is None


def test_globals_are_visible_and_locals_stay_private():
    ns = {"factor": 3}
    assert run_cell("y = [factor * i for i in range(event)]\nsum(y)", event=3, ns=ns) == 9
    assert "y" not in ns
    run_cell("global total\ntotal = event", event=7, ns=ns)
    assert ns["total"] == 7


def test_comprehensions_and_closures_see_run_locals():
    source = "k = 10\ndef f(v):\n    return v + k\n[f(i) for i in range(event)]"
    assert run_cell(source, event=2) == [10, 11]


def test_names_are_checked():
    for good in ["resize", "a", "fetch-prices", "x.y_z", "A" * 64]:
        assert handlers.check_name(good) == good
    for bad in ["", "a b", "a/b", "A" * 65, "é", None, 3]:
        with pytest.raises(ValueError, match="1 to 64 letters"):
            handlers.check_name(bad)


def test_a_syntax_error_is_raised_at_compile_time():
    with pytest.raises(SyntaxError):
        handlers.from_cell("w", "x = (", {})


def test_tracebacks_show_the_cell_source():
    h = handlers.from_cell("w", "a = 1\nraise ValueError(event)", {})
    with pytest.raises(ValueError) as info:
        h.call("boom", None)
    text = "".join(traceback.format_exception(info.value))
    assert "raise ValueError(event)" in text
    filename = info.traceback[-1].frame.code.raw.co_filename
    assert linecache.getline(filename, 2).strip() == "raise ValueError(event)"


def test_a_cells_version_counts_that_workers_definitions_only():
    # A new user read "<worker bad #2>" in the first traceback of "bad" as a second version:
    # the number counted every cell defined in the kernel.
    name = "versions-" + "".join(random.choices(string.ascii_lowercase, k=8))
    first = handlers.from_cell(name, "1", {})
    other = handlers.from_cell(name + "-other", "1", {})
    cron = handlers.from_cell(name, "1", {}, kind="cron")
    again = handlers.from_cell(name, "2", {})
    assert first.filename == f"<worker {name} #1>"
    assert other.filename == f"<worker {name}-other #1>"
    assert cron.filename == f"<cron {name} #1>"
    assert again.filename == f"<worker {name} #2>"  # and the first keeps its own source
    assert linecache.getline(first.filename, 1) == "1"
    assert linecache.getline(again.filename, 1) == "2"


def test_functions_take_the_event_or_event_and_message():
    assert handlers.from_function("w", lambda e: e + 1).call(1, "m") == 2
    assert handlers.from_function("w", lambda e, m: (e, m)).call(1, "m") == (1, "m")
    assert handlers.from_function("w", abs).call(-3, "m") == 3
    with pytest.raises(TypeError, match="function"):
        handlers.from_function("w", 3)


@pytest.mark.parametrize("body", ["yield event", "x = yield", "await thing()"])
def test_generator_and_async_cells_are_refused(body):
    with pytest.raises(SyntaxError, match="top level"):
        from_cell("w", body, {})
    from_cell("w", "def gen():\n    yield 1\nlist(gen())", {})  # nested is fine
