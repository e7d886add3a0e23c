"""What the engine hands out about workers: a panel's snapshot, a worker's definition."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import tzinfo

from ..handlers import Handler
from ..schedule import Schedule
from ..trace import Trace
from .policy import Policy


@dataclass(frozen=True)
class WorkerSnapshot:
    """Everything a panel shows about one worker or cron, read in one go under the lock."""

    name: str
    defined: bool  # a handler is defined (else: messages wait for one)
    kind: str  # "worker" or "cron"
    paused: bool
    pause_reason: str | None
    counts: dict  # as ``Runtime.counts``
    concurrency: int
    policy: Policy
    schedule: str | None  # a cron's schedule in words
    next_run_s: float | None  # a cron's next run (None: paused, or schedule_error)
    schedule_error: str | None  # why a cron has no next run
    zone: tzinfo | None  # the zone a cron's times are shown in
    last_run_s: float | None  # when a cron last ran
    last_error: str | None  # the newest kept trace's error
    failing: int  # failed runs in a row, once at least failure_notice_after; else 0
    traces: list[Trace]  # newest first
    oldest_s: float | None  # when the oldest queued message was enqueued
    delayed: int  # messages waiting for a delay or a retry
    next_due_s: float | None  # when the first of them is due
    now: float  # the runtime's clock when this was read
    # Ready messages by priority, highest first ({} when none is ready).
    priorities: dict[int, int] = field(default_factory=dict)
    running_ids: tuple[str, ...] = ()  # the message ids of the runs going, oldest first
    running_attempts: tuple[int, ...] = ()  # their attempts, in the same order
    stopping_ids: tuple[str, ...] = ()  # those nw.stop was asked to stop (not ended yet)
    removed: bool = False  # its handler was removed (nw.remove) and not defined since
    # Its biggest failure groups (engine/failures.py): (fingerprint, title, count), biggest first.
    failures: tuple[tuple[str, str, int], ...] = ()
    # When each run going started (time.time()) and how far it got (progress.Progress or None),
    # in the order of running_ids.
    running_started: tuple[float, ...] = ()
    running_progress: tuple = ()
    # Its counts over the last minutes, oldest first (engine/history.py), the last one now.
    history: tuple = ()


@dataclass(frozen=True)
class Definition:
    """A defined worker or cron: what defining it again (on another file) needs."""

    name: str
    handler: Handler
    concurrency: int
    schedule: Schedule | None  # None: a worker
    policy: Policy
