"""What travels with a run sent to another process: the job (the handler, the event and the
notebook globals the handler uses, pickled with cloudpickle), why a handler cannot travel, and
the emits and outcomes that come back."""

from __future__ import annotations

import functools
import linecache
import os
import pickle
import sys
import types

import cloudpickle

from .. import handlers
from ..develop.calls import Calls
from ..errors import NBWorkersError
from ..progress import Progress
from ..trace import NO_RESULT, RunResult
from . import pickled
from .protocol import Outcome


def _functions(call) -> list[types.FunctionType]:
    """The user's function(s) behind a handler's ``call`` (wrappers keep it as ``_fn``)."""
    found = [call] if isinstance(call, types.FunctionType) else []
    for value in getattr(call, "__defaults__", None) or ():
        if isinstance(value, types.FunctionType):
            found.append(value)
    return found


@functools.lru_cache(maxsize=1024)
def _global_names(code: types.CodeType) -> frozenset[str]:
    """The names ``code`` and the code inside it use (kept per code object: every run asks)."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return frozenset(names)


def _used_globals(call) -> dict[str, object]:
    """The notebook globals the handler's code names (what cloudpickle sends with it)."""
    used = {}
    for fn in _functions(call):
        for name in _global_names(fn.__code__):
            if name in fn.__globals__:
                used[name] = fn.__globals__[name]
    return used


def _why_unsendable(call, exc: BaseException, executor: str) -> str:
    for name, value in sorted(_used_globals(call).items()):
        try:
            cloudpickle.dumps(value)
        except Exception as inner:  # noqa: BLE001 - the culprit: named in the message
            return (
                f"--executor {executor}: the handler uses the notebook global {name!r} (a "
                f"{type(value).__module__}.{type(value).__qualname__}), which cannot be sent to "
                f"another process ({type(inner).__name__}: {inner}). Create it inside the cell, "
                "pass what it needs in the event, or use --executor threads"
            )
    return (
        f"--executor {executor}: the handler cannot be sent to another process "
        f"({type(exc).__name__}: {exc}); use --executor threads"
    )


def check_sendable(handler, executor: str) -> None:
    """NBWorkersError saying why ``handler`` cannot run in another process, if it cannot."""
    # IPython puts get_ipython in the builtins, so look at the names the code uses.
    if any("get_ipython" in _global_names(fn.__code__) for fn in _functions(handler.call)):
        raise NBWorkersError(
            f"--executor {executor}: the cell uses IPython syntax (!command or %magic), which "
            "needs the kernel; it runs only with --executor threads"
        )
    try:
        cloudpickle.dumps(handler.call)
    except Exception as exc:
        raise NBWorkersError(_why_unsendable(handler.call, exc, executor)) from exc


def make(
    handler, event, message, executor: str, *, stored: bytes | None = None, sent: dict | None = None
) -> tuple[bytes, dict]:
    """The job of one run, pickled: what the far side (``child.run_job``) needs; and the
    environment it carries.

    ``stored``: the event as it was pickled at emit time, sent as it is when the far side
    unpickles it the same as the event's cloudpickle (``_as_stored``). ``sent``: the
    environment the far side already has (a pool process's last job's): None is sent instead
    when it is unchanged (``child.run_job`` keeps the last)."""
    meta = (
        message.seq,
        message.worker,
        message.enqueued_at_s,
        message.attempt,
        b"",
        None,
        message.key,
        message.priority,
        message.expires_at_s,
    )
    used = _used_globals(handler.call)
    lines = {}
    if handler.filename:
        lines[handler.filename] = linecache.getlines(handler.filename)
    cwd = _cwd()
    env = {
        "filename": handler.filename,
        "lines": lines,
        "path": list(sys.path),
        "cwd": cwd,
        "kernel_pid": _pid,
        "modules": _own_modules(used),
    }
    try:
        call = pickled.dumps(handler.call, _functions(handler.call), used)
        data = stored if _as_stored(stored) else cloudpickle.dumps(event)
    except Exception as exc:
        raise NBWorkersError(_why_unsendable(handler.call, exc, executor)) from exc
    # The far side reads env first: it imports changed modules again before unpickling the
    # handler, whose globals may name them. Everything but env is pickled apart, so that the
    # job's outer tuple always unpickles there: the far side keeps env (sent once) even when
    # the rest cannot be loaded (a dedupe key of a notebook class, say).
    meta = pickle.dumps(meta, protocol=pickle.HIGHEST_PROTOCOL)
    job = (None if env == sent else env, call, data, meta)
    return pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL), env


