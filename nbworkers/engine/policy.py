"""How a worker runs its messages: ``Policy`` (retries and their backoff, timeout, executor,
traces kept, ttl, rate, batches) and the bounds its arguments are checked against."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from ..errors import ArgumentValueError
from ..executors import check as check_executor
from .rate import Rate, parse_rate

# The longest a retry waits, however many attempts failed before it.
MAX_BACKOFF_S = 3600.0
# The most traces a worker may keep (--keep): each holds its input, result and output in memory.
MAX_KEEP = 10_000
# The most messages one batch may hold (--batch), and how long a partial batch waits by default
# (--batch-wait) for more messages before it starts anyway.
MAX_BATCH = 100_000
DEFAULT_BATCH_WAIT_S = 1.0
MAX_BATCH_WAIT_S = 3600.0


@dataclass(frozen=True)
class Policy:
    """How a worker runs its messages: ``retries`` more attempts after a failed first,
    waiting ``backoff_s`` * 2**(n-1) (with jitter, at most an hour) before retry n; a run
    past ``timeout_s`` seconds is abandoned and counts as failed; ``executor`` says where the
    code runs (``executors/``); ``keep`` is how many of its traces are kept (None: the
    runtime's ``traces_kept``); ``ttl_s``: a message still queued that many seconds after
    its emit expires (a dead letter) instead of running, unless it has a ttl of its own;
    ``rate`` (a ``Rate``, or text such as "10/s") is how many runs may start in any window of
    a second, minute or hour; ``batch`` makes the handler take up to that many events at once,
    a partial batch waiting ``batch_wait_s`` (default 1 s) for more."""

    retries: int = 0
    backoff_s: float = 1.0
    timeout_s: float | None = None
    executor: str = "threads"
    keep: int | None = None
    ttl_s: float | None = None
    rate: Rate | None = None
    batch: int | None = None
    batch_wait_s: float | None = None

    def __post_init__(self):
        check_executor(self.executor)
        if not _whole(self.retries) or self.retries < 0:
            raise ArgumentValueError(
                f"retries must be a whole number, 0 or more, not {self.retries!r}"
            )
        if not _number(self.backoff_s) or self.backoff_s < 0:
            raise ArgumentValueError(
                f"backoff must be a number of seconds, 0 or more, not {self.backoff_s!r}"
            )
        if self.timeout_s is not None and (not _number(self.timeout_s) or self.timeout_s <= 0):
            raise ArgumentValueError(
                f"timeout must be a number of seconds above 0 (or None), not {self.timeout_s!r}"
            )
        if self.keep is not None and (not _whole(self.keep) or not 1 <= self.keep <= MAX_KEEP):
            raise ArgumentValueError(
                f"keep must be a whole number of traces from 1 to {MAX_KEEP:,}, not {self.keep!r}"
            )
        if self.ttl_s is not None and (not _number(self.ttl_s) or self.ttl_s <= 0):
            raise ArgumentValueError(
                f"ttl must be a number of seconds above 0 (or None), not {self.ttl_s!r}"
            )
        self._check_flow()

    def _check_flow(self) -> None:
        """Check (and normalise) ``rate``, ``batch`` and ``batch_wait_s``."""
        object.__setattr__(self, "rate", parse_rate(self.rate))
        if self.batch is not None and (not _whole(self.batch) or not 1 <= self.batch <= MAX_BATCH):
            raise ArgumentValueError(
                f"batch must be a whole number of messages from 1 to {MAX_BATCH:,} (or None), "
                f"not {self.batch!r}"
            )
        wait = self.batch_wait_s
        if wait is not None:
            if self.batch is None:
                raise ArgumentValueError(
                    "batch_wait needs batch: give the batch size too, such as --batch 500"
                )
            if not _number(wait) or not 0 <= wait <= MAX_BATCH_WAIT_S:
                raise ArgumentValueError(
                    f"batch_wait must be a number of seconds from 0 to {MAX_BATCH_WAIT_S:g}, "
                    f"not {wait!r}"
                )
        elif self.batch is not None:
            object.__setattr__(self, "batch_wait_s", DEFAULT_BATCH_WAIT_S)

    def retry_delay_s(self, failed_attempt: int, rng=random) -> float:
        """How long to wait before the attempt after ``failed_attempt``: exponential, capped,
        with "equal jitter" (between half and all of it) so that retries of many messages that
        failed together spread out."""
        full = min(MAX_BACKOFF_S, self.backoff_s * 2.0 ** min(failed_attempt - 1, 60))
        return full / 2 + rng.uniform(0, full / 2)


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value) -> bool:
    """A whole number (an int, not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool)
