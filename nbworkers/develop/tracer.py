"""The line tracer behind live values: per line of the handler, what each run of it did.

``sys.settrace`` on the calling thread; only frames of the handler's code are traced line by
line (``Prepared.traced``). At each line event, the statement that just finished in that frame
gets the locals that changed (by identity, plus the names the statement assigns per the AST,
so ``d[k] = v`` shows ``d``), the output printed meanwhile, and an exception raised there.

The cost is bounded: each line keeps its first and last ``KEEP`` runs (and counts all), values
are one line of at most ``values.MAX_CHARS`` characters, and tracing stops after ``MAX_EVENTS``
lines (the run goes on untraced, and the live values say so).
"""

from __future__ import annotations

import inspect
import sys
import time
from collections import deque

from . import values

KEEP = 3  # the first and the last runs kept per line
MAX_EVENTS = 3_000_000  # lines traced in one live run, at most
_MISSING = object()


class LiveTimeout(BaseException):
    """Stops a live run at its time limit (a BaseException: ``except Exception`` in the handler
    does not catch it)."""


class Step:
    """One run of one line: ``run`` is its number (1 for the first time the line ran)."""

    __slots__ = ("run", "values", "expr", "has_expr", "error", "printed")

    def __init__(self, run: int):
        self.run = run
        self.values: list[list] = []  # [name, value, shown or None until shown]
        self.expr = None  # the value of a bare expression, or returned
        self.has_expr = False
        self.error: str | None = None  # "Type: message" of an exception raised here
        self.printed = ""

    def set_expr(self, value) -> None:
        self.expr = value if values.is_immutable(value) else _Shown(values.show(value))
        self.has_expr = True

    def finish(self) -> None:
        """Turn the values kept as they were into text (once the run is over)."""
        for item in self.values:
            if item[2] is None:
                item[2] = values.show(item[1])
            item[1] = None
        if self.has_expr and not isinstance(self.expr, _Shown):
            self.expr = _Shown(values.show(self.expr))


class _Shown(str):
    """A value already shown as text."""


class LineRecord:
    """The runs of one line: how many, and the first and last ``KEEP``."""

    __slots__ = ("lineno", "count", "first", "last")

    def __init__(self, lineno: int, keep: int = KEEP):
        self.lineno = lineno
        self.count = 0
        self.first: list[Step] = []
        self.last: deque[Step] = deque(maxlen=keep)

    def start(self) -> Step:
        self.count += 1
        step = Step(self.count)
        if len(self.first) < self.last.maxlen:
            self.first.append(step)
        else:
            self.last.append(step)
        return step

    def latest(self) -> Step:
        return self.last[-1] if self.last else self.first[-1]

    def kept(self) -> list[Step]:
        return [*self.first, *self.last]


class _Frame:
    __slots__ = ("locals", "step", "owner", "raw", "raising", "skip")

    def __init__(self, local_values: dict, skip: int):
        self.locals = local_values
        self.skip = skip  # a class body starts on its class line: not another run of it
        self.step: Step | None = None
        self.owner = 0
        self.raw = 0
        self.raising = False


