"""Recorded calls: ``@nw.recorded`` marks a function as impure (an HTTP fetch, ``now()``, a
random draw, a database read). During a run of a worker, each call's arguments and result (or
exception) go into the run's trace (``Trace.calls``); ``replaying(trace)`` gives those results
back, in call order, instead of calling again (``nw.replay(..., recorded=True)``, live values
and tries use it).

Cost: a worker whose code makes no recorded call pays nothing per run but one assignment
(``Dispatch.execute`` sets ``worker.CURRENT.run``); a recorded call pays for copying its
result (``Calls.add``: a preview and a pickle, as a run's result) and a few microseconds more
(``benchmarks/recorded.py``).

Where the code runs elsewhere (``--executor processes`` or ``dask``) the calls made on the
handler's thread are recorded there and sent back with the run's outcome (``far_run``). A
call made on a thread the handler started is not recorded, with any executor (there, a line
to that thread's output says so).
"""

from __future__ import annotations

import contextlib
import functools
import sys
import threading
from collections import deque
from collections.abc import Iterator

from ..engine.worker import CURRENT
from ..errors import ArgumentTypeError, ArgumentValueError, NBWorkersError
from ..executors import child
from ..trace import Trace
from .calls import NOT_COPIED, Call, Calls, args_text

# The ``Replaying`` of this thread, while a ``replaying`` block runs on it.
_local = threading.local()

NOT_RECORDED_ELSEWHERE = (
    "nbworkers: {name}() was called for real and not recorded: in a pool process or on Dask, "
    "only the calls made on the handler's own thread are recorded\n"
)


class _FarRun:
    """What a run in a pool process or on Dask records calls into (``child.run_job``)."""

    __slots__ = ("calls",)
    keep_result = True  # its trace is made in the kernel, which decides what it keeps

    def __init__(self):
        self.calls = None


def far_run() -> _FarRun:
    """Start recording this thread's calls for a run in a pool process or on Dask."""
    run = CURRENT.run = _FarRun()
    return run


def far_run_ended(run: _FarRun) -> bytes | None:
    """Stop recording; the run's calls as ``Calls.stored`` keeps them (None: none made)."""
    CURRENT.run = None
    return None if run.calls is None else run.calls.stored()[0]


def recorded(fn):
    """Decorator: mark ``fn`` as impure, so that its calls during a worker's runs are kept in
    the run's trace, and a replay with ``recorded=True`` takes their results from the trace
    instead of calling ``fn`` again.

    >>> @nw.recorded
    ... def fetch(url):
    ...     return requests.get(url).json()

    Outside a run (in a cell) it is ``fn`` as it is. A recorded call made inside another
    recorded call is part of the outer one, not recorded on its own.
    """
    if not callable(fn):
        raise ArgumentTypeError(
            f"@nw.recorded marks a function, not {type(fn).__name__}: put it on a def"
        )
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    name = name.rpartition("<locals>.")[2]  # "fetch", not "make_client.<locals>.fetch"

    # A closure naming only module-level functions, so that cloudpickle can send it to a
    # process or Dask worker (a threading.local cannot be pickled).
    def call(*args, **kwargs):
        return _call(fn, name, args, kwargs)

    functools.update_wrapper(call, fn)
    call.__nbworkers_recorded__ = name
    return call


def _call(fn, name: str, args: tuple, kwargs: dict):
    replaying = getattr(_local, "replaying", None)
    if replaying is not None:
        return replaying.call(fn, name, args, kwargs)
    run = getattr(CURRENT, "run", None)
    if run is None:
        if child.active:  # a pool process or Dask worker: it cannot reach the trace
            sys.stderr.write(NOT_RECORDED_ELSEWHERE.format(name=name))
        return fn(*args, **kwargs)
    calls = run.calls
    if calls is None:
        if not run.keep_result:
            # A drain: newer traces will replace this run's, so its calls are not copied (as
            # its result is not), and cost no object; the trace, if kept after all, says so.
            run.calls = NOT_COPIED
            return fn(*args, **kwargs)
        calls = run.calls = Calls()
    elif calls is NOT_COPIED:
        return fn(*args, **kwargs)
    return _record(calls, fn, name, args, kwargs)


def _record(calls: Calls, fn, name: str, args: tuple, kwargs: dict, replayed=False):
    """Call ``fn`` for real and keep the call in ``calls``. Recorded calls it makes are part
    of it: not recorded, nor replayed, on their own."""
    current = CURRENT
    run = getattr(current, "run", None)
    replaying = getattr(_local, "replaying", None)
    current.run = _local.replaying = None
    shown = args_text(args, kwargs)  # before the call, which may change them
    try:
        value = fn(*args, **kwargs)
    except BaseException as exc:
        current.run, _local.replaying = run, replaying
        calls.add(name, shown, None, exc, replayed)
        raise
    current.run, _local.replaying = run, replaying
    calls.add(name, shown, value, None, replayed)
    return value


