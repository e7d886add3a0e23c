"""Trying new code on real inputs before it goes live: ``%%worker NAME --try [N]``,
``nw.try_code`` and ``nw.apply``.

The new code runs here, in the calling cell's thread, on the inputs of the worker's last N
traces (replays aside), while the worker goes on running its current code on new messages. A
try records no trace and counts nothing; its result is a table (``tryout_table.TryResult``) with an
Apply button. The last code tried for a name waits in ``_pending`` until it is applied, tried
again, or the worker's cell is run without ``--try``.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from .. import current, handlers, output, schedule
from ..engine.batches import messages_of
from ..engine.definitions import check_concurrency
from ..engine.dispatch import current_worker
from ..engine.policy import Policy
from ..errors import ArgumentTypeError, ArgumentValueError, NBWorkersError
from ..handlers import Handler
from ..message import Message, load_event
from ..trace import NOT_COPIED, Trace, preview, run_result
from .recorded import replaying
from .tryout_table import TryResult, TryRow

DEFAULT_N = 10


@dataclass(eq=False)
class Tried:
    """Code tried for ``name``, and how applying it defines the worker (or cron)."""

    name: str
    handler: Handler
    concurrency: int | None
    paused: bool
    policy: Policy
    schedule: schedule.Schedule | None  # a cron's schedule: applying keeps it a cron
    runtime: object  # the runtime it was tried on
    live_handler: Handler | None  # the code that was live when it was tried
    applied: bool = False


_pending: dict[str, Tried] = {}
_lock = threading.Lock()  # Apply may be clicked on a subshell thread while a cell runs


def _recorded_calls(trace: Trace):
    """A tried run takes the results of its ``@nw.recorded`` calls from ``trace``, as
    ``nw.replay(..., recorded=True)`` does: tried code sends no request the trace holds the
    answer to; a call the trace does not hold is made for real."""
    return replaying(trace, True)


# ----- trying --------------------------------------------------------------------------------


def try_code(
    name: str,
    code: str | Callable,
    n: int = DEFAULT_N,
    *,
    concurrency: int | None = None,
    paused: bool = False,
    retries: int = 0,
    backoff: float = 1.0,
    timeout: float | None = None,
    executor: str = "threads",
    namespace: dict | None = None,
) -> TryResult:
    """Run new code for worker ``name`` on the inputs of its last ``n`` traces, here, without
    replacing its live code, and return the table of old and new results.

    ``code`` is a cell's source (compiled like a ``%%worker`` cell, in ``namespace``: by
    default the notebook's, or outside IPython the caller's globals) or a function (as for
    ``@nw.worker``). The other options are ``@nw.worker``'s: ``nw.apply(name)`` (or the
    table's Apply button) then defines the worker with this code and these options. A cron's
    code is tried with no event, and applying it keeps its schedule. Exceptions the code
    raises are shown in their row, never raised here.
    """
    handlers.check_name(name)
    _check_n(n)
    if not isinstance(paused, bool):
        raise ArgumentTypeError(f"paused must be True or False, not {paused!r}")
    policy = Policy(retries, backoff, timeout, executor)
    definition = _definition(name)
    plan = definition.schedule if definition is not None else None
    kind = "cron" if plan is not None else "worker"
    if isinstance(code, str):
        shell = _shell()
        if namespace is None:  # the notebook's, as for a %%worker cell; else the caller's
            namespace = shell.user_ns if shell is not None else sys._getframe(1).f_globals
        transform = shell.transform_cell if shell is not None else None
        try:
            handler = handlers.from_cell(name, code, namespace, transform, kind)
        except SyntaxError as exc:
            exc.add_note(f"Nothing was tried: {kind} {name!r} keeps its code.")
            raise
    elif callable(code):
        handler = handlers.from_function(name, code, kind)
    else:
        raise ArgumentTypeError(
            f"try_code: give the new code as a cell's source (a str) or a function, "
            f"not {type(code).__name__}"
        )
    return try_handler(name, handler, n, concurrency, paused, policy, plan)


def try_handler(
    name: str,
    handler: Handler,
    n: int = DEFAULT_N,
    concurrency: int | None = None,
    paused: bool = False,
    policy: Policy | None = None,
    plan: schedule.Schedule | None = None,
) -> TryResult:
    """Try ``handler`` on the last ``n`` traces of ``name`` (``try_code`` and the magic's
    ``--try``); what applying it does is ``define`` with the other arguments (``define_cron``
    with ``plan``)."""
    _check_n(n)
    if concurrency is not None:
        check_concurrency(concurrency)  # here, not when Apply is clicked
    worker = current_worker()
    if worker is not None:
        raise NBWorkersError(
            f"trying code runs it in the foreground of a cell: call it from a cell, not from "
            f"inside a run of {worker!r}"
        )
    rt = current.runtime()
    definition = _definition(name, rt)
    cron = plan is not None or (definition is not None and definition.schedule is not None)
    kind = "cron" if cron else "worker"
    traces = [t for t in rt.traces(name) if not t.replay][:n]
    if not traces:
        how = (
            f"Run it once (nw.run_now({name!r})) or wait for its next run"
            if cron and definition is not None
            else "Define it and wait for its first run"
            if cron
            else "Emit a few messages to it"
        )
        return TryResult(
            name,
            n,
            nothing=f"Nothing to try on yet: {kind} {name!r} has no traces (replays aside). "
            f"{how} and try again; nothing was changed.",
        )
    tried = Tried(
        name,
        handler,
        concurrency,
        paused,
        policy or Policy(),
        plan,
        rt,
        definition.handler if definition is not None else None,
    )
    rows = []
    interrupted = False
    for trace in traces:
        try:
            rows.append(run_on(handler, trace, name))
        # The user stopped the cell: the rows so far are the table, with the one it stopped in
        except KeyboardInterrupt as exc:
            if isinstance(exc, _Interrupted):
                rows.append(exc.row)
            interrupted = True
            break
    with _lock:
        _pending[name] = tried
    return TryResult(name, n, rows, tried=tried, interrupted=interrupted, apply=apply_tried)


def run_on(handler: Handler, trace: Trace, name: str) -> TryRow:
    """One row: ``handler`` run here on ``trace``'s input, its output captured, anything it
    raises (but KeyboardInterrupt) caught and shown."""
    old, old_error = _old_result(trace)
    shown_input, event, unpicklable = _input(trace)
    row = TryRow(trace.id, shown_input, old, old_error, trace.duration, trace=trace)
    if unpicklable is not None:
        row.new, row.new_error = unpicklable, True
        return row
    message = Message(trace.message_seq, name, trace.started_at_s, trace.attempt, trace.input_data)
    if trace.message_seqs is not None:  # a batch: message is the list of its messages
        message = messages_of(trace, name)
    capture = output.Capture()
    t0 = time.perf_counter()
    try:
        with capture:
            try:
                with _recorded_calls(trace):
                    value = handler.call(event, message)
                # The repr a trace makes of its result, so that equal results compare equal;
                # with no room for the pickle, which a try does not keep
                new = run_result(value, 0).repr
            except KeyboardInterrupt as exc:
                row.new, row.new_error = "KeyboardInterrupt: stopped here (interrupted)", True
                row.traceback = handlers.format_error(exc, __file__)
                row.changed = None
                raise _Interrupted(row) from exc
            # Whatever the tried code raised belongs in its row (SystemExit included).
            except BaseException as exc:  # noqa: BLE001
                row.new, row.new_error = _error_line(exc), True
                row.traceback = handlers.format_error(exc, __file__)
            else:
                row.new = new
    finally:
        row.new_duration_s = time.perf_counter() - t0
        row.printed = capture.text()
    if old == NOT_COPIED:
        row.changed = None
    else:
        row.changed = (old_error, old) != (row.new_error, row.new)
    return row


class _Interrupted(KeyboardInterrupt):
    """Ctrl-C while tried code ran: ``row`` is what it did until then."""

    def __init__(self, row: TryRow):
        super().__init__()
        self.row = row


def _old_result(trace: Trace) -> tuple[str, bool]:
    """What the trace's run ended with: its result's repr, or its error's last line."""
    if trace.error is not None:
        return _last_line(trace.error), True
    try:
        return trace.result_repr, False
    except NBWorkersError as exc:  # its stored result cannot be unpickled any more
        return f"<{exc}>", False


