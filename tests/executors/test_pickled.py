"""A handler's pickle kept between runs (executors/pickled.py): given back only while nothing it
sends can have changed, so that a run in another process still sees the notebook's globals as
they are when it starts."""

from __future__ import annotations

import json
import math

import cloudpickle
import pytest

from nbworkers import handlers
from nbworkers.engine.policy import Policy
from nbworkers.executors import jobs, pickled


def sent(handler) -> bytes:
    call = handler.call
    return pickled.dumps(call, jobs._functions(call), jobs._used_globals(call))


def cell(source: str, **names):
    return handlers.from_cell("w", source, {"__name__": "__main__", **names})


def test_a_handler_of_immutable_globals_and_modules_is_pickled_once():
    h = cell("math.sqrt(event) * scale + len(label)", math=math, scale=2, label="ab")
    first = sent(h)
    assert sent(h) is first  # the same bytes: not pickled again
    call = cloudpickle.loads(first)
    assert call(16, None) == 10


@pytest.mark.parametrize(
    "change",
    [
        lambda ns: ns.__setitem__("scale", 3),  # a global bound to another value
        lambda ns: ns.__setitem__("math", json),  # to another module
        lambda ns: ns.__setitem__("extra", 1),  # a name the code uses, defined since
    ],
)
def test_a_global_bound_anew_is_pickled_again(change):
    h = cell("math.sqrt(event) * scale + extra if 'extra' in globals() else 0", math=math, scale=2)
    first = sent(h)
    change(h.call.__globals__)
    again = sent(h)
    assert again is not first and again != first


def test_a_global_changed_in_place_is_pickled_every_run():
    seen = [1]
    h = cell("sum(seen) + event", seen=seen)
    first = sent(h)
    seen.append(10)
    assert sent(h) is not first
    assert cloudpickle.loads(sent(h))(0, None) == 11


def test_a_notebook_function_a_default_or_a_closure_is_pickled_every_run():
    def helper(x):
        return x

    helper.__module__ = "__main__"  # as a function defined in a notebook cell
    h = cell("helper(event)", helper=helper)
    assert sent(h) is not sent(h)

    def local(x):  # a module's, but not found under its name there: sent by value
        return x

    h = cell("local(event)", local=local)
    assert sent(h) is not sent(h)
    h = cell("json.dumps(event)", json=json)  # found under its name: sent by name
    assert sent(h) is sent(h)

    def with_default(event, message, cache={}):  # noqa: B006 - a mutable default, on purpose
        return cache.get(event)

    f = handlers.from_function("w", with_default)
    assert sent(f) is not sent(f)
    box = {"n": 1}

    def closure(event, message):
        return box["n"]

    c = handlers.from_function("w", closure)
    assert sent(c) is not sent(c)


def test_a_builtin_method_of_a_mutable_object_is_pickled_every_run():
    # items.append is a builtin function too, but its list travels by value
    items = [1]
    h = cell("add(event)", add=items.append)
    first = sent(h)
    items.append(2)
    again = sent(h)
    assert again is not first
    assert cloudpickle.loads(again).__globals__["add"].__self__ == [1, 2]
    h = cell("length(event)", length=len)  # a plain builtin: sent by name
    assert sent(h) is sent(h)


def test_a_module_registered_to_go_by_value_is_pickled_every_run(tmp_path, monkeypatch):
    (tmp_path / "nbw_by_value.py").write_text("settings = {'n': 1}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import nbw_by_value

    h = cell("mod.settings['n'] + event", mod=nbw_by_value)
    assert sent(h) is sent(h)  # by name: the far side imports it
    cloudpickle.register_pickle_by_value(nbw_by_value)
    try:
        assert sent(h) is not sent(h)  # by value: its settings travel, and may change
    finally:
        cloudpickle.unregister_pickle_by_value(nbw_by_value)


def test_a_function_renamed_or_annotated_with_a_list_is_pickled_anew():
    def handler(event, message):
        return event

    f = handlers.from_function("w", handler)
    first = sent(f)
    handler.__doc__ = "changed"
    assert sent(f) is not first
    handler.__annotations__["event"] = ["mutable"]
    assert sent(f) is not sent(f)


def test_a_subclass_of_int_with_attributes_is_pickled_every_run():
    class Tagged(int):
        pass

    tagged = Tagged(3)
    tagged.notes = []
    h = cell("tagged + event", tagged=tagged)
    first = sent(h)
    tagged.notes.append("changed")
    again = sent(h)
    assert again is not first
    assert cloudpickle.loads(again).__globals__["tagged"].notes == ["changed"]


def test_a_callable_object_is_pickled_every_run():
    class Counter:
        n = 0

        def __call__(self, event, message):
            return self.n

    obj = Counter()
    h = handlers.Handler("w", obj, "", "function", None)
    assert pickled.dumps(obj, jobs._functions(obj), {}) is not pickled.dumps(
        obj, jobs._functions(obj), {}
    )
    assert h.call is obj


def test_a_new_version_of_the_cell_is_pickled_anew():
    a, b = cell("event + 1"), cell("event + 2")
    assert cloudpickle.loads(sent(a))(1, None) == 2
    assert cloudpickle.loads(sent(b))(1, None) == 3


def two_runs_in_a_process(rt, source: str, ns: dict, between) -> list:
    """Define a processes worker of cell ``source`` in namespace ``ns``, run it on 0, call
    ``between()`` (as a later cell would), run it on 0 again; the two results, oldest first."""
    name = f"w{len(rt.workers())}"
    rt.define(name, handlers.from_cell(name, source, ns), 1, policy=Policy(executor="processes"))
    rt.emit(0, name)
    assert rt.wait(name, 60)
    between()
    rt.emit(0, name)
    assert rt.wait(name, 60)
    return [t.result for t in reversed(rt.traces(name))]


def test_runs_in_a_process_see_globals_rebound_or_changed_in_place(make_runtime):
    # As the notebook does: rebind a number between runs, append to a list; the pool
    # process's run sees each, though the first handler's pickle is kept between runs.
    rt = make_runtime()
    ns = {"__name__": "__main__", "math": math, "scale": 2}
    rebind = lambda: ns.__setitem__("scale", 5)  # noqa: E731
    assert two_runs_in_a_process(rt, "math.floor((event + 10) * scale)", ns, rebind) == [20, 50]
    items = [1]
    ns = {"__name__": "__main__", "items": items}
    grow = lambda: items.append(100)  # noqa: E731
    assert two_runs_in_a_process(rt, "sum(items) + event", ns, grow) == [1, 101]


def test_a_submodule_imported_in_the_notebook_since_reaches_the_next_process_run(
    make_runtime, tmp_path, monkeypatch
):
    # cloudpickle sends the package's submodules imported when it pickles; a kept pickle made
    # before ``import pkg.sub`` lacked it, and the run failed with "no attribute 'sub'".
    (tmp_path / "nbw_pkg").mkdir()
    (tmp_path / "nbw_pkg" / "__init__.py").write_text("")
    (tmp_path / "nbw_pkg" / "sub.py").write_text("ANSWER = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import nbw_pkg

    rt = make_runtime()
    ns = {"__name__": "__main__", "nbw_pkg": nbw_pkg}
    source = "nbw_pkg.sub.ANSWER if __import__('sys').modules.get('nbw_pkg.sub') else 'not yet'"

    def import_sub():  # a later cell imports the submodule
        import nbw_pkg.sub  # noqa: F401

    assert two_runs_in_a_process(rt, source, ns, import_sub) == ["not yet", 42]
