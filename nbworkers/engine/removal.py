"""Removing a handler (``nw.remove``): Darklang's deleted handler.

The name keeps its state (counts, traces, dead letters, pause) and its queue, but no code:
no new run starts, a cron's schedule is dropped, runs going finish and are settled normally,
and its messages are unhandled again until the name is defined anew (``purge=True`` drops
them instead). Its ``kind`` in the database becomes ``"removed"``.
"""

from __future__ import annotations

from ..errors import ArgumentTypeError, NBWorkersError
from .admin import purge_locked
from .registry import Registry

REMOVED = "removed"  # the workers table's kind of a name whose handler was removed


class Removal:
    """``nw.remove`` for one engine."""

    def __init__(self, registry: Registry, writer, timers, events):
        self.registry = registry
        self.writer = writer
        self.timers = timers
        self.events = events
        self.results = None  # Results: purged messages end (nw.result, fan-in); the runtime

    def remove(self, name: str, purge: bool = False) -> int:
        """Undefine worker or cron ``name``; returns how many of its queued messages were
        dropped (``purge=True``), else 0 (they wait, unhandled). NBWorkersError if ``name``
        has no handler."""
        reg = self.registry
        reg.known_or_valid(name)
        if not isinstance(purge, bool):
            raise ArgumentTypeError(f"nw.remove: purge must be True or False, not {purge!r}")
        with reg.lock:
            reg.check_running()
            w = reg.workers.get(name)
            if w is None or w.handler is None:
                raise NBWorkersError(_no_handler(name, w))
            w.handler = None
            w.schedule = None  # a cron: no next run
            w.concurrency = 0  # run threads end after their run
            w.kind = REMOVED
            w.cond.notify_all()
            self.writer.worker_changed(w)
            self.timers.changed()
            dropped = purge_locked(w, self.writer, self.results) if purge else 0
            self.events.after_change(w)
            self.events.mark_changed(name)
        return dropped


def _no_handler(name: str, w) -> str:
    if w is None:
        return f"nothing is named {name!r}: nw.workers() lists the workers and crons defined"
    queued = w.queued()
    were = " (it was removed)" if w.kind == REMOVED else ""
    if queued:
        return (
            f"{name!r} has no handler{were}: its {queued:,} queued message(s) are unhandled; "
            f"nw.purge({name!r}) drops them"
        )
    return f"{name!r} has no handler{were}: nw.workers() lists the workers and crons defined"