def _input(trace: Trace):
    """(preview, event, None), or (preview, None, why the input cannot be unpickled)."""
    if trace.input_data is None:
        return "None", None, None
    try:
        event = load_event(trace.input_data)
    except KeyboardInterrupt:
        raise
    # Unpickling runs user code: whatever it raises is said in the row.
    except BaseException as exc:  # noqa: BLE001
        why = f"the input cannot be unpickled ({_error_line(exc)}): the code did not run"
        return "<cannot be unpickled>", None, why
    return preview(event), event, None


def _error_line(exc: BaseException) -> str:
    """``Type: message``, as the last line of a trace's traceback shows it."""
    return _last_line("".join(traceback.format_exception_only(type(exc), exc)))


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


# ----- applying ------------------------------------------------------------------------------


def apply(name: str) -> None:
    """Make the code last tried for ``name`` (``%%worker NAME --try`` or ``nw.try_code``)
    its live code, with the options given with it, as running the cell without ``--try``."""
    handlers.check_name(name)
    with _lock:
        tried = _pending.get(name)
    if tried is None:
        raise NBWorkersError(
            f"no code was tried for {name!r} (or it was applied already): run its cell with "
            f"--try first (%%worker {name} --try), or nw.try_code({name!r}, code)"
        )
    apply_tried(tried)


def apply_tried(tried: Tried) -> None:
    """Define ``tried``'s worker with its code and options, if it is still the pending try
    and the worker's code is still the one it was compared with."""
    name = tried.name
    with _lock:
        if tried.applied:
            raise NBWorkersError(f"this code is already live for {name!r}")
        if _pending.get(name) is not tried:
            raise NBWorkersError(
                f"a newer try of {name!r} replaced this one (or its cell was run again): "
                "apply that one, or try this code again"
            )
        rt = current.runtime()
        definition = _definition(name, rt)
        live = definition.handler if definition is not None else None
        if rt is not tried.runtime or live is not tried.live_handler:
            raise NBWorkersError(
                f"{name!r} was defined again (or nbworkers restarted) since this code was tried, "
                "so the table compared it with code that is not live any more: try it again "
                f"(%%worker {name} --try)"
            )
        if tried.schedule is not None:
            rt.define_cron(name, tried.handler, tried.schedule, tried.paused, tried.policy)
        else:
            rt.define(name, tried.handler, tried.concurrency, tried.paused, tried.policy)
        tried.applied = True
        del _pending[name]


def forget(name: str) -> None:
    """The cell of ``name`` was run without ``--try``: its pending try is dropped."""
    with _lock:
        _pending.pop(name, None)


def pending(name: str) -> Tried | None:
    """The code tried for ``name`` and not applied yet, if any."""
    with _lock:
        return _pending.get(name)


# ----- helpers -------------------------------------------------------------------------------


def _check_n(n) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ArgumentValueError(f"the number of traces to try must be at least 1, not {n!r}")


def _definition(name: str, rt=None):
    rt = rt if rt is not None else current.runtime()
    return next((d for d in rt.definitions() if d.name == name), None)


def _shell():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()