_MODES = {True: False, "strict": True}  # mode -> strict


def check_mode(mode) -> bool:
    """Whether ``mode`` (True or "strict") is strict; ArgumentValueError for anything else."""
    if isinstance(mode, bool | str) and mode in _MODES:
        return _MODES[mode]
    raise ArgumentValueError(
        f"recorded must be False, True or 'strict', not {mode!r}: True takes recorded calls' "
        "results from the trace and calls the others for real; 'strict' makes a call the "
        "trace does not hold an error"
    )


class Replaying:
    """What a ``replaying`` block did. ``calls``: every recorded call made in it, in order
    (a ``Calls``: ``Call.replayed`` True when its result came from the trace, False when the
    function was called for real); ``not_recorded``: the calls made for real because the
    trace held none for them (with why); ``unused``: the trace's calls never asked for."""

    def __init__(self, trace: Trace, strict: bool):
        self.trace = trace
        self.strict = strict
        self.calls = Calls()
        self.not_recorded: list[tuple[Call, str]] = []
        self._pending: dict[str, deque[Call]] = {}
        for recorded_call in trace.calls or ():
            self._pending.setdefault(recorded_call.name, deque()).append(recorded_call)
        self._held = len(trace.calls or ())

    @property
    def unused(self) -> list[Call]:
        return [c for queue in self._pending.values() for c in queue]

    def call(self, fn, name: str, args: tuple, kwargs: dict):
        """A recorded call made in the block: its result from the trace, else for real (or
        NBWorkersError when strict)."""
        queue = self._pending.get(name)
        found = queue.popleft() if queue else None
        if found is None and self.trace.calls is not None and self.trace.calls.note:
            why = f"the trace's calls were not kept: {self.trace.calls.note}"
        elif found is None and self.trace.calls is None:
            why = (
                "the trace holds no recorded calls: its run made none, or ran under "
                "--executor processes or dask, where calls are not recorded"
            )
        elif found is None:
            held = sum(1 for c in self.trace.calls if c.name == name)
            why = f"the trace holds {held} call{'s' if held != 1 else ''} of {name}()"
            if getattr(self.trace.calls, "dropped", 0):
                why += f" (and {self.trace.calls.dropped:,} calls past its limit, not kept)"
        elif found.data is None:
            why = f"its value was not kept: {found.note}"
        else:
            try:
                value = found.value()
            except NBWorkersError as exc:
                why = str(exc)
            else:
                self.calls.append(
                    Call(
                        name,
                        args_text(args, kwargs),
                        found.result,
                        found.error,
                        found.data,
                        None,
                        True,
                    )
                )
                if found.error is not None:
                    if isinstance(value, BaseException):
                        raise value
                    raise NBWorkersError(f"{name}() raised {found.error} (as recorded)")
                return value
        shown = f"{name}({args_text(args, kwargs)})"
        if self.strict:
            raise NBWorkersError(
                f"recorded='strict': the call {shown} is not recorded in trace "
                f"{self.trace.id} ({why}). Replay with recorded=True to call it for real, or "
                "run the worker again to record a new trace"
            )
        before = len(self.calls)
        try:
            return _record(self.calls, fn, name, args, kwargs)
        finally:
            if len(self.calls) > before:
                self.not_recorded.append((self.calls[-1], why))


@contextlib.contextmanager
def replaying(trace: Trace, mode=True) -> Iterator[Replaying]:
    """While the block runs, ``@nw.recorded`` calls made **on this thread** take their results
    from ``trace.calls`` instead of calling again.

    The contract, for code that runs a handler on a trace's input (``nw.replay``, live
    values, tries):

    - Calls are matched by function name, in order: the n-th call of ``fetch`` in the block
      gets the n-th recorded call of ``fetch`` in the trace, whatever the arguments. It
      returns a fresh copy of the recorded result, or raises a copy of the recorded exception.
    - A call the trace does not hold (more calls of that name than recorded, a function the
      old code never called, a value that was not kept) is "not recorded": with ``mode=True``
      it is called for real; with ``mode="strict"`` it raises NBWorkersError naming the call,
      without calling it.
    - Every call made in the block is kept in the yielded ``Replaying``'s ``calls``
      (``replayed`` True or False), ready to become the new trace's ``calls``; it lists the
      calls made for real in ``not_recorded`` and the trace's calls never asked for in
      ``unused``.
    - Threads the handler starts are not covered (they call for real, unrecorded). Blocks
      nest: the inner one wins until it ends. Nothing is recorded in the engine: the caller
      records a trace if it wants one.

    >>> with replaying(trace) as r:
    ...     value = handler.call(trace.input, message)
    >>> [c.line() for c in r.calls]
    """
    state = Replaying(trace, check_mode(mode))
    outer = getattr(_local, "replaying", None)
    _local.replaying = state
    try:
        yield state
    finally:
        _local.replaying = outer
