"""A queued message: what ``emit`` makes and a handler receives as ``message``."""

from __future__ import annotations

from datetime import UTC, datetime

from .errors import ArgumentValueError


def message_id(seq: int) -> str:
    """The id users see for message number ``seq``."""
    return f"m{seq}"


def parse_id(text: str, prefix: str) -> int:
    """The number inside an id such as ``m12`` or ``t7``; ValueError for anything else."""
    if isinstance(text, str) and text.startswith(prefix) and text[1:].isdigit():
        return int(text[1:])
    raise ArgumentValueError(f"{text!r} is not an nbworkers id (ids look like {prefix}123)")


class Message:
    """One emitted value waiting for, or going through, its worker.

    ``data`` is the value pickled at emit time: each run unpickles its own copy.
    ``attempt`` counts runs from 1; ``due_at_s`` is set while it waits for a delay or a
    retry's backoff; ``key`` is its dedupe key.
    """

    __slots__ = (
        "seq",
        "worker",
        "enqueued_at_s",
        "attempt",
        "data",
        "due_at_s",
        "key",
        "started",
        "written",
    )

    def __init__(
        self,
        seq: int,
        worker: str,
        enqueued_at_s: float,
        attempt: int,
        data: bytes,
        due_at_s: float | None = None,
        key: str | None = None,
    ):
        self.seq = seq
        self.worker = worker
        self.enqueued_at_s = enqueued_at_s
        self.attempt = attempt
        self.data = data
        self.due_at_s = due_at_s
        self.key = key
        self.started = False  # this attempt has begun (a crash then means the next attempt)
        self.written = False  # its row is in the database (or in a batch being written)

    @property
    def id(self) -> str:
        return message_id(self.seq)

    @property
    def enqueued_at(self) -> datetime:
        return datetime.fromtimestamp(self.enqueued_at_s, UTC)

    @property
    def due_at(self) -> datetime | None:
        """When a delayed message (or a retry) may run; None when it may run now."""
        if self.due_at_s is None:
            return None
        return datetime.fromtimestamp(self.due_at_s, UTC)

    def __repr__(self) -> str:
        return f"<Message {self.id} to {self.worker!r}, attempt {self.attempt}>"
