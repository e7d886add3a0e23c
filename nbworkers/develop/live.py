"""``nw.live``: run a worker's current code on a trace's input, here, under a line tracer, and
show its source with the values each line produced (Darklang's live values).

It records no trace and counts nothing; what the handler prints is captured and shown with the
values; an exception the handler raises is shown at its line, never raised out of ``live``.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import sys
import time
import traceback

from .. import current, output
from ..engine.batches import messages_of
from ..engine.dispatch import current_worker
from ..engine.timers import NO_EVENT
from ..errors import ArgumentValueError, NBWorkersError
from ..handlers import format_error
from ..message import ClassNotDefined, Message, load_event
from . import live_view, rewrite, tracer
from . import recorded as _recorded
from .rewrite import prepare
from .tracer import LineRecord, Recorder, Step
from .values import show


class Live:
    """Live values of one run: print it (or ``str``) for text, display it for HTML.

    ``live.show(line, k)`` is what the ``k``-th run of ``line`` did (1 is the first; -1, the
    default, the last), ``live.iteration(k)`` shows every line at its ``k``-th run, and
    ``live.runs(line)`` is how many times a line ran. A line keeps its first and last 3 runs.
    """

    def __init__(self, name: str, trace_id: str, prepared, recorder: Recorder):
        self.name = name
        self.trace_id = trace_id
        self.lines = prepared.lines
        self.first_lineno = prepared.first_lineno
        self.statements = prepared.statements
        self.records: dict[int, LineRecord] = recorder.lines
        self.notes = list(prepared.notes) + ([recorder.stopped] if recorder.stopped else [])
        self.ok = True
        self.error: str | None = None  # "Type: message" when the run failed
        self.traceback = ""
        self.result = None
        self.printed = ""
        self.duration_s = 0.0
        self.selected: int | None = None  # show each line's run of this number (iteration)

    @property
    def failed(self) -> bool:
        return not self.ok

    def runs(self, line: int) -> int:
        """How many times ``line`` ran (0: never reached)."""
        self._check_line(line)
        record = self.records.get(line)
        return record.count if record else 0

    def show(self, line: int, k: int = -1) -> str:
        """What the ``k``-th run of ``line`` did, as one line of text (``-1``: the last)."""
        self._check_line(line)
        record = self.records.get(line)
        if record is None:
            return "(not reached)" if line in self.statements else "(no code on this line)"
        if not isinstance(k, int) or isinstance(k, bool) or k == 0:
            raise ArgumentValueError(f"k must be a run number: 1, 2, ... or -1, -2, ..., not {k!r}")
        step = _pick(record, k)
        if step is None and abs(k) > record.count:
            times = "once" if record.count == 1 else f"{record.count:,} times"
            raise ArgumentValueError(
                f"line {line} ran {times}: there is no run {k}; pick 1 to {record.count:,}, or "
                "-1 for the last"
            )
        if step is None:
            kept = ", ".join(f"{s.run:,}" for s in record.kept())
            raise ArgumentValueError(
                f"line {line} ran {record.count:,} times and run {k} was not kept (kept: "
                f"{kept}); pick one of those, or -1 for the last"
            )
        return live_view.describe(step)

    def iteration(self, k: int) -> Live:
        """The same live values showing every line at its ``k``-th run (1 is the first, -1 the
        last); a line that ran fewer times, or whose run ``k`` was not kept, says so."""
        if not isinstance(k, int) or isinstance(k, bool) or k == 0:
            raise ArgumentValueError(f"k must be a run number: 1, 2, ... or -1, -2, ..., not {k!r}")
        picked = copy.copy(self)
        picked.selected = k
        return picked

    def step(self, record: LineRecord) -> Step | None:
        """The run of ``record`` shown: the selected one, else the last."""
        return _pick(record, -1 if self.selected is None else self.selected)

    def _check_line(self, line) -> None:
        last = self.first_lineno + len(self.lines) - 1
        if not isinstance(line, int) or not self.first_lineno <= line <= last:
            raise ArgumentValueError(
                f"line must be a line number of the handler, {self.first_lineno} to {last}, "
                f"not {line!r}"
            )

    def __str__(self) -> str:
        return live_view.text(self)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return live_view.html_view(self)


def _pick(record: LineRecord, k: int) -> Step | None:
    run = k if k > 0 else record.count + 1 + k
    return next((s for s in record.kept() if s.run == run), None)


def live(
    name: str,
    trace_id: str | None = None,
    *,
    timeout_s: float | None = None,
    recorded=True,
    stop=None,
) -> Live:
    """Live values of ``name``'s current code on a trace's input (the newest that is not a
    replay by default), run here under a line tracer. ``timeout_s`` stops it (where the
    handler's own Python code runs) after that many seconds; so does ``stop()`` returning
    True (the panel's: its values are no longer wanted). ``@nw.recorded`` calls take their
    results from the trace (``recorded=True``, as ``nw.replay(..., recorded=True)``): a call
    the trace does not hold is called for real and noted; ``"strict"`` makes it an error
    (shown at its line); ``False`` calls everything for real."""
    if timeout_s is not None and (
        isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or not timeout_s > 0
    ):
        raise ArgumentValueError(
            f"timeout_s must be a number of seconds above 0 (or None), not {timeout_s!r}"
        )
    if recorded is not False:
        _recorded.check_mode(recorded)  # a wrong value is said before anything runs
    worker = current_worker()
    if worker is not None:
        raise NBWorkersError(
            f"live values run the handler in the foreground of a cell: call it from a cell, not "
            f"from inside a run of {worker!r}"
        )
    rt = current.runtime()
    handler, trace = rt.replays._trace(name, trace_id)
    data = trace.input_data or NO_EVENT
    message = Message(trace.message_seq, name, trace.started_at_s, 1, data)
    if trace.message_seqs is not None:  # a batch: message is the list of its messages
        message = messages_of(trace, name)
    try:
        event = load_event(data)
    except ClassNotDefined as exc:
        raise NBWorkersError(
            f"the event cannot be unpickled yet: {exc}. Define its class, then try again"
        ) from exc
    # Unpickling runs user code, which may raise anything: said, with what it was.
    except BaseException as exc:
        raise NBWorkersError(
            f"the trace's input cannot be unpickled ({type(exc).__name__}: {exc})"
        ) from exc
    calls = _recorded.replaying(trace, recorded) if recorded is not False else None
    return run(name, trace.id, handler, event, message, timeout_s, calls, stop)


def run(name, trace_id, handler, event, message, timeout_s=None, replaying=None, stop=None) -> Live:
    """Run ``handler`` on ``event`` under the tracer, in this thread, inside ``replaying``
    (recorded calls); its ``Live``."""
    recorder = None

    def hook(line, value):
        if recorder is not None:
            recorder.expression(sys._getframe(1), line, value)
        return value

    prepared = prepare(handler, hook)
    capture = output.Capture()
    t0 = time.perf_counter()
    deadline_s = t0 + timeout_s if timeout_s is not None else None
    recorder = Recorder(prepared, capture, deadline_s, stop=stop)
    error = None
    with capture:
        previous = sys.gettrace()
        sys.settrace(recorder.global_trace)
        try:
            with replaying or contextlib.nullcontext() as calls:
                value = prepared.call(event, message)
        # Shown at its line and in the live values' header, never raised from here
        except BaseException as exc:  # noqa: BLE001
            error = exc
        finally:
            sys.settrace(previous)
            recorder.finish()
    result = Live(name, trace_id, prepared, recorder)
    for call, why in getattr(calls, "not_recorded", ()):
        result.notes.append(f"not recorded, called for real: {call.line()} ({why})")
    result.duration_s = time.perf_counter() - t0
    result.printed = capture.text()
    if error is None:
        result.result = value
        if not prepared.returns and value is not None:
            result.notes.append(f"returned {show(value)}")
    else:
        result.ok = False
        result.error = f"{type(error).__name__}: {error}"
        result.traceback = _traceback(error)
    return result


def _traceback(error: BaseException) -> str:
    """``error``'s traceback from the handler's frame, without the tracer's frames (an
    interrupt or a recursion too deep can be raised inside a trace function)."""
    text = format_error(error, __file__)
    ours = (tracer.__file__, rewrite.__file__)
    if not any(f'File "{path}"' in text for path in ours):
        return text
    tb = traceback.TracebackException.from_exception(error)
    skip = sum(1 for _ in itertools.takewhile(lambda f: f.filename == __file__, tb.stack))
    frames = [f for f in tb.stack[skip:] if f.filename not in ours]
    tb.stack = traceback.StackSummary.from_list(frames)
    return "".join(tb.format())
