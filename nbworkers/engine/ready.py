"""The ready queue of one worker: its messages that may run now, in the order they run.

Higher priority first, and within one priority first in, first out (by the order they were
queued: ``seq``, except a retry with no backoff, which goes to the front of its priority).

One ``deque`` per priority, and the sorted list of the priorities other than 0 that have
messages: queueing and taking a message cost the same however long the queue is (a deque's
append and popleft, plus, for a priority not seen yet, an insertion into a list of at most
``MAX_PRIORITY * 2`` numbers), never a scan or a sort of the messages. While every message is
priority 0 (the usual case) each operation is one call on the priority-0 deque.

A message can also be taken out lazily (``discard``: an expired message, say): it stays in
its deque, is skipped when reached, and no longer counts; the deques are rebuilt once most of
what they hold is gone, so that this too costs O(1) amortised.

It offers the deque operations the engine uses (``append``, ``appendleft``, ``extend``,
``extendleft``, ``popleft``, ``remove``, ``clear``, ``len``, ``bool``, iteration in run order).
"""

from __future__ import annotations

import bisect
import itertools
from collections import deque
from collections.abc import Iterable, Iterator

from ..message import Message

# Priorities are whole numbers from -MAX_PRIORITY to MAX_PRIORITY (emit's priority=).
MAX_PRIORITY = 1000


