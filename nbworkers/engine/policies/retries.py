"""Retries: a failed run's message runs again, up to ``--retries`` more times, after an
exponential backoff with jitter (``Policy.retry_delay_s``); "retry now" (no backoff) puts it
at the front of its queue, before newer messages."""

from __future__ import annotations

from ...trace import Trace
from ..worker import Run, WorkerState
from . import RunPolicy


class Retries(RunPolicy):
    def __init__(self, registry, writer, timers, dispatch):
        self.registry = registry
        self.writer = writer
        self.timers = timers
        self.dispatch = dispatch

    def after_failure(self, w: WorkerState, run: Run, trace: Trace) -> bool:
        message, policy = run.message, run.policy  # the worker's policy when the run started
        if message.attempt > policy.retries:
            return False
        reg = self.registry
        w.retried += 1
        message.attempt += 1
        message.started = False
        wait_s = policy.retry_delay_s(message.attempt - 1, reg.rng)
        if wait_s > 0:
            message.due_at_s = reg.clock() + wait_s
            w.delay(message)
            self.timers.wake_at(message.due_at_s)
        else:
            w.queue.appendleft(message)  # "retry now": before newer messages
            self.dispatch.wake(w, 1)
        self.writer.update(message)
        return True
