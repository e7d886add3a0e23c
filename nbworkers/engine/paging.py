"""Paging: a worker's ready messages beyond a window are kept only in the file.

Every queued message is in the file (the writer inserts it); a worker keeps at most
``NBWorkers.queue_window`` of its ready messages in memory as ``Message`` objects, the first
ones to run. The others are *spilled*: only counted here, per priority (``Spill``), and read
back from the file in run order, a page at a time, as the window drains (``page_in``). The
kernel's memory then grows with the window, not with the queue.

The rule that keeps the run order: everything in memory runs before everything spilled. An
emit of priority p is spilled when the worker already spills at p or higher (older messages
wait on disk before it), or when the window is full and nothing in it has a lower priority;
otherwise it stays in memory (a priority above everything spilled runs first anyway, so the
window may grow by those).

A spill line (one priority) stands for "the ready rows of this worker and priority from seq
``first``", ``count`` of them. A message in a line's range that is not spilled (cancelled
before its removal is written, or a delayed one that came due) is in ``skip``: reading the line
back passes over it. A delayed message that comes due behind
spilled ones (of its priority or higher) waits in ``late`` until they are read back, as it
would wait behind them in memory.

Paging in never lets go of the engine's lock: it reads what the file holds. Spilled messages
the writer has not written yet come on a later page; a worker whose window is empty meanwhile
asks the writer to write now, and is woken once it has (``written``); until then no run reads
the file for it again.
"""

from __future__ import annotations

from collections import deque

from ..log import log
from ..message import Message
from .worker import WorkerState

# A purge drops spilled messages this many at a time, writing between two chunks.
PURGE_CHUNK = 100_000


class Spill:
    """The ready messages of one worker kept only in the file, counted by priority, and the
    delayed messages that came due behind them."""

    __slots__ = ("behind", "count", "late", "lines", "paging", "skip")

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
            if line is not None and m.seq < line[1]:
                return False  # among the ready ones in memory
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


def message_of(row, writer) -> Message:
    """The ``Message`` of a queued row read back; one whose attempt had started when the
    kernel died gets its next attempt, and the file says so too."""
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
    if row.started:
        writer.update(m)  # queued again, not running
    return m


