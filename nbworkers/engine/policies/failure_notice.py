"""Telling the user about failures: the ``on_failure`` callbacks hear of every failed run, and
after ``NBWorkers.failure_notice_after`` failures in a row a notice shows under the next cell
(and the panel says "failing")."""

from __future__ import annotations

from ...trace import Trace
from ..worker import Run, WorkerState
from . import RunPolicy


def last_line(error: str) -> str:
    lines = [line for line in error.strip().splitlines() if line.strip()]
    return lines[-1] if lines else error


class FailureNotice(RunPolicy):
    def __init__(self, registry, events):
        self.after = registry.settings.failure_notice_after
        self.events = events

    def after_failure(self, w: WorkerState, run: Run, trace: Trace) -> bool:
        if run.batch_index:
            return False  # a batch failed: told once, for its first message
        if w.failing == self.after:
            self.events.notice(
                f"nbworkers: {w.kind_name} {w.name!r} has failed {w.failing} runs in a row; "
                f"the latest: {last_line(trace.error)}  (see nw.traces({w.name!r}))"
            )
        self.events.failed(w.name, trace)
        return False