class ReadyQueue:
    """Ready messages in run order: priority descending, then first in, first out."""

    __slots__ = ("_gone", "_levels", "_lines", "_others", "zero")

    def __init__(self, messages: Iterable[Message] = ()):
        # The messages of priority 0. Appending to it queues at priority 0 (an emit's fast
        # path: one C call, as a plain deque); any other change goes through the methods.
        self.zero: deque[Message] = deque()
        self._lines: dict[int, deque[Message]] = {}  # other priorities: never an empty deque
        self._levels: list[int] = []  # the keys of _lines, ascending
        self._gone: dict[int, int] = {}  # seq -> priority of messages discarded, still held
        # How many messages _lines hold: len() is then O(1), and may be read without the
        # engine's lock (a guess, in Dispatch._superseded) with no dict iterated meanwhile.
        self._others = 0
        for m in messages:
            self.append(m)

    # ----- adding ---------------------------------------------------------------------------

    def _line(self, priority: int) -> deque[Message]:
        """The deque of ``priority`` (not 0), made if it has none."""
        line = self._lines.get(priority)
        if line is None:
            line = self._lines[priority] = deque()
            bisect.insort(self._levels, priority)
        return line

    def append(self, m: Message) -> None:
        """At the back of its priority."""
        if m.priority:
            self._line(m.priority).append(m)
            self._others += 1
        else:
            self.zero.append(m)

    def appendleft(self, m: Message) -> None:
        """At the front of its priority (a retry with no backoff, a parked message)."""
        if m.priority:
            self._line(m.priority).appendleft(m)
            self._others += 1
        else:
            self.zero.appendleft(m)

    def extend(self, messages: Iterable[Message], priority: int | None = None) -> None:
        """Each at the back of its priority; ``priority``: all of them have that one (one
        emit's), so they are added at once."""
        if priority == 0:
            self.zero.extend(messages)
        elif priority is not None:
            messages = list(messages)
            if messages:
                self._line(priority).extend(messages)
                self._others += len(messages)
        else:
            for m in messages:
                self.append(m)

    def extendleft(self, messages: Iterable[Message]) -> None:
        """Each at the front of its priority, in turn (as ``deque.extendleft``: reversed)."""
        for m in messages:
            self.appendleft(m)

    # ----- taking ---------------------------------------------------------------------------

    def popleft(self) -> Message:
        """The next message to run, taken out; IndexError when there is none."""
        if not self._levels and not self._gone:
            return self.zero.popleft()
        return self._popleft_slow()

    def _front(self) -> tuple[int, deque[Message]]:
        """The priority and deque whose first message runs next (the queue holds one)."""
        levels = self._levels
        top = levels[-1] if levels else 0
        if top > 0 or (top < 0 and not self.zero):
            return top, self._lines[top]
        return 0, self.zero

    def _popleft_slow(self) -> Message:
        gone = self._gone
        while True:
            priority, line = self._front()
            m = line.popleft()  # IndexError: nothing at all
            if priority:
                self._others -= 1
                if not line:
                    del self._lines[priority]
                    self._levels.pop()  # the front is the highest (or the only one left)
            if gone and gone.pop(m.seq, None) is not None:
                continue  # discarded before: skipped
            return m

    def first(self) -> Message | None:
        """The next message to run, left in place; None when there is none."""
        if not self._levels and not self._gone:
            return self.zero[0] if self.zero else None
        return next(iter(self), None)

    def lowest(self) -> int | None:
        """The lowest priority it holds a message of (discarded ones included); None if
        empty."""
        levels = self._levels
        if levels and levels[0] < 0:
            return levels[0]
        if self.zero:
            return 0
        return levels[0] if levels else None

    def remove(self, m: Message) -> None:
        """Take ``m`` out (found by a scan of its priority's messages); ValueError if absent."""
        if m.seq in self._gone:
            raise ValueError(f"{m!r} is not in the ready queue")
        priority = m.priority
        line = self._lines.get(priority, ()) if priority else self.zero
        if not line:
            raise ValueError(f"{m!r} is not in the ready queue")
        line.remove(m)
        if priority:
            self._others -= 1
            if not line:
                del self._lines[priority]
                self._levels.remove(priority)

    def discard(self, m: Message) -> None:
        """Take ``m``, which is in the queue, out in O(1): it is skipped when reached."""
        self._gone[m.seq] = m.priority
        if len(self._gone) > 64 and 2 * len(self._gone) > self._held():
            self._compact()

    def _compact(self) -> None:
        """Rebuild the deques without the discarded messages."""
        gone = self._gone
        kept = [m for m in self._held_in_order() if m.seq not in gone]
        self.clear()
        for m in kept:
            self.append(m)

    def clear(self) -> None:
        self.zero = deque()
        self._lines = {}
        self._levels = []
        self._gone = {}
        self._others = 0

    # ----- reading --------------------------------------------------------------------------

    def _held(self) -> int:
        """How many messages the deques hold, discarded ones included."""
        return len(self.zero) + self._others

    def __len__(self) -> int:
        return len(self.zero) + self._others - len(self._gone)

    def __bool__(self) -> bool:
        if not self._gone:
            return bool(self.zero) or bool(self._levels)
        return len(self) > 0

    def _lines_in_order(self) -> list[deque[Message]]:
        levels = self._levels
        lines = self._lines
        return (
            [lines[p] for p in reversed(levels) if p > 0]
            + [self.zero]
            + [lines[p] for p in reversed(levels) if p < 0]
        )

    def _held_in_order(self) -> Iterator[Message]:
        if not self._levels:
            return iter(self.zero)
        return itertools.chain.from_iterable(self._lines_in_order())

    def __iter__(self) -> Iterator[Message]:
        """The messages in the order they will run (``itertools.islice`` takes the first)."""
        held = self._held_in_order()
        if not self._gone:
            return held
        gone = self._gone
        return (m for m in held if m.seq not in gone)

    def firsts(self, count: int) -> Iterator[Message]:
        """The first ``count`` of each priority: where the longest-waiting messages are."""
        gone = self._gone
        for line in self._lines_in_order():
            taken = 0
            for m in line:
                if gone and m.seq in gone:
                    continue
                yield m
                taken += 1
                if taken >= count:
                    break

    def by_priority(self) -> dict[int, int]:
        """How many messages each priority has, highest first (priorities with none left
        out)."""
        counts = {p: len(self._lines[p]) for p in reversed(self._levels) if p > 0}
        if self.zero:
            counts[0] = len(self.zero)
        counts.update((p, len(self._lines[p])) for p in reversed(self._levels) if p < 0)
        for priority in self._gone.values():
            counts[priority] -= 1
        return {p: n for p, n in counts.items() if n > 0}

    def __repr__(self) -> str:
        return f"<ReadyQueue of {len(self):,}: {self.by_priority()}>"
