"""A handler pickled for another process, once for as long as nothing it sends can have changed.

A run sent to a pool process or to Dask carries the handler with the notebook globals it uses,
pickled by cloudpickle (``jobs.make``), so that it sees those globals as they are when it
starts. Pickling a cell's function costs about 15 µs, most of what the kernel spends making a
job of a trivial run. This module keeps the pickle of a handler whose every part is either
immutable or sent by name (a module, or a class or function imported from one), and gives it
back while those parts are still the very same objects: a global bound to another value, a new
version of the cell, or a changed default make it pickle again. A handler that uses anything
mutable (a list, a dict, a DataFrame, a function of the notebook's own, which travels by
value) is pickled for every run, as before.
"""

from __future__ import annotations

import operator
import sys
import types

import cloudpickle

# Values that pickle the same whatever happens to them later: these exact types (a subclass of
# int or str may carry a __dict__ that changes).
_IMMUTABLE = frozenset({int, float, complex, str, bytes, bool, type(None), range})
_KEPT_MAX = 256  # handlers whose pickle is kept; past that, the cache starts again

# id(call) -> (call, the parts it was pickled with, the pickle)
_kept: dict[int, tuple[object, tuple, bytes]] = {}


def dumps(call, functions: list[types.FunctionType], used: dict[str, object]) -> bytes:
    """``cloudpickle.dumps(call)``; kept, and given back, while ``call``'s ``functions`` and
    the globals they ``used`` are the same objects and all immutable or sent by name."""
    parts = _parts(functions, used) if functions and functions[0] is call else None
    if parts is None:  # (a callable object, say: its state may change in place)
        return cloudpickle.dumps(call)
    found = _kept.get(id(call))
    if found is not None and found[0] is call and _same(found[1], parts):
        return found[2]
    data = cloudpickle.dumps(call)
    if len(_kept) >= _KEPT_MAX:
        _kept.clear()
    _kept[id(call)] = (call, parts, data)
    return data


def _same(old: tuple, new: tuple) -> bool:
    """The very same objects, one by one (the kept parts hold them: no id is reused); the
    count of imported modules, last, by value."""
    return len(old) == len(new) and old[-1] == new[-1] and all(map(operator.is_, old, new[:-1]))


# What cloudpickle sends of a function besides its code, names, doc and annotations: its
# namespace's name, package, file and path.
_NAMESPACE = ("__name__", "__package__", "__file__", "__path__")
_END = object()  # after a function's annotations, and after its defaults


def _parts(functions: list[types.FunctionType], used: dict[str, object]) -> tuple | None:
    """What the pickle of these functions depends on, as a flat tuple of the objects
    themselves (every run asks: no names are made for them), the count of imported modules
    last (cloudpickle sends, with a function that uses a package, which of its submodules were
    imported when it pickled, and the far side imports them too: a submodule imported since,
    ``import xml.dom.minidom`` in a later cell, makes the pickle stale). None if any of it
    could change without becoming another object (a mutable value, a closure)."""
    parts: list[object] = []
    add = parts.append
    for fn in functions:
        if fn.__closure__ or fn.__kwdefaults__ or fn.__dict__:
            return None
        add(fn.__code__)
        add(fn.__name__)
        add(fn.__qualname__)
        add(fn.__module__)
        add(fn.__doc__)
        namespace = fn.__globals__
        for key in _NAMESPACE:
            value = namespace.get(key)
            if type(value) not in _IMMUTABLE:
                return None
            add(value)
        for name, note in (fn.__annotations__ or {}).items():
            if not (type(note) in _IMMUTABLE or _by_name(note)):
                return None
            add(name)
            add(note)
        add(_END)
        for default in fn.__defaults__ or ():
            if not (type(default) in _IMMUTABLE or any(default is f for f in functions)):
                return None
            add(default)
        add(_END)
    package = False
    for name, value in used.items():  # (in the same order while the code is the same)
        if not (type(value) in _IMMUTABLE or _by_name(value)):
            return None
        add(name)
        add(value)
        package = package or (isinstance(value, types.ModuleType) and hasattr(value, "__path__"))
    add(len(sys.modules) if package else -1)
    return tuple(parts)


def _by_name(value: object) -> bool:
    """A module, or a class or function cloudpickle sends by its name (found under it in its
    imported module, and not registered to go by value): the far side imports it."""
    if isinstance(value, types.BuiltinFunctionType):  # len, math.sqrt, but not items.append
        owner = value.__self__
        return owner is None or (isinstance(owner, types.ModuleType) and _by_name(owner))
    if not isinstance(value, types.ModuleType | type | types.FunctionType):
        return False
    if "__main__" in (getattr(value, "__name__", None), getattr(value, "__module__", None)):
        return False
    return _by_reference(value)  # (what fails here fails cloudpickle.dumps the same way)


# cloudpickle's own test of what it sends by name (private in cloudpickle 2 and 3: without it,
# nothing is taken to go by name, and a handler using a module is pickled every run).
_by_reference = getattr(cloudpickle.cloudpickle, "_should_pickle_by_reference", lambda _: False)
