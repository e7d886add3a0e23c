"""The gate of a worker with a rate limit or batches: whether a run may start now, however many
slots are free.

``WorkerState.ready`` asks it (with the engine's lock held) once the worker has a message, a
handler and no pause. When it says no, the messages stay queued (a wait is not a run: no slot,
no thread, no sleep), and it tells the timer when to look again (``wait_until_s``): when the
next token comes back (``rate.py``) or when the batch being collected has waited its
``batch_wait_s``. The timer then wakes the worker's run threads (``Timers.run_locked``).
"""

from __future__ import annotations

from collections.abc import Callable

from .rate import next_token_s
from .worker import WorkerState


class Gate:
    """The gate of one worker: ``gate(w)`` is True when a run may start now."""

    __slots__ = ("clock", "wake_at")

    def __init__(self, clock: Callable[[], float], wake_at: Callable[[float], None]):
        self.clock = clock
        self.wake_at = wake_at  # Timers.wake_at

    def __call__(self, w: WorkerState) -> bool:
        policy = w.policy
        now = self.clock()
        due = None
        if policy.batch is not None and w.ready_count() < policy.batch:
            if w.batch_open_s is None:
                w.batch_open_s = now
            due = w.batch_open_s + policy.batch_wait_s
            if due <= now:
                due = None
        if due is None and policy.rate is not None:
            due = next_token_s(w.rate_log, policy.rate, now)
        if due is None:
            return True
        if w.wait_until_s is None or due < w.wait_until_s or w.wait_until_s <= now:
            w.wait_until_s = due
            self.wake_at(due)
        return False

    def woken(self, w: WorkerState, count: int) -> None:
        """``count`` messages of ``w`` became ready: a batch begins to be collected if none
        was (or the queue had been emptied meanwhile, by a purge)."""
        if w.batch_open_s is None or w.ready_count() <= count:
            w.batch_open_s = self.clock()

    def batch_taken(self, w: WorkerState) -> None:
        """A batch was taken. The messages left stay in the collection going on (they became
        ready after it began), so that none waits longer than the batch wait; with none left,
        the next message that becomes ready begins a new one."""
        if not w.ready_count():
            w.batch_open_s = None


def attach(w: WorkerState, clock: Callable[[], float], wake_at: Callable[[float], None]) -> None:
    """Give ``w`` a gate if its policy has a rate limit or batches, else none (the lock is
    held)."""
    policy = w.policy
    if policy.rate is None and policy.batch is None:
        w.gate = None
        w.wait_until_s = None
        w.batch_open_s = None
    elif w.gate is None:
        w.gate = Gate(clock, wake_at)
