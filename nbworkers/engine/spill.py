"""A worker's spilled messages (engine/paging.py): the ready messages kept only in the file,
counted by priority, and the delayed ones that came due behind them; and the ``Message`` of a
queued row read back from the file."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from ..message import Message

if TYPE_CHECKING:
    from .paging import Paging


class Spill:
    """The ready messages of one worker kept only in the file, counted by priority, and the
    delayed messages that came due behind them."""

    __slots__ = ("behind", "count", "late", "lines", "paging", "frozen", "retry_at", "skip")

    def __init__(self, paging: Paging):
        self.paging = paging
        # priority -> [count, first seq, when the oldest of them was emitted (or a little
        # before: the last one read back before them)]
        self.lines: dict[int, list] = {}
        # Delayed messages that came due while older messages of their priority (or higher)
        # were spilled: they go behind those, as in a queue all in memory. Priority -> deque
        # of (the next seq when it came due, message): it runs before spilled ones from then.
        self.late: dict[int, deque[tuple[int, Message]]] = {}
        self.count = 0  # spilled messages and late ones
        self.skip: set[int] = set()  # seqs in a line's range that are not spilled
        # The file held fewer than asked (not written yet): no read until the writer's next
        # batch, so that runs do not each read the file meanwhile.
        self.behind = False
        self.frozen = 0  # a purge or cancel lets the lock go: no page in meanwhile
        self.retry_at: float | None = None  # a read failed: the next not before then

    def add(self, priority: int, first: int, count: int, oldest_s: float) -> None:
        """``count`` messages of ``priority`` from seq ``first`` (newer than any spilled), the
        first emitted at ``oldest_s``."""
        line = self.lines.get(priority)
        if line is None:
            self.lines[priority] = [count, first, oldest_s]
        else:
            line[0] += count
        self.count += count

    def top(self) -> int | None:
        """The highest priority spilled, or None."""
        return max(self.lines) if self.lines else None

    def oldest_s(self) -> float | None:
        """When the oldest message it holds was emitted (about: see ``lines``)."""
        times = [line[2] for line in self.lines.values()]
        times += [m.enqueued_at_s for entries in self.late.values() for _, m in entries]
        return min(times, default=None)

    def by_priority(self) -> dict[int, int]:
        """How many it holds of each priority."""
        counts = {p: line[0] for p, line in self.lines.items()}
        for priority, entries in self.late.items():
            counts[priority] = counts.get(priority, 0) + len(entries)
        return counts

    def above(self, m: Message | None) -> bool:
        """Whether a spilled line runs before ``m`` (a retry that went to the front, say)."""
        return m is not None and bool(self.lines) and max(self.lines) > m.priority

    def in_range(self, m: Message) -> bool:
        line = self.lines.get(m.priority)
        return line is not None and m.seq >= line[1]

    def came_due(self, messages: list[Message], next_seq: int) -> list[Message]:
        """Of delayed ``messages`` that came due now, those that go in memory; the others
        wait here behind the spilled messages of their priority or higher."""
        return [m for m in messages if not self.hold(m, next_seq)]

    def hold(self, m: Message, after: int | None) -> bool:
        """Whether ``m``, a delayed message that came due, waits here (until the messages
        spilled before seq ``after`` are read back) rather than going in memory. ``after``
        None: read at start-up, where it runs in seq order among the ready ones."""
        line = self.lines.get(m.priority)
        if line is not None and m.seq >= line[1]:
            # Its row is in the line's range, and has no due_at if it was not written yet (the
            # writer makes rows from the messages as they are then): never read back as
            # spilled.
            self.skip.add(m.seq)
        top = self.top()
        if top is None or top < m.priority:
            return False
        if after is None:
            if top == m.priority and line is not None and m.seq < line[1]:
                return False  # among the ready ones in memory, nothing higher spilled
            after = m.seq
        self.late.setdefault(m.priority, deque()).append((after, m))
        self.count += 1
        return True

    def held(self) -> list[Message]:
        """The late messages held here, by priority (highest first), then came due first."""
        return [m for p in sorted(self.late, reverse=True) for _, m in self.late[p]]

    def drop_late(self, gone) -> list[Message]:
        """Take out the late messages for which ``gone(m)``; those taken."""
        dropped = []
        for priority, entries in list(self.late.items()):
            kept = deque(e for e in entries if not gone(e[1]))
            dropped += [m for _, m in entries if gone(m)]
            if kept:
                self.late[priority] = kept
            else:
                del self.late[priority]
        self.count -= len(dropped)
        return dropped

    def __repr__(self) -> str:
        return f"<Spill of {self.count:,}: {self.lines}, {sum(map(len, self.late.values()))} late>"


def message_of(row, writer=None) -> Message:
    """The ``Message`` of a queued row read back; one whose attempt had started when the
    kernel died gets its next attempt, and the file says so too (through ``writer``; None:
    only to list or look at, the file left as it is)."""
    attempt = row.attempt + 1 if row.started else row.attempt
    m = Message(
        row.seq,
        row.worker,
        row.enqueued_at,
        attempt,
        row.data,
        row.due_at,
        row.key,
        row.priority,
        row.expires_at,
    )
    m.written = True
    if row.started and writer is not None:
        writer.update(m)  # queued again, not running
    return m
