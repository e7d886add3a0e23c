"""Running a trace's input again: here, in the calling thread (``nw.replay``, so that
``%debug`` reaches the handler), or in the background as a new message (the panel's
Replay)."""

from __future__ import annotations

import time

from .. import handlers, output
from ..develop import recorded as _recorded  # a module: it imports the engine in turn
from ..errors import NBWorkersError
from ..handlers import Handler, check_name
from ..message import ClassNotDefined, Message, load_event, parse_id
from ..trace import Trace, run_result
from . import batches
from .outcomes import make_trace
from .policy import Policy
from .registry import Registry
from .timers import NO_EVENT
from .worker import CURRENT, Run


def _format_error(exc: BaseException) -> str:
    """The handler's traceback, from its own frame: this module's frame left out."""
    return handlers.format_error(exc, __file__, load_event.__code__.co_filename)


class Replay:
    """``replay`` and ``resend``, for one engine."""

    def __init__(self, registry: Registry, outcomes, events, intake):
        self.registry = registry
        self.outcomes = outcomes
        self.events = events
        self.intake = intake

    def _trace(self, name: str, trace_id: str | None) -> tuple[Handler, Trace]:
        """The handler of ``name`` and the trace to replay (the newest that is not a replay)."""
        check_name(name)
        reg = self.registry
        with reg.lock:
            w = reg.defined(name)
            if w is None:
                raise NBWorkersError(f"no worker named {name!r} is defined; run its cell first")
            handler = w.handler
            traces = [t for t in w.traces if not t.replay] or list(w.traces)
            kept_traces = list(w.traces)
        if trace_id is None:
            if not traces:
                raise NBWorkersError(f"worker {name!r} has no trace to replay yet")
            return handler, traces[0]
        seq = parse_id(trace_id, "t")
        trace = next((t for t in kept_traces if t.seq == seq), None)
        if trace is None:
            kept = ", ".join(t.id for t in kept_traces) or "none"
            raise NBWorkersError(f"worker {name!r} has no trace {trace_id!r} (kept: {kept})")
        return handler, trace

    def replay(self, name: str, trace_id: str | None = None, recorded=False):
        """Run the current code of ``name`` on a trace's input, here, in the calling thread.

        Output shows where the caller is and exceptions propagate (so ``%debug`` works); a new
        trace is recorded either way. Returns the run's result. ``recorded``: True takes the
        results of ``@nw.recorded`` calls from the trace (``develop.recorded.replaying``),
        ``"strict"`` too and makes a call the trace does not hold an error.
        """
        if recorded is not False:
            _recorded.check_mode(recorded)
        handler, trace = self._trace(name, trace_id)
        message = Message(trace.message_seq, name, trace.started_at_s, 1, trace.input_data)
        run = Run(
            message, -1, time.time(), time.perf_counter(), output.Capture(tee=True), None, Policy()
        )
        with run.capture:
            try:
                event = load_event(message.data)
            except ClassNotDefined as exc:
                raise NBWorkersError(
                    f"the event cannot be unpickled yet: {exc}. It stays queued and is tried "
                    "again after the next cell runs"
                ) from exc
            # Unpickling runs user code, which may raise anything: said, not recorded.
            except BaseException as exc:
                raise NBWorkersError(
                    f"the trace's input cannot be unpickled ({type(exc).__name__}: {exc})"
                ) from exc
            if trace.message_seqs is not None:  # a batch: message is the list of its messages
                message = batches.messages_of(trace, name)
            try:
                value = self._call(handler, event, message, run, trace, recorded)
            # Whatever the handler raised is recorded, then propagates to the caller.
            except BaseException as exc:
                self._record(name, make_trace(run, _format_error(exc), None, replay=True))
                raise
            result = run_result(value, self.registry.settings.result_max_bytes)
        self._record(name, make_trace(run, None, result, replay=True))
        return result.value

    @staticmethod
    def _call(handler: Handler, event, message: Message, run: Run, trace: Trace, recorded):
        """The handler's call, its @nw.recorded calls kept in ``run.calls`` (and, when
        ``recorded``, taken from ``trace``)."""
        outer = getattr(CURRENT, "run", None)
        CURRENT.run = run
        try:
            if recorded is False:
                return handler.call(event, message)
            with _recorded.replaying(trace, recorded) as replaying:
                try:
                    return handler.call(event, message)
                finally:
                    run.calls = replaying.calls if replaying.calls else None
        finally:
            CURRENT.run = outer

    def _record(self, name: str, trace: Trace) -> None:
        with self.registry.lock:
            self.outcomes.record(self.registry.state(name), trace)
        self.events.notify(name)

    def resend(self, name: str, trace_id: str) -> str:
        """Queue a trace's input again for ``name`` (a background replay); the message id."""
        seq = parse_id(trace_id, "t")
        reg = self.registry
        with reg.lock:
            w = reg.workers.get(name)
            trace = next((t for t in w.traces if t.seq == seq), None) if w else None
        if trace is None:
            raise NBWorkersError(f"{name!r} has no trace {trace_id!r} any more")
        return self.intake.enqueue(name, [trace.input_data or NO_EVENT])[0]
