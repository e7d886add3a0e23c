"""The time limit (``--timeout``): a run gets a deadline when it starts; the timer abandons it
once the deadline passes (``Outcomes.time_out``), and the run counts as failed."""

from __future__ import annotations

from ..worker import Run, WorkerState
from . import RunPolicy


class TimeLimit(RunPolicy):
    def __init__(self, registry, timers):
        self.registry = registry
        self.timers = timers

    def before_run(self, w: WorkerState, run: Run) -> None:
        limit = run.policy.timeout_s
        if limit is not None:
            run.deadline_s = self.registry.clock() + limit
            self.timers.wake_at(run.deadline_s)
