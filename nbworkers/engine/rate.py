"""Rate limits (``--rate 10/s``): what a rate is, and the token bucket that enforces it.

The bucket holds ``count`` tokens; a run takes one when it starts, and each token comes back
exactly one period after it was taken. So at most ``count`` runs start in any window of one
period (a burst may take them all at once), however many slots are free. The bucket is the log
of the starts of the last period (``WorkerState.rate_log``, oldest first); it is written to the
file (``rate_starts``), so that a restarted kernel keeps the limit.

Nothing here takes a lock or starts a thread: the engine calls it with its lock held.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

from ..errors import ArgumentValueError

PERIODS_S = {"s": 1.0, "m": 60.0, "h": 3600.0}
# The most starts a period may allow: the bucket keeps one time per token in memory.
MAX_RATE_COUNT = 100_000
_RATE_RE = re.compile(r"\s*(\d+)\s*/\s*([smh])\s*")


@dataclass(frozen=True)
class Rate:
    """At most ``count`` runs start in any window of ``period_s`` seconds."""

    count: int
    unit: str  # "s", "m" or "h"

    @property
    def period_s(self) -> float:
        return PERIODS_S[self.unit]

    def __str__(self) -> str:
        return f"{self.count}/{self.unit}"


def parse_rate(value) -> Rate | None:
    """``value`` ("10/s", "600/m", "5/h", a ``Rate`` or None) as a ``Rate``; ArgumentValueError
    saying what a rate looks like for anything else."""
    if value is None or isinstance(value, Rate):
        return value
    if isinstance(value, str):
        match = _RATE_RE.fullmatch(value)
        if match and 1 <= int(match[1]) <= MAX_RATE_COUNT:
            return Rate(int(match[1]), match[2])
    raise ArgumentValueError(
        f"rate must look like 10/s, 600/m or 5/h (a whole number of runs from 1 to "
        f"{MAX_RATE_COUNT:,} per second, minute or hour), not {value!r}; for less than one "
        "a second, count per minute or hour: 0.5/s is 30/m"
    )


def _trim(log: deque[float], rate: Rate, now: float) -> None:
    """Forget the starts whose token is back: those one period or more before ``now``."""
    back = now - rate.period_s
    while log and log[0] <= back:
        log.popleft()


def next_token_s(log: deque[float], rate: Rate, now: float) -> float | None:
    """When the next token comes back if none is free at ``now``; None if a run may start."""
    _trim(log, rate, now)
    over = len(log) - rate.count
    if over < 0:
        return None
    # The oldest starts' tokens come back first: one more than the excess must be back.
    return log[over] + rate.period_s


def take_token(log: deque[float], now: float) -> None:
    """A run started at ``now`` (``next_token_s`` said a token was free)."""
    log.append(now)


def restored(times, rate: Rate | None = None, now: float | None = None) -> deque[float]:
    """The log of a restarted kernel from the start times the file holds."""
    log = deque(sorted(times))
    if rate is not None and now is not None:
        _trim(log, rate, now)
    return log