def _as_stored(data: bytes | None) -> bool:
    """Whether an event pickled at emit time (plain pickle: classes by name) unpickles on the
    far side as its cloudpickle would: when it names nothing of the notebook's own
    (``__main__``, which cloudpickle sends by value) or of nbworkers (a fan-in's deferred
    events), and no module is registered to go by value."""
    return (
        data is not None
        and b"__main__" not in data
        and b"nbworkers" not in data
        and not _BY_VALUE_MODULES
    )


# cloudpickle's modules registered to go by value (``register_pickle_by_value``; private in
# cloudpickle 2 and 3: without it, a stored event is never sent as it is).
_BY_VALUE_MODULES = getattr(cloudpickle.cloudpickle, "_PICKLE_BY_VALUE_MODULES", {True})


_pid = os.getpid()  # this process's id, asked once (os.getpid is a system call each time)


def _forked() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


def _cwd() -> str | None:
    """The kernel's folder, or None if it was deleted (the run keeps the process's own)."""
    try:
        return os.getcwd()
    except OSError:
        return None


def _own_modules(used: dict[str, object]) -> dict[str, float]:
    """The modules of the user's own (not installed in Python's folders) that the handler's
    globals (``used``) come from, with when each file last changed: a pool process imports a
    module again when it changed, as ``importlib.reload`` or ``%autoreload`` do in the
    notebook."""
    found = {}
    for value in used.values():
        name = value.__name__ if isinstance(value, types.ModuleType) else None
        if name is None:
            name = getattr(value, "__module__", None)
        if not isinstance(name, str) or name.partition(".")[0] in ("nbworkers", "__main__"):
            continue
        path = getattr(sys.modules.get(name), "__file__", None)
        if path and not path.startswith(_PYTHON_FOLDERS):
            try:
                found[name] = os.stat(path).st_mtime
            except OSError:
                pass  # a module whose file is gone: nothing to import again
    return found


_PYTHON_FOLDERS = tuple({sys.prefix, sys.base_prefix, sys.exec_prefix})


def failed(error: str) -> dict:
    """The outcome of a run that failed on the kernel's side of the executor."""
    return {"stdout": "", "error": error, "result_data": None, "result_repr": None}


def crashed(executor: str, exc: BaseException) -> dict:
    """The outcome of a run whose executor itself failed (a bug of nbworkers, or of the
    cluster's client): the run fails, and its run thread goes on."""
    return failed(
        f"nbworkers: --executor {executor} failed to run it:\n" + handlers.format_error(exc)
    )


def outcome(done: dict | None, run, result_max_bytes: int) -> Outcome | None:
    """The ``Outcome`` of a run from what came back (None: abandoned): what it printed goes
    to the run's capture; its pickled result is kept if at most ``result_max_bytes``."""
    if done is None:
        return None
    run.capture.parts.append(done["stdout"])
    if done.get("calls") is not None:  # @nw.recorded calls made there (develop/recorded.py)
        run.calls = Calls.load(done["calls"])
    if done.get("progress") is not None:  # message.progress's last, for the trace
        run.message.progress_now = Progress(*done["progress"])
    if done["error"] is not None:
        return Outcome(None, done["error"])
    data = done["result_data"]
    if data is not None and len(data) > result_max_bytes:
        data = None
    return Outcome(RunResult(NO_RESULT, data, done["result_repr"]), None)


def decode(kind: str, request: tuple) -> tuple:
    """An emit request from the far side, with its events unpickled."""
    # Keyword options (priority=, ttl=...) follow as they came, in a dict.
    if kind == "emit":
        data, name, *rest = request
        return (cloudpickle.loads(data), name, *rest)
    datas, name, *rest = request
    return ([cloudpickle.loads(d) for d in datas], name, *rest)
