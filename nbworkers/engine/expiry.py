"""Expiry: a message still waiting to run when its time to live ends becomes a dead letter
with reason "expired" instead of running.

A message's time to live counts from its emit: its own (``emit(..., ttl=)``, kept in the file
as its ``expires_at``), else its worker's current ``--ttl`` (``Policy.ttl_s``). Each worker keeps
two heaps of its waiting messages that may expire (``WorkerState.expiring``: own expiry;
``WorkerState.aging``: by emit time, while its policy has a ttl), so that the timer finds the
next to expire without a scan, wakes then, and dead-letters it wherever it waits: ready
(``ReadyQueue.discard``, O(1)), delayed (skipped when it comes due) or parked. Entries of
messages that ran meanwhile are skipped when reached, and dropped together once they are most
of a heap. A run thread also checks the message it is about to take.

Everything here runs with the engine's lock held.
"""

from __future__ import annotations

import heapq

from ..message import Message
from ..trace import Trace
from .dead import letter as dead_letter
from .policies import RunPolicy
from .registry import Registry
from .worker import Run, WorkerState


def _waiting(m: Message, running: set[int]) -> bool:
    """``m`` may still expire: it waits (or runs, and may be retried), it did not expire."""
    return not m.expired and (not m.started or m.seq in running)


