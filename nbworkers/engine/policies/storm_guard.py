"""The storm guard: a worker whose runs emit to it too fast (a loop?), or whose queue grows
past ``NBWorkers.max_queued``, is paused with a reason that says so; nothing is dropped."""

from __future__ import annotations

from ..dispatch import current_worker
from ..worker import WorkerState
from . import RunPolicy


class StormGuard(RunPolicy):
    def __init__(self, registry, pause):
        self.registry = registry
        self.pause = pause  # Admin.pause_locked
        settings = registry.settings
        self.rate = settings.storm_rate
        self.seconds = settings.storm_seconds
        self.max_queued = settings.max_queued

    def after_enqueue(self, w: WorkerState, count: int) -> None:
        if w.handler is None or w.paused:
            return
        if current_worker() == w.name and w.note_self_emits(
            count, self.registry.clock(), self.rate, self.seconds
        ):
            self.pause(
                w,
                f"storm guard: its runs emitted to it more than {self.rate:,} messages "
                f"a second for {self.seconds} s (a loop?). Fix the handler, then resume; "
                "the queued messages are kept",
            )
        elif w.queued() > self.max_queued:
            self.pause(
                w,
                f"storm guard: more than {self.max_queued:,} messages queued "
                "(%config NBWorkers.max_queued). Resume when ready; nothing was dropped",
            )
