"""How long the writer waits between two group commits (``Writer.loop``).

At least ``flush_interval_s`` (5 ms: a few milliseconds of work gather into one batch). And
after a trickle of small batches, longer, in proportion to what the last one cost. A commit
costs about a millisecond a statement whatever its size (NOTES.md), so a slow trickle of runs (a
CPU-heavy handler in a pool process ending every few tens of milliseconds) made a batch of each
run's end: 8 ms of the kernel's CPU a run, a sixth of what two pool processes had on two
cores (``benchmarks/executors.py``: the heavy runs went at 80 % of ``ProcessPoolExecutor``'s
rate; 0.91 to 1.00 of it with this). Resting nine times the batch's CPU time keeps the writer to
about a tenth of a core. A drain's batches are big, their cost is their rows, and resting
would only let the changes pile up: resting after them, or after the first small batch of a
drain, slowed ``benchmarks/core.py``'s drain by 5 to 20 %. A batch holding new messages (emits
from a handler or a thread of the user's) never rests: they reach disk within a few milliseconds.
What a rest delays, by up to a tenth of a second, is runs' ends and attempts' starts: after a
crash in that window, a run that had ended runs again (at least once), and an attempt whose
start was not written comes back with the same ``message.attempt``.
"""

from __future__ import annotations

from .batching import Taken

# After a small batch, the writer rests at least this many times the CPU time it took, up to
# REST_MAX_S: at most a tenth of a core on commits, a tenth of a second later at worst.
REST_PER_CPU = 9.0
REST_MAX_S = 0.1
# Small: fewer changes of messages than this. Two small batches in a row are a trickle.
REST_BELOW = 256


def size(taken: Taken) -> int:
    """How many changes of messages a batch held."""
    return len(taken.inserts) + len(taken.updates) + len(taken.acks) + len(taken.dead_inserts)


class Pace:
    """The gap after each batch: ``flush_interval_s``, or longer in a trickle."""

    __slots__ = ("flush_interval_s", "small")

    def __init__(self, flush_interval_s: float):
        self.flush_interval_s = flush_interval_s
        self.small = False  # the last batch was small

    def gap_s(self, taken: Taken, cpu_s: float) -> float:
        """The gap after writing ``taken``, which took ``cpu_s`` of the writer's CPU time."""
        trickle = self.small
        self.small = size(taken) < REST_BELOW
        if not (trickle and self.small) or taken.inserts:
            # (a batch with new messages, emitted by a handler or a thread: those reach disk
            # within a few milliseconds as they always did; a rest delays only runs' ends and
            # starts, which a crash meanwhile runs again, at least once)
            return self.flush_interval_s
        return max(self.flush_interval_s, min(cpu_s * REST_PER_CPU, REST_MAX_S))
