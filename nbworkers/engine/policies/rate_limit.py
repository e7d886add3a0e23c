"""The rate limit (``--rate 10/s``): a run that starts takes a token of its worker's bucket
(``engine/rate.py``); the start is also written to the file (``rate_starts``), so that a
restarted kernel starts from the same bucket. Whether a run may start is the gate's business
(``engine/gate.py``): a worker waiting for a token is not ready, and the timer wakes it."""

from __future__ import annotations

from ..rate import take_token
from ..worker import Run, WorkerState
from . import RunPolicy


class RateLimit(RunPolicy):
    def __init__(self, registry, writer):
        self.registry = registry
        self.writer = writer

    def before_run(self, w: WorkerState, run: Run) -> None:
        rate = run.policy.rate
        if rate is not None:
            now = self.registry.clock()
            take_token(w.rate_log, now)
            self.writer.rate_start(w.name, now, rate.period_s)
