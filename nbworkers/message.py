"""A queued message: what ``emit`` makes and a handler receives as ``message``."""

from __future__ import annotations

from datetime import datetime, timezone


def message_id(seq: int) -> str:
    """The id users see for message number ``seq``."""
    return f"m{seq}"


def parse_id(text: str, prefix: str) -> int:
    """The number inside an id such as ``m12`` or ``t7``; ValueError for anything else."""
    if isinstance(text, str) and text.startswith(prefix) and text[1:].isdigit():
        return int(text[1:])
    raise ValueError(f"{text!r} is not an nbworkers id (ids look like {prefix}123)")


class Message:
    """One emitted value waiting for, or going through, its worker.

    ``data`` is the value pickled at emit time: each run unpickles its own copy.
    """

    __slots__ = ("seq", "worker", "enqueued_at_s", "attempt", "data")

    def __init__(self, seq: int, worker: str, enqueued_at_s: float, attempt: int, data: bytes):
        self.seq = seq
        self.worker = worker
        self.enqueued_at_s = enqueued_at_s
        self.attempt = attempt
        self.data = data

    @property
    def id(self) -> str:
        return message_id(self.seq)

    @property
    def enqueued_at(self) -> datetime:
        return datetime.fromtimestamp(self.enqueued_at_s, timezone.utc)

    def __repr__(self) -> str:
        return f"<Message {self.id} to {self.worker!r}, attempt {self.attempt}>"