class Recorder:
    """Traces one run of a prepared handler; ``lines`` holds what it saw."""

    def __init__(
        self,
        prepared,
        capture=None,
        deadline_s: float | None = None,
        max_events: int | None = None,
        keep: int = KEEP,
        stop=None,
    ):
        self.prepared = prepared
        self.owner = prepared.owner
        self.targets = prepared.targets
        self.returns = prepared.returns
        self.quiet = prepared.quiet
        self.parts = capture.parts if capture is not None else []
        self.deadline_s = deadline_s  # time.perf_counter() at which to stop
        self.stop = stop  # stop() is True: stop (the panel no longer wants these values)
        self.max_events = max_events or MAX_EVENTS
        self.keep = keep
        self.lines: dict[int, LineRecord] = {}
        self.frames: dict = {}
        self.events = 0
        self.printed_at = 0  # output before this index is attributed to a line
        self.stopped: str | None = None  # why tracing stopped early
        self._last_exc = None

    # ----- the trace functions -------------------------------------------------------------

    def global_trace(self, frame, event, arg):
        if event != "call" or self.stopped or not self.prepared.traced(frame.f_code):
            return None
        code = frame.f_code
        skip = 0 if code.co_flags & inspect.CO_NEWLOCALS else code.co_firstlineno
        self.frames[frame] = _Frame(dict(frame.f_locals), skip)
        return self.local_trace

    def local_trace(self, frame, event, arg):
        state = self.frames.get(frame)
        if state is None or self.stopped:
            return None
        if event == "line":
            self.events += 1
            if self.events >= self.max_events:
                self._stop(f"tracing stopped after {self.max_events:,} lines; the run went on")
                return None
            if self.deadline_s is not None and time.perf_counter() > self.deadline_s:
                self._halt(frame, state, "the time limit passed", "stopped at the time limit")
                raise LiveTimeout("live values stopped at their time limit")
            if self.stop is not None and self.stop():
                self._halt(frame, state, "no longer wanted", "stopped: no longer wanted")
                raise LiveTimeout("live values no longer wanted")
            lineno = frame.f_lineno
            if lineno == state.skip:
                return self.local_trace
            owner = self.owner.get(lineno, lineno)
            if state.step is not None and owner == state.owner and lineno != state.raw:
                state.raw = lineno  # another line of the same statement
                return self.local_trace
            self._close(frame, state)
            state.step = self._start(owner)
            state.owner = owner
            state.raw = lineno
            state.raising = False
        elif event == "exception":
            exc = arg[1]
            state.raising = True
            if state.step is not None and exc is not self._last_exc:
                self._last_exc = exc  # shown where raised, not again in each caller
                state.step.error = f"{type(exc).__name__}: {exc}"
        elif event == "return":
            self._close(frame, state)
            step = state.step
            if step is not None and not state.raising and state.owner in self.returns:
                self._unprinted(step.set_expr, arg)
            del self.frames[frame]
        return self.local_trace

    def expression(self, frame, line: int, value) -> None:
        """The value of the bare expression at ``line``, computed in ``frame`` (the recompiled
        handler calls its hook with it)."""
        # None is what print() and list.append() give: not worth a place beside the line
        if value is None or self.stopped:
            return
        state = self.frames.get(frame)
        if state is not None and state.step is not None and state.owner == line:
            self._unprinted(state.step.set_expr, value)  # that frame's run, even in recursion
        elif line in self.lines:
            self._unprinted(self.lines[line].latest().set_expr, value)

    # ----- recording -----------------------------------------------------------------------

    def _start(self, line: int) -> Step:
        record = self.lines.get(line)
        if record is None:
            record = self.lines[line] = LineRecord(line, self.keep)
        return record.start()

    def _close(self, frame, state: _Frame) -> None:
        """The statement that ran last in ``frame`` is over: what it changed and printed."""
        step = state.step
        if step is None:
            return
        now = frame.f_locals
        before = state.locals
        if state.owner not in self.quiet:
            found = frame.f_globals  # a target not local is global (``global n; n += 1``)
            targets = self.targets.get(state.owner, ())
            names = [n for n in targets if n in now or n in found]
            names += [n for n, v in now.items() if before.get(n, _MISSING) is not v]
            for name in dict.fromkeys(names):
                if name.startswith(("__nw", ".")) or name in ("__module__", "__qualname__"):
                    continue
                value = now[name] if name in now else found[name]
                shown = None if values.is_immutable(value) else self._unprinted(values.show, value)
                step.values.append([name, value, shown])
        state.locals = dict(now)
        if len(self.parts) > self.printed_at:
            step.printed += "".join(self.parts[self.printed_at :])
            self.printed_at = len(self.parts)

    def _halt(self, frame, state: _Frame, at_line: str, why: str) -> None:
        """Stop tracing at this line of ``frame``, saying ``at_line`` there and ``why``; the
        caller then raises LiveTimeout to stop the run."""
        self._close(frame, state)
        step = self._start(self.owner.get(frame.f_lineno, frame.f_lineno))
        step.error = f"stopped: {at_line}"
        self._stop(why)

    def _stop(self, why: str) -> None:
        self.stopped = why
        sys.settrace(None)
        for frame in self.frames:
            frame.f_trace = None

    def finish(self) -> None:
        """After the run: untrace what is left (a generator's frame) and show the values."""
        for frame in self.frames:
            frame.f_trace = None
        self.frames.clear()
        for record in self.lines.values():
            for step in record.kept():
                self._unprinted(step.finish)

    def _unprinted(self, show, *args):
        """``show(*args)``, which calls the values' ``__repr__``: what they print is not the
        handler's output."""
        mark = len(self.parts)
        try:
            return show(*args)
        finally:
            del self.parts[mark:]
