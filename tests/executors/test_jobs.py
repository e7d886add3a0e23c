"""What a run sent to a pool process carries (executors/jobs.py) and how the far side runs it
(executors/child.py): the environment only when it changed, the event as stored when that
unpickles the same, and the same outcome as before those savings."""

from __future__ import annotations

import os
import pickle
import sys

import cloudpickle
import pytest

from nbworkers import handlers, output
from nbworkers.executors import child, jobs
from nbworkers.message import Message


def cell(source: str, **names):
    return handlers.from_cell("w", source, {"__name__": "__main__", **names})


def message_of(event) -> Message:
    return Message(7, "w", 1.0, 1, pickle.dumps(event, protocol=pickle.HIGHEST_PROTOCOL))


def parts(job: bytes):
    env, _call, data, _meta = pickle.loads(job)
    return env, data


def test_the_environment_goes_again_only_when_it_changed(tmp_path, monkeypatch):
    h = cell("event")
    m = message_of(1)
    first, env = jobs.make(h, 1, m, "processes")
    assert parts(first)[0] == env and env["cwd"] == os.getcwd()
    # The same again: the process has it
    again, same = jobs.make(h, 1, m, "processes", sent=env)
    assert parts(again)[0] is None and same == env
    # A changed folder (%cd) or import path goes with the next job
    monkeypatch.chdir(tmp_path)
    moved, new_env = jobs.make(h, 1, m, "processes", sent=env)
    assert parts(moved)[0]["cwd"] == str(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))
    extended, newer = jobs.make(h, 1, m, "processes", sent=new_env)
    assert parts(extended)[0]["path"] == sys.path and newer != new_env


class Local:  # a class of a module: found by name on the far side
    def __init__(self, x):
        self.x = x


@pytest.mark.parametrize("event", [5, "text", {"a": [1, 2.5, None]}, b"raw"])
def test_a_plain_event_goes_as_it_was_stored(event):
    # (stored with another protocol than cloudpickle's: the bytes tell which was sent)
    stored = pickle.dumps(event, protocol=2)
    job, _ = jobs.make(cell("event"), event, message_of(event), "processes", stored=stored)
    assert parts(job)[1] == stored
    assert cloudpickle.loads(parts(job)[1]) == event


def test_an_event_of_a_notebook_class_goes_by_value(monkeypatch):
    # A class defined in the notebook is __main__'s: its stored pickle names it, which the
    # far side (no such class there) could not load; cloudpickle sends it by value instead.
    monkeypatch.setattr(Local, "__module__", "__main__")
    monkeypatch.setattr(sys.modules["__main__"], "Local", Local, raising=False)
    m = message_of(Local(3))
    assert b"__main__" in m.data
    job, _ = jobs.make(cell("event"), Local(3), m, "processes", stored=m.data)
    monkeypatch.delattr(sys.modules["__main__"], "Local")  # as in a pool process
    sent = parts(job)[1]
    assert sent != m.data
    assert cloudpickle.loads(sent).x == 3


def run_far(job: bytes) -> dict:
    child.active = True
    return child.run_job(job, local=True, capture=output.Capture())


@pytest.mark.parametrize("result", [5, 2.5, "s", b"b", True, 1j, [1, 2], {"k": (1,)}])
def test_a_result_comes_back_the_same_pickled_either_way(result):
    h = cell("event")
    m = message_of(result)
    job, env = jobs.make(h, result, m, "processes", stored=m.data)
    outcome = run_far(job)
    assert outcome["error"] is None
    assert pickle.loads(outcome["result_data"]) == result
    # and again with the environment left out: the far side keeps the last one
    again, _ = jobs.make(h, result, m, "processes", stored=m.data, sent=env)
    assert pickle.loads(run_far(again)["result_data"]) == result


def test_two_cells_of_the_same_code_keep_their_own_names_in_tracebacks():
    first = cell("raise ValueError(event)")
    second = cell("raise ValueError(event)")
    assert first.filename != second.filename
    for h, tag in ((first, "one"), (second, "two"), (first, "three")):
        job, _ = jobs.make(h, tag, message_of(tag), "processes")
        error = run_far(job)["error"]
        assert f'File "{h.filename}"' in error and f"ValueError: {tag}" in error


def test_one_cell_name_from_two_kernels_shows_each_kernels_own_lines(monkeypatch):
    # Two kernels (or a kernel before and after a restart) sharing a Dask cluster each number
    # their cells from 1: the same filename, and code that compares equal when the cells
    # differ only in a comment. The far side showed the first kernel's line for both.
    tracebacks = []
    for version in ("ONE", "TWO", "ONE"):
        monkeypatch.setattr(handlers, "_versions", type(handlers._versions)())  # a new kernel
        h = cell(f"raise KeyError(event)  # {version}")
        assert h.filename == "<worker w #1>"
        job, _ = jobs.make(h, "k", message_of("k"), "processes")
        tracebacks.append(run_far(job)["error"])
    shown = [t for t, v in zip(tracebacks, ("ONE", "TWO", "ONE"), strict=True) if f"# {v}" in t]
    assert len(shown) == 3, tracebacks


def method_code(cls_name: str):
    namespace: dict = {}
    exec(
        compile(f"class {cls_name}:\n    def h(self):\n        return 1\n", "<c>", "exec"),
        namespace,
    )
    return namespace[cls_name].h.__code__


def test_renamed_code_is_kept_apart_for_functions_that_differ_only_in_qualname():
    # In Python 3.11 two code objects of the same text at the same place compare (and hash)
    # equal even when they are the methods of differently named classes
    a, b = method_code("A"), method_code("B")
    assert a == b and (a.co_qualname, b.co_qualname) == ("A.h", "B.h")
    renamed = [child._renamed(code, "<worker w #1>") for code in (a, b, a)]
    assert [c.co_qualname for c in renamed] == ["A.h", "B.h", "A.h"]
    assert {c.co_filename for c in renamed} == {"<worker w #1>"}
