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

import sys
import types

import cloudpickle

# Values that pickle the same whatever happens to them later.
_IMMUTABLE = (int, float, complex, str, bytes, bool, type(None), range, types.BuiltinFunctionType)
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
    return len(old) == len(new) and all(
        a[0] == b[0] and a[1] is b[1] for a, b in zip(old, new, strict=True)
    )


def _parts(functions: list[types.FunctionType], used: dict[str, object]) -> tuple | None:
    """What the pickle of these functions depends on, as (name, object) pairs; None if any of
    it could change without becoming another object (a mutable value, a closure)."""
    parts: list[tuple[str, object]] = []
    for i, fn in enumerate(functions):
        if fn.__closure__ or fn.__kwdefaults__ or fn.__dict__:
            return None
        parts.append((f"{i}.code", fn.__code__))
        for j, default in enumerate(fn.__defaults__ or ()):
            if not (isinstance(default, _IMMUTABLE) or default in functions):
                return None
            parts.append((f"{i}.default{j}", default))
    for name in sorted(used):
        value = used[name]
        if not (isinstance(value, _IMMUTABLE) or _by_name(value)):
            return None
        parts.append((name, value))
    return tuple(parts)


def _by_name(value: object) -> bool:
    """A module, or a class or function found under its own name in its imported module:
    cloudpickle sends its name, and the far side imports it."""
    if isinstance(value, types.ModuleType):
        return value.__name__ in sys.modules and value.__name__ != "__main__"
    if not isinstance(value, type | types.FunctionType):
        return False
    module = sys.modules.get(getattr(value, "__module__", None) or "")
    if module is None or module.__name__ == "__main__":
        return False
    found: object = module
    for part in value.__qualname__.split("."):
        found = getattr(found, part, None)
    return found is value
