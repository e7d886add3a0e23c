"""A worker's counts over the last minutes, for its panel's sparklines: queue depth, and done
and failed per second.

A ring buffer of at most ``SAMPLES`` samples, a second apart at least, taken when a panel
reads a snapshot (at most every 0.4 s while something changes). A run costs nothing more than
the counters it already moves; with no panel shown, nothing is sampled. Between two samples
nothing changed that a panel was told of, so a sparkline holds each sample until the next.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

SAMPLES = 300  # five minutes at one a second
EVERY_S = 1.0


class Sample(NamedTuple):
    at_s: float  # the runtime's clock (time.time())
    queued: int
    running: int
    done: int
    failed: int


class History:
    """The samples of one worker, oldest first."""

    __slots__ = ("samples",)

    def __init__(self):
        self.samples: deque[Sample] = deque(maxlen=SAMPLES)

    def sample(self, now: float, counts: dict) -> tuple[Sample, ...]:
        """Keep the counts at ``now`` unless the last sample is under EVERY_S old; the samples
        kept (they change at most every EVERY_S: a panel sends them only then)."""
        samples = self.samples
        if not samples or now - samples[-1].at_s >= EVERY_S or now < samples[-1].at_s:
            c = counts
            samples.append(Sample(now, c["queued"], c["running"], c["done"], c["failed"]))
        return tuple(samples)
