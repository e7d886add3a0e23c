"""Start-up: the live state a new engine builds from what its store loaded."""

from __future__ import annotations

import contextlib
import gc
import heapq

from ..develop.calls import Calls
from ..message import Message
from ..store import Loaded
from ..trace import Trace
from .registry import Registry
from .spill import message_of


@contextlib.contextmanager
def gc_paused():
    """Pause the cyclic garbage collector (process-wide) while the block runs.

    Loading a long queue builds millions of objects (rows, then messages) that form no
    cycles; with the collector on, each collection traverses everything built so far:
    opening 1,000,000 queued messages took 3.0-4.0 s with it and 1.3-1.7 s without.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def load(registry: Registry, writer, loaded: Loaded) -> None:
    """Fill ``registry`` from ``loaded`` (before any thread runs)."""
    now = registry.clock()
    state = registry.state
    for row in loaded.workers:
        w = state(row.name)
        w.paused, w.done, w.failed = bool(row.paused), int(row.done), int(row.failed)
        w.last_run_s, w.skipped = row.last_run, int(row.skipped or 0)
        w.pause_reason, w.retried = row.pause_reason, int(row.retried or 0)
        w.kind = row.kind
        if row.keep is not None:  # its --keep holds until the cell runs again
            w.keep(row.keep, registry.traces_kept)
            writer.kept[row.name] = row.keep
    for row in loaded.spilled:  # ready messages beyond the window: left in the file
        registry.paging.start(state(row.worker), row)
    for seq, name, key in loaded.spilled_keys:  # their dedupe keys hold meanwhile
        state(name).keys[key] = Message(seq, name, 0.0, 1, b"", key=key)
    for row in sorted(loaded.messages, key=lambda r: r.seq):
        m = message_of(row, writer)
        w = state(row.worker)
        if m.due_at_s is not None and m.due_at_s > now:
            w.delay(m)
        else:
            came_due = m.due_at_s is not None
            m.due_at_s = None
            if not (came_due and w.spill is not None and w.spill.hold(m, None)):
                w.queue.append(m)
        if m.key is not None:
            w.keys[m.key] = m
        if m.expires_at_s is not None:  # its own time to live: a heap once all are loaded
            w.expiring.append((m.expires_at_s, m.seq, m))
    for w in registry.workers.values():
        heapq.heapify(w.expiring)
    by_worker: dict[str, list] = {}  # the dead letters, counted only: they stay on disk
    for row in loaded.dead_groups:
        by_worker.setdefault(row.worker, []).append(row)
    for name, rows in by_worker.items():
        state(name).dead.load(rows)
    for name, started_at in loaded.rate_starts:  # oldest first: a rate limit's bucket
        state(name).rate_log.append(started_at)
    for row in reversed(loaded.traces):  # oldest first, so appendleft leaves newest first
        trace = Trace(
            row.seq,
            row.message_seq,
            row.worker,
            row.input,
            row.started_at,
            row.duration,
            row.stdout,
            row.error,
            row.replay,
            result_data=row.result,
            result_repr=row.result_repr,
            attempt=row.attempt,
            timed_out=row.timed_out,
            calls=None if row.calls is None else Calls.load(row.calls),
            message_seqs=row.message_seqs,
        )
        state(row.worker).traces.appendleft(trace)
