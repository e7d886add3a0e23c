"""Outcomes: what a run's end does to its message (done, retried, parked or dead) and the
trace it leaves. Called with the engine's lock held, by the run's thread (or the timer for a
run past its time limit)."""

from __future__ import annotations

import time

from .. import progress
from ..message import Message
from ..trace import NO_RESULT, RunResult, Trace
from . import batches
from .dead import letter as dead_letter
from .registry import Registry
from .worker import Run, WorkerState

_NOTHING = RunResult(NO_RESULT, None, None)  # what a failed run returned


def make_trace(run: Run, error, result: RunResult | None, replay=False, timed_out=False) -> Trace:
    """The trace of ``run``, ended now."""
    m = run.message
    value, data, shown = _NOTHING if result is None else result
    calls = run.calls
    if timed_out and calls is not None:
        calls = calls.copy()  # its thread may go on recording into the run's own
    trace = Trace(  # positional: keywords cost a drain a microsecond a run
        0,  # numbered under the lock by Outcomes.record
        m.seq,
        m.worker,
        m.data,
        run.started_at_s,
        time.perf_counter() - run.t0,
        run.capture.text(),
        error,
        replay,
        value,
        data,
        shown,
        m.attempt,
        timed_out,
        calls,
    )
    if progress.reported_any:  # (a drain with no progress pays a global's read)
        shown = getattr(m, "progress_now", None)
        if shown is not None:  # message.progress was called: kept, and not for a retry
            trace.progress = shown
            del m.progress_now
    return trace


class Outcomes:
    """Settling runs that ended, for one engine."""

    def __init__(self, registry: Registry, writer, events, executors):
        self.registry = registry
        self.writer = writer
        self.events = events
        self.executors = executors
        self.hooks = None  # the policies' hooks, set by the runtime
        self.wake = None  # Dispatch.wake, set by the runtime
        self.results = None  # Results (nw.result, fan-in), set by the runtime

    def end_run(self, w: WorkerState, run: Run, result, error, unpicklable) -> None:
        """``run`` ended in its own thread, in time."""
        if run.stop is not None:  # nw.stop asked (engine/stops.py): a stopped attempt
            result, error, unpicklable = run.stop.ended(run, error)
        message = run.message
        del w.runs[run.index]
        w.running -= 1
        trace = make_trace(run, error, result)
        if unpicklable and run.messages is not None:
            batches.park(self, w, run, unpicklable, trace)
        elif unpicklable:
            self._park(w, message, unpicklable, trace)
        else:
            w.parked_traced.discard(message.seq)
            self.settle(w, run, trace)

    def time_out(self, w: WorkerState, run: Run) -> None:
        """End ``run``, which passed its time limit. A pool process running it is killed and a
        Dask task cancelled; a thread cannot be stopped, so it is left to finish on its own,
        and its slot is given up: a new thread takes the next message."""
        run.timed_out = True
        executor = self.executors[run.policy.executor]
        executor.abandon(run)
        del w.runs[run.index]
        w.running -= 1
        w.live.discard(run.index)
        limit = run.policy.timeout_s
        error = (
            f"TimeoutError: the run took longer than its time limit of {limit:g} s "
            f"(--timeout) and was abandoned. {executor.timeout_note()}\n"
        )
        self.settle(w, run, make_trace(run, error, None, timed_out=True))
        if not self.registry.stopping:
            self.wake(w, 0)

    def _park(self, w: WorkerState, message: Message, reason: str, trace: Trace) -> None:
        """Keep a message whose event cannot be unpickled yet."""
        message.started = False  # it never really ran
        self.writer.update(message)
        w.parked.append((message, reason))
        if message.seq not in w.parked_traced:  # one trace says why; retries add none
            w.parked_traced.add(message.seq)
            self.record(w, trace)
        self.events.after_change(w)

    def settle(self, w: WorkerState, run: Run, trace: Trace) -> None:
        """A run ended: its message is done, taken by a policy (retried later), or dead."""
        if run.messages is not None:
            return batches.settle(self, w, run, trace)
        message = run.message
        if trace.error is None:
            w.done += 1
            w.failing = 0
            w.forget_key(message)
            self.writer.ack([message.seq])
            self.results.ended(w, message, trace)
        else:
            w.failing += 1
            if not self.hooks.after_failure_took(w, run, trace):
                w.failed += 1
                w.forget_key(message)
                if w.is_cron:
                    self.writer.ack([message.seq])
                else:
                    letter = dead_letter(
                        message, trace.error, self.registry.clock(), _reason(run), trace.failure
                    )
                    w.dead.add(letter)
                    self.writer.dead(letter)
                self.results.ended(w, message, trace)
        self.writer.worker_changed(w)
        self.record(w, trace)
        self.events.after_change(w)

    def record(self, w: WorkerState, trace: Trace) -> None:
        """Keep ``trace``."""
        trace.seq = self.writer.number()
        w.traces.appendleft(trace)
        self.writer.trace(trace)


def _reason(run: Run) -> str:
    """Why the message of ``run``, whose last attempt failed, is a dead letter."""
    return "failed" if run.stop is None else "stopped"
