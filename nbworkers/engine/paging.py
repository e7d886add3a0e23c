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

A message that goes to the front of memory (a retry with no backoff) with a priority below a
spilled line waits until that line is read back (``WorkerState.has_ready``).

``Spill`` (spill.py) holds a worker's lines: a line (one priority) stands for "the ready rows
of this worker and priority from seq ``first``", ``count`` of them. A message in a line's range
that is not spilled (cancelled before its removal is written, or a delayed one that came due)
is in ``skip``: reading the line back passes over it. A delayed message that comes due behind
spilled ones (of its priority or higher) waits in ``late`` until they are read back, as it
would wait behind them in memory.

Paging in never lets go of the engine's lock: it reads what the file holds. Spilled messages
the writer has not written yet come on a later page; a worker whose window is empty meanwhile
asks the writer to write now, and is woken once it has (``written``); until then no run reads
the file for it again. A cancel or purge, which lets the lock go while it writes, freezes the
paging of the workers it looks at (``frozen``), so that none of their spilled messages starts
meanwhile. A read that fails is logged and tried again a second later.
"""

from __future__ import annotations

import contextlib

from ..log import log
from ..message import Message
from .spill import Spill, message_of
from .worker import WorkerState

# A purge drops spilled messages this many at a time, writing between two chunks.
PURGE_CHUNK = 100_000
RETRY_S = 1.0  # after a failed read of spilled messages, the next one


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
        if not messages or w.is_cron:
            return messages  # a cron's messages are few, and run_now's must be in memory
        if top is not None and top >= priority:
            kept, spilled = [], messages
        else:
            room = self.window - len(w.queue)
            lowest = w.queue.lowest()
            if room >= len(messages) or (lowest is not None and lowest < priority):
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
        if spill.behind or spill.frozen:
            return False  # nothing new in the file until the writer's next batch
        if spill.retry_at is not None:
            if self.registry.clock() < spill.retry_at:
                return False
            spill.retry_at = None
        want = max(self.window - len(w.queue), self.low)
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
            log.error(
                "nbworkers could not read %r's queued messages back (tried again in %s s): %s",
                w.name,
                RETRY_S,
                exc,
            )
            self._retry_later(w)
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

    def _retry_later(self, w: WorkerState) -> None:
        """A read failed: the next one in ``RETRY_S``, when the timer wakes ``w``."""
        due = self.registry.clock() + RETRY_S
        w.spill.retry_at = due
        self.timers.wake_at(due)  # its own entry in the timer's pass (timers.py), no gate's

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
                if not w.queue or w.spill.above(w.queue.first()):
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
            _forget_keys(w, set(ended))
            self.writer.ack(ended)
            self.results.removed_seqs(w, ended)
            dropped += len(ended)
            self.writer.write_now()
        return dropped

    def find(self, seq: int) -> tuple[WorkerState, Message] | None:
        """Spilled message ``seq`` and its worker, or None: as the file holds it (the caller
        wrote what was pending first, if it must be found however new)."""
        reg = self.registry
        if not any(w.spill is not None for w in reg.workers.values()):
            return None
        row = self.store.queued_row(seq)
        w = None if row is None else reg.workers.get(row.worker)
        if w is None or w.spill is None or row.due_at is not None:
            return None
        m = message_of(row)
        if not w.spill.in_range(m) or seq in w.spill.skip:
            return None
        return w, m

    @contextlib.contextmanager
    def frozen(self, workers: list[WorkerState]):
        """No spilled message of ``workers`` is read back while the block runs (it lets the
        lock go, to write); their run threads look again after it."""
        spills = [(w, w.spill) for w in workers if w.spill is not None]
        for _, spill in spills:
            spill.frozen += 1  # a count: two purges or cancels of one worker may overlap
        try:
            yield
        finally:
            for w, spill in spills:
                spill.frozen -= 1
                if w.spill is not None:
                    self.wake_all(w)

    def cancel(self, w: WorkerState, m: Message) -> None:
        """Take spilled message ``m`` (from ``find``) out of ``w``'s queue."""
        spill = w.spill
        spill.skip.add(m.seq)
        self._less(spill, m.priority, 1)
        w.queue.extend(self._settle(w))
        _forget_keys(w, {m.seq})
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
                    seen.append(message_of(row))
            seen += late
            if limit is not None and len(seen) >= limit:
                break
        return seen if limit is None else seen[:limit]


def _forget_keys(w: WorkerState, seqs: set[int]) -> None:
    """The dedupe keys of ``w``'s messages numbered ``seqs``, which left, are free again."""
    if w.keys:
        for key in [k for k, m in w.keys.items() if m.seq in seqs]:
            del w.keys[key]