class Expiry(RunPolicy):
    """Expiring the messages of one engine's workers."""

    def __init__(self, registry: Registry, writer, timers, events):
        self.registry = registry
        self.writer = writer
        self.timers = timers
        self.events = events
        self.results = None  # Results (nw.result, fan-in), set by the runtime

    # ----- tracking ---------------------------------------------------------------------------

    def track(self, w: WorkerState, messages: list[Message]) -> None:
        """``messages`` of ``w`` wait from now on: the timer wakes when the first expires."""
        own, aging, ttl = w.expiring, w.aging, w.policy.ttl_s
        soonest = None
        for m in messages:
            if m.expires_at_s is not None:
                heapq.heappush(own, (m.expires_at_s, m.seq, m))
                at = m.expires_at_s
            elif ttl is not None:
                heapq.heappush(aging, (m.enqueued_at_s, m.seq, m))
                at = m.enqueued_at_s + ttl
            else:
                continue
            if soonest is None or at < soonest:
                soonest = at
        if soonest is not None:
            self.timers.wake_at(soonest)
            self._compact(w)

    def policy_changed(self, w: WorkerState, old_ttl_s: float | None) -> None:
        """``w`` has a new policy, whose ttl differs from ``old_ttl_s``."""
        ttl = w.policy.ttl_s
        if ttl is None:
            w.aging = []  # messages with a ttl of their own keep it
            return
        if old_ttl_s is None:  # nothing was kept by emit time: every waiting message
            w.aging = [(m.enqueued_at_s, m.seq, m) for m in w.waiting() if m.expires_at_s is None]
            heapq.heapify(w.aging)
        if w.aging:
            self.timers.wake_at(w.aging[0][0] + ttl)

    def after_failure(self, w: WorkerState, run: Run, trace: Trace) -> bool:
        """A message taken back for a retry (after ``Retries``) may expire while it waits."""
        m = run.message
        if not m.started and (m.expires_at_s is not None or w.policy.ttl_s is not None):
            self.track(w, [m])
        return False

    def _compact(self, w: WorkerState) -> None:
        """Drop the entries of messages that left, once they are most of the heaps."""
        if len(w.expiring) + len(w.aging) <= 2 * (w.queued() + w.running) + 64:
            return
        running = {r.message.seq for r in w.runs.values()}
        w.expiring = [e for e in w.expiring if _waiting(e[2], running)]
        w.aging = [e for e in w.aging if _waiting(e[2], running)]
        heapq.heapify(w.expiring)
        heapq.heapify(w.aging)

    # ----- expiring ---------------------------------------------------------------------------

    def expire_due(self, w: WorkerState, now: float) -> float | None:
        """The timer's pass (after it released the delayed messages due): expire what waits
        past its time to live; returns when the next may expire (None: nothing may)."""
        own, aging, ttl = w.expiring, w.aging, w.policy.ttl_s
        due = []
        while own and own[0][0] <= now:
            due.append(heapq.heappop(own)[2])
        if ttl is None:
            aging.clear()
        while aging and aging[0][0] + ttl <= now:
            due.append(heapq.heappop(aging)[2])
        expired = False
        for m in due:
            # A running message's entry is dropped: if it is retried, it is tracked again.
            # A message may have two entries (a retry tracks it again): it expires once.
            if not m.expired and not m.started:
                self._unqueue(w, m, now)
                self._expire(w, m, now)
                expired = True
        if expired:
            self.events.after_change(w)
        soonest = own[0][0] if own else None
        if aging:
            at = aging[0][0] + ttl
            soonest = at if soonest is None else min(soonest, at)
        return soonest

    def at_take(self, w: WorkerState) -> bool:
        """A run thread is about to take the next ready message of ``w`` (not paused):
        expire those at the front whose time to live ended; whether one is still ready."""
        now = self.registry.clock()
        ttl = w.policy.ttl_s
        queue = w.queue
        expired = False
        while (m := queue.first()) is not None:
            at = m.expires_at_s
            if at is None and ttl is not None:
                at = m.enqueued_at_s + ttl
            if at is None or at > now:
                break
            queue.popleft()
            if w.late_seqs:
                w._not_late(m.seq)
            self._expire(w, m, now)
            expired = True
        if expired:
            self.events.after_change(w)
        self._compact(w)
        return w.ready()

    def _unqueue(self, w: WorkerState, m: Message, now: float) -> None:
        """Take waiting ``m`` out of wherever it waits."""
        for i, (parked, _) in enumerate(w.parked):
            if parked is m:
                del w.parked[i]
                w.parked_traced.discard(m.seq)
                return
        if m.due_at_s is not None and m.due_at_s > now:
            w.delayed_gone.add(m.seq)  # skipped when it comes due
            if len(w.delayed_gone) > 64 and 2 * len(w.delayed_gone) > len(w.delayed):
                gone = w.delayed_gone
                w.delayed = [e for e in w.delayed if e[1] not in gone]
                heapq.heapify(w.delayed)
                w.delayed_gone = set()
        else:
            # (one held behind spilled messages, paging.py, is not in the queue)
            if w.spill is None or not w.spill.drop_late(lambda held: held is m):
                w.queue.discard(m)
            if w.late_seqs:
                w._not_late(m.seq)

    def _expire(self, w: WorkerState, m: Message, now: float) -> None:
        """``m``, out of its queue, becomes a dead letter with reason "expired"."""
        m.expired = True
        w.forced.discard(m.seq)
        w.forget_key(m)
        error = self._error(w, m, now)
        letter = dead_letter(m, error, now, "expired")
        w.dead.add(letter)
        self.writer.dead(letter)
        self.results.removed(w, [m], error)  # nw.result raises it; a fan-in counts it failed

    @staticmethod
    def _error(w: WorkerState, m: Message, now: float) -> str:
        if m.expires_at_s is not None:
            ttl_s, whose = m.expires_at_s - m.enqueued_at_s, "its own: emit(..., ttl=)"
        else:
            ttl_s, whose = w.policy.ttl_s, "its worker's --ttl"
        if m.attempt == 1:
            ran = "it never ran"
        else:
            ran = f"its attempt {m.attempt} never started (the ones before it failed)"
        return (
            f"Expired: queued {max(0.0, now - m.enqueued_at_s):.1f} s, past its time to live "
            f"of {ttl_s:g} s ({whose}); {ran}. nw.requeue queues it again, with a fresh time "
            "to live.\n"
        )