class Paging:
    """The window of each worker's ready messages, for one engine (the lock is held in every
    method)."""

    def __init__(self, registry, writer, store, window: int):
        self.registry = registry
        self.writer = writer
        self.store = store
        self.window = max(1, window)
        self.low = max(1, self.window // 2)  # page in once the window holds fewer
        self.wake = self.wake_all = None  # Dispatch.wake and wake_all, set by the runtime
        self.behind: set[WorkerState] = set()  # waiting for their spilled messages' write
        self.expiry = None  # Expiry: messages paged in may expire
        self.results = None  # Results: spilled messages purged or cancelled end

    # ----- in -----------------------------------------------------------------------------

    def admit(self, w: WorkerState, messages: list[Message], priority: int) -> list[Message]:
        """Of ``messages`` (one emit's, all of ``priority``, newer than any other), those
        that go in ``w``'s window; the others are spilled."""
        spill = w.spill
        top = None if spill is None else spill.top()
        if not messages:
            return messages
        if top is not None and top >= priority:
            kept, spilled = [], messages
        else:
            room = self.window - len(w.queue)
            lowest = w.queue.lowest()
            if room >= len(messages) or w.is_cron or (lowest is not None and lowest < priority):
                return messages  # it fits, or it must run before messages in memory
            room = max(room, 0)
            kept, spilled = messages[:room], messages[room:]
            if spill is None:
                spill = w.spill = Spill(self)
        spill.add(priority, spilled[0].seq, len(spilled), spilled[0].enqueued_at_s)
        return kept

    def start(self, w: WorkerState, row) -> None:
        """``w`` starts with a spilled line loaded from the file (a ``SpillRow``)."""
        if w.spill is None:
            w.spill = Spill(self)
        w.spill.add(row.priority, row.first, row.count, row.oldest)

    def page_in(self, w: WorkerState) -> bool:
        """Read spilled messages of ``w`` into its window, in run order, up to ``window``
        (as many as the file holds yet); whether any came."""
        spill = w.spill
        if spill.behind:
            return False  # nothing new in the file until the writer's next batch
        want = self.window - len(w.queue)
        got: list[Message] = []
        behind = False
        try:
            for priority in sorted(spill.lines.keys() | spill.late.keys(), reverse=True):
                if len(got) >= want:
                    break
                line = spill.lines.get(priority)
                if line is None:  # late ones only, and nothing higher is spilled any more
                    got += self._release(spill, priority)
                    continue
                limit = min(want - len(got), line[0]) + len(spill.skip)
                rows = self.store.queued_page(w.name, priority, line[1], limit, self._last())
                got += self._take_rows(w, spill, priority, rows)
                if len(rows) < limit:
                    self._short(w, spill, priority)
                    behind = priority in spill.lines
                if priority in spill.lines:
                    break  # the rest of this line waits for a next page (or the writer)
                got += self._release(spill, priority)
        except Exception as exc:  # noqa: BLE001 - logged; the messages wait in the file
            log.error("nbworkers could not read %r's queued messages back: %s", w.name, exc)
            behind = True  # tried again after the writer's next batch
        got += self._settle(w)
        if behind and w.spill is not None:
            self._wait_for_writer(w)
        if got:
            w.queue.extend(got)
            if self.expiry is not None:
                self.expiry.track(w, got)
            self.wake(w, len(got))  # idle run threads take them too
        return bool(got)

    def _last(self) -> int:
        """The highest seq given out so far."""
        return self.writer.next_seq - 1

    def _settle(self, w: WorkerState) -> list[Message]:
        """Once nothing is spilled, ``w`` has no spill: its late messages, to go in memory."""
        spill = w.spill
        if spill is None or spill.lines:
            return []
        w.spill = None
        return [m for p in sorted(spill.late, reverse=True) for m in self._release(spill, p)]

    @staticmethod
    def _release(spill: Spill, priority: int) -> list[Message]:
        entries = spill.late.pop(priority, ())
        spill.count -= len(entries)
        return [m for _, m in entries]

    def _take_rows(self, w: WorkerState, spill: Spill, priority: int, rows) -> list[Message]:
        """The messages of ``rows`` (a page of a line), with the late ones that go between."""
        line = spill.lines[priority]
        skip, keys, writer = spill.skip, w.keys, self.writer
        late = spill.late.get(priority)
        came = []
        taken = 0  # of the line's own
        for row in rows:
            while late and late[0][0] <= row.seq:
                came.append(late.popleft()[1])
                spill.count -= 1
            if row.seq in skip:
                skip.discard(row.seq)
                continue
            m = message_of(row, writer)
            if m.key is not None:
                known = keys.get(m.key)
                if known is not None and known.seq == m.seq:
                    keys[m.key] = m  # the same message: this object from now on
            came.append(m)
            taken += 1
        if late is not None and not late:
            del spill.late[priority]
        if rows:
            line[1] = rows[-1].seq + 1
            line[2] = rows[-1].enqueued_at
        self._less(spill, priority, taken)
        if skip and spill.lines:  # seqs no line can read back any more
            first = min(line[1] for line in spill.lines.values())
            skip.difference_update([seq for seq in skip if seq < first])
        return came

    @staticmethod
    def _less(spill: Spill, priority: int, count: int) -> None:
        """``count`` messages of a line left it."""
        line = spill.lines[priority]
        line[0] -= count
        spill.count -= count
        if line[0] <= 0:
            del spill.lines[priority]
            spill.count -= line[0]  # never below what the lines hold

    def _short(self, w: WorkerState, spill: Spill, priority: int) -> None:
        """The file held fewer of a line than asked: the rest is not written yet, unless
        everything is written (then the count was wrong: said, and set right)."""
        if priority in spill.lines and self.writer.all_written():
            missing = spill.lines.pop(priority)[0]
            spill.count -= missing
            log.warning(
                "nbworkers: %d queued message(s) of %r counted but not found in the file",
                missing,
                w.name,
            )

    def _wait_for_writer(self, w: WorkerState) -> None:
        """Spilled messages of ``w`` are not in the file yet: the writer writes now, and
        ``written`` lets ``w`` read again (and wakes it if its window is empty)."""
        w.spill.behind = True
        self.behind.add(w)
        self.writer.write_soon()

    def written(self) -> None:
        """The writer wrote a batch (the lock is held): workers waiting for it look again."""
        behind, self.behind = self.behind, set()
        for w in behind:
            if w.spill is not None:
                w.spill.behind = False
                if not w.queue:
                    self.wake_all(w)

    # ----- out ----------------------------------------------------------------------------

    def purge(self, w: WorkerState) -> int:
        """Drop every spilled message of ``w`` emitted so far; how many. Writes between
        chunks, the lock let go meanwhile: NBWorkersError if a write fails, with what was
        dropped until then dropped and the rest still queued."""
        last = self._last()  # messages emitted meanwhile stay
        dropped = 0
        self.writer.write_now()
        while w.spill is not None:
            spill = w.spill
            todo = [p for p, line in spill.lines.items() if line[1] <= last]
            if not todo:
                break
            priority = max(todo)
            line = spill.lines[priority]
            seqs = self.store.queued_seqs(w.name, priority, line[1], last, PURGE_CHUNK)
            line[1] = seqs[-1] + 1 if len(seqs) == PURGE_CHUNK else last + 1
            ended = [seq for seq in seqs if seq not in spill.skip]
            spill.skip.difference_update(seqs)
            self._less(spill, priority, len(ended))
            w.queue.extend(self._settle(w))
            self.writer.ack(ended)
            self.results.removed_seqs(w, ended)
            dropped += len(ended)
            self.writer.write_now()
        return dropped

    def find(self, seq: int) -> tuple[WorkerState, Message] | None:
        """Spilled message ``seq`` and its worker, or None (writes first: it may not be
        written yet)."""
        reg = self.registry
        if not any(w.spill is not None for w in reg.workers.values()):
            return None
        if not self.writer.all_written():
            self.writer.write_now()
        row = self.store.queued_row(seq)
        w = None if row is None else reg.workers.get(row.worker)
        if w is None or w.spill is None or row.due_at is not None:
            return None
        m = _listed(row)
        if not w.spill.in_range(m) or seq in w.spill.skip:
            return None
        return w, m

    def cancel(self, w: WorkerState, m: Message) -> None:
        """Take spilled message ``m`` (from ``find``) out of ``w``'s queue."""
        spill = w.spill
        spill.skip.add(m.seq)
        self._less(spill, m.priority, 1)
        w.queue.extend(self._settle(w))
        self.writer.ack([m.seq])
        self.results.removed_seqs(w, [m.seq])

    def peek(self, w: WorkerState, limit: int | None) -> list[Message]:
        """The first ``limit`` (None: all) spilled and late messages of ``w``, in run order,
        left in place: what the file holds of them."""
        spill = w.spill
        seen: list[Message] = []
        for priority in sorted(spill.lines.keys() | spill.late.keys(), reverse=True):
            late = [m for _, m in spill.late.get(priority, ())]
            afters = [after for after, _ in spill.late.get(priority, ())]
            count, first, _ = spill.lines.get(priority, (0, 0, None))
            rows = []
            if count and (limit is None or len(seen) < limit):
                want = count if limit is None else limit - len(seen)
                want += len(spill.skip)
                rows = self.store.queued_page(w.name, priority, first, want, self._last())
            for row in rows:
                while afters and afters[0] <= row.seq:
                    afters.pop(0)
                    seen.append(late.pop(0))
                if row.seq not in spill.skip:
                    seen.append(_listed(row))
            seen += late
            if limit is not None and len(seen) >= limit:
                break
        return seen if limit is None else seen[:limit]


def _listed(row) -> Message:
    """The ``Message`` of a spilled row, to list or look at (the file is left as it is)."""
    attempt = row.attempt + 1 if row.started else row.attempt
    return Message(
        row.seq,
        row.worker,
        row.enqueued_at,
        attempt,
        row.data,
        None,
        row.key,
        row.priority,
        row.expires_at,
    )
