"""Panels learn that a run started: the Stop button of a run going (``nw.stop``) shows as
soon as it can be used, not at the next run's end. Only while a panel listens."""

from __future__ import annotations

from ..worker import Run, WorkerState
from . import RunPolicy


class StartNotice(RunPolicy):
    def __init__(self, events):
        self.events = events

    def before_run(self, w: WorkerState, run: Run) -> None:
        if self.events.listeners:  # (the throttled notifier refreshes them, a few a second)
            self.events.mark_changed(w.name)
