"""The writer: what changed in memory and is not on disk yet, and the loop that writes it.

The runtime records every change here while holding its lock (an insert, an ack, a dead
letter, a trace...); the runtime's ``nbworkers-writer`` thread runs ``Writer.loop``, which
takes everything pending at once and hands it to the store as one batch of rows: a group
commit of a few statements, whatever the number of messages.

The lock is the runtime's one lock, which every run thread takes: under it the writer only swaps
its lists for empty ones; the rows (one tuple per message) are made after it is released
(``batching``).

The writer never runs user code: events and results reach it already pickled, and a result's
repr was made in its run's thread (``trace.run_result``). A slow ``__repr__`` delays its own
run, never the writes of every other worker.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from ..errors import NBWorkersError
from ..log import log
from .batching import PENDING_TRIM, Taken, make_batch, trim_acks, trim_traces
from .pace import Pace
from .rows import FanInRow

if TYPE_CHECKING:  # the runtime's objects, read here, never imported by the store
    from ..message import Message
    from ..trace import Trace
    from . import Store


# How often results older than ``results_kept_s`` are pruned, at most (with a batch that adds
# results): one DELETE a minute, not one a batch.
PRUNE_EVERY_S = 60.0


class Writer:
    """Pending changes and the write loop. Every method but ``loop`` expects the lock held,
    except ``flush`` and ``has_unwritten``, which take it."""

    def __init__(
        self,
        store: Store,
        lock: threading.Lock,
        next_seq: int,
        *,
        traces_kept: int,
        flush_interval_s: float,
        results_kept_s: float = 3600.0,
        clock=time.time,
    ):
        self.store = store
        self.lock = lock
        self.next_seq = next_seq  # the runtime numbers messages and traces from here
        self._saved_seq = next_seq
        self.traces_kept = traces_kept
        # Workers keeping another number of traces (--keep N), set by the engine under the lock
        self.kept: dict[str, int] = {}
        self.pace = Pace(flush_interval_s)  # the gap between two batches
        # Called (the lock held) after each batch written: the engine's paging wakes workers
        # waiting for their spilled messages to be in the file.
        self.after_write = None
        self._inserts: list[Message] = []
        self._updates: dict[int, Message] = {}  # written messages whose attempt/due changed
        self._acks: list[int] = []
        self._dead_inserts: list[tuple] = []  # DeadRow's fields, in order
        self._dead_deletes: list[int] = []
        self._dead_discards: list[tuple[str, list[str] | None]] = []
        self._traces: list[Trace] = []
        self._traces_trim_at = self._acks_trim_at = PENDING_TRIM  # see PENDING_TRIM
        self._workers: dict[str, object] = {}  # name -> WorkerState whose row changed
        self._rate_starts: list[tuple] = []  # (worker, started_at, period_s)
        # nw.result and fan-in (engine/results.py, engine/fan_in.py)
        self.results_kept_s = results_kept_s
        self.clock = clock
        self._results: list[tuple] = []  # ResultRow's fields, in order
        self._fan_in_inserts: list[FanInRow] = []
        self._fan_in_deletes: list[int] = []
        self._pruned_at = float("-inf")  # when results were last pruned (by ``clock``)
        self._wake = threading.Condition(lock)
        self._asleep = False
        self._written_cond = threading.Condition(lock)
        self._taken = 0  # batches handed to the store
        self._written = 0  # batches the store finished (or failed)
        self.error: BaseException | None = None
        self._flush_now = False
        self._stop = False

    # ----- recording changes (the lock is held) -------------------------------------------

    def number(self, count: int = 1) -> int:
        """The first of ``count`` new sequence numbers."""
        seq = self.next_seq
        self.next_seq = seq + count
        return seq

    def insert(self, messages: list[Message]) -> None:
        self._inserts.extend(messages)
        self._poke()

    def update(self, message: Message) -> None:
        """``message``'s attempt, start or due time changed."""
        if message.written:  # else its insert, still to come, carries the change
            self._updates[message.seq] = message
            self._poke()

    def ack(self, seqs: list[int]) -> None:
        """These messages left the queue (done, failed for good, cancelled)."""
        self._acks.extend(seqs)
        if self._updates:
            for seq in seqs:
                self._updates.pop(seq, None)
        if len(self._acks) >= self._acks_trim_at:  # (what will never be written goes now)
            self._inserts, self._acks, self._acks_trim_at = trim_acks(self._inserts, self._acks)
        self._poke()

    def dead(self, letter: tuple) -> None:
        """A message became a dead letter (``engine.dead.letter``: DeadRow's fields)."""
        self._dead_inserts.append(letter)
        self.ack([letter[0]])

    def undead(self, seqs: list[int]) -> None:
        """These dead letters, on disk (``write_now``), were requeued or discarded."""
        self._dead_deletes.extend(seqs)
        self._poke()

    def undead_groups(self, worker: str, digests: list[str] | None) -> None:
        """The dead letters of ``worker`` on disk (``write_now``) in the failure groups
        ``digests`` (None: all of them) were requeued or discarded."""
        self._dead_discards.append((worker, digests))
        self._poke()

    def trace(self, trace: Trace) -> None:
        traces = self._traces
        traces.append(trace)
        if len(traces) >= self._traces_trim_at:  # (what will never be written goes now)
            self._traces, self._traces_trim_at = trim_traces(traces, self.kept, self.traces_kept)
        self._poke()

    def result(self, row: tuple) -> None:
        """A message ended: how, kept by id (``ResultRow``'s fields: seq, worker, None, error,
        data, note; the batch that takes it says when)."""
        self._results.append(row)
        self._poke()

    def fan_in(self, row: FanInRow) -> None:
        """A fan-in group was made (in the batch of its messages)."""
        self._fan_in_inserts.append(row)
        self._poke()

    def fan_in_done(self, first_seq: int) -> None:
        """The group starting at ``first_seq`` ended (in the batch of its ``then`` message)."""
        self._fan_in_deletes.append(first_seq)
        self._poke()

    def worker_changed(self, w) -> None:
        self._workers[w.name] = w
        self._poke()

    def rate_start(self, name: str, started_at: float, period_s: float) -> None:
        """A run of rate-limited ``name`` started (its token, kept across a restart)."""
        self._rate_starts.append((name, started_at, period_s))
        self._poke()

    def _poke(self) -> None:
        if self._asleep:
            self._wake.notify()

    def _pending(self) -> bool:
        return bool(
            self._inserts
            or self._updates
            or self._acks
            or self._dead_inserts
            or self._dead_deletes
            or self._dead_discards
            or self._traces
            or self._workers
            or self._rate_starts
            or self._results
            or self._fan_in_inserts
            or self._fan_in_deletes
        )

    # ----- the write loop (the writer thread) -----------------------------------------------

    def _take(self) -> Taken:
        """Everything to write, leaving empty lists behind (the lock is held)."""
        for m in self._inserts:
            m.written = True
        next_seq = None
        if self.next_seq != self._saved_seq:
            next_seq = self._saved_seq = self.next_seq
        workers = self._workers
        taken = Taken(
            self._inserts,
            list(self._updates.values()),
            self._acks,
            self._dead_inserts,
            self._dead_deletes,
            self._dead_discards,
            self._traces,
            workers,
            [w.row() for w in workers.values()],
            next_seq,
            self._rate_starts,
            self._results,
            self._fan_in_inserts,
            self._fan_in_deletes,
            *self._results_times(),
        )
        self._rate_starts = []
        self._results, self._fan_in_inserts, self._fan_in_deletes = [], [], []
        self._inserts, self._updates, self._acks, self._traces = [], {}, [], []
        self._traces_trim_at = self._acks_trim_at = PENDING_TRIM
        self._dead_inserts, self._dead_deletes, self._workers = [], [], {}
        self._dead_discards = []
        return taken

    def _put_back(self, taken: Taken) -> None:
        self._inserts[:0] = taken.inserts
        for m in taken.updates:
            self._updates.setdefault(m.seq, m)
        self._acks[:0] = taken.acks
        self._dead_inserts[:0] = taken.dead_inserts
        self._dead_deletes[:0] = taken.dead_deletes
        self._dead_discards[:0] = taken.dead_discards
        self._traces[:0] = taken.traces
        for name, w in taken.workers.items():
            self._workers.setdefault(name, w)
        if taken.next_seq is not None:
            self._saved_seq = -1
        self._rate_starts[:0] = taken.rate_starts
        self._results[:0] = taken.results
        self._fan_in_inserts[:0] = taken.fan_in_inserts
        self._fan_in_deletes[:0] = taken.fan_in_deletes
        if taken.prune_results_before is not None:
            self._pruned_at = float("-inf")  # the next batch prunes instead

    def _results_times(self) -> tuple[float | None, float | None]:
        """For a batch taking results: results that ended before the first are pruned (at
        most once every ``PRUNE_EVERY_S``, or half of ``results_kept_s`` if shorter); the
        second is when its results ended (now: a few milliseconds late at most)."""
        if not self._results:
            return None, None
        now = self.clock()
        if now - self._pruned_at < min(PRUNE_EVERY_S, self.results_kept_s / 2):
            return None, now
        self._pruned_at = now
        return now - self.results_kept_s, now

    def loop(self) -> None:
        """The writer thread: write whatever is pending, a few milliseconds apart, until
        ``stop`` and nothing is left."""
        lock = self.lock
        while True:
            with lock:
                while not self._pending() and not self._stop and not self._flush_now:
                    self._asleep = True
                    self._wake.wait()
                    self._asleep = False
                if self._stop and not self._pending():
                    self._written = self._taken
                    self._written_cond.notify_all()
                    return
                taken = self._take()
                self._taken += 1
                self._flush_now = False
            cpu_s = time.thread_time()
            error = self._apply(taken)
            gap = self.pace.gap_s(taken, time.thread_time() - cpu_s) if error is None else 1.0
            with lock:
                if error is not None:
                    self._put_back(taken)
                elif self.after_write is not None:
                    self.after_write()
                taken = None  # its objects (a drain's dead letters) go now, not after the wait
                self.error = error
                self._written = self._taken
                self._written_cond.notify_all()
                # Group commit: let a few milliseconds of work gather before the next batch
                # (more in a trickle of small batches: pace.py).
                self._wake.wait_for(lambda: self._flush_now or self._stop, gap)
                if error is not None and self._stop:
                    log.error(
                        "stopping with unwritten changes to %r: messages emitted since the "
                        "last successful write are lost",
                        self.store.path,
                    )
                    return

    def _apply(self, taken: Taken) -> BaseException | None:
        """Write ``taken`` as one batch; the exception if that failed (logged once, not
        every retry)."""
        try:
            batch = make_batch(taken, self.kept, self.traces_kept)
            if batch:
                warning = self.store.apply(batch)
                if warning:
                    log.warning("%s", warning)
        except Exception as exc:  # noqa: BLE001 - reported by flush() and on stderr, retried
            if self.error is None or str(self.error) != str(exc):
                log.error(
                    "could not write to %r (%s); the changes stay in memory and are "
                    "tried again every second",
                    self.store.path,
                    exc,
                )
            return exc
        if self.error is not None:
            log.warning("writing to %r works again; nothing was lost", self.store.path)
        return None

    def write_now(self, check: bool = True) -> bool:
        """Write everything recorded so far in this thread, now (the lock is held; it is let
        go only while a batch of the writer thread ends): for what reads the file whole, such
        as the dead letters, which live only there. Whether the file holds it all; if not,
        NBWorkersError when ``check``, else the changes wait for the writer thread, which tries
        again every second (a failed write is logged, as all are)."""
        if self._stop:  # the file may be closed: nothing is written from here on
            raise NBWorkersError("nbworkers has been stopped; run %load_ext nbworkers again")
        self._written_cond.wait_for(lambda: self._written >= self._taken)
        if self._pending() or self.next_seq != self._saved_seq:
            taken = self._take()
            self._taken += 1
            try:
                self.error = self._apply(taken)
            except BaseException:  # an interrupt: put back, so that nothing is lost (it may
                # be written twice if it came after the commit: at least once, as always)
                self.error = None
                self._put_back(taken)
                raise
            finally:
                if self.error is not None:
                    self._put_back(taken)
                self._written = self._taken
                self._written_cond.notify_all()
            if self.error is None and self.after_write is not None:
                self.after_write()
        if self.error is not None and check:
            raise self._failed() from self.error
        return self.error is None

    def _failed(self) -> NBWorkersError:
        return NBWorkersError(
            f"nbworkers could not write to {self.store.path!r}: {self.error}. What was "
            "emitted is kept in memory and written when the problem is gone (free disk "
            "space, fix permissions), or pick another file with %config NBWorkers.db_path"
        )

    def stop(self) -> None:
        """Ask the loop to write what is left and end (the lock is held)."""
        self._stop = True
        self._wake.notify()

    @property
    def stopped(self) -> bool:
        """True once ``stop`` was called: nothing recorded from then on is written."""
        return self._stop

    def write_soon(self) -> None:
        """Ask the loop to write what is pending now, not after its usual gap (the lock is
        held)."""
        self._flush_now = True
        self._wake.notify()

    def all_written(self) -> bool:
        """Whether everything recorded so far is on disk (the lock is held)."""
        return not self._pending() and self._written >= self._taken and self.error is None

    # ----- waiting for the disk (any thread) ------------------------------------------------

    def flush(self, timeout: float | None = 30) -> None:
        """Return once everything recorded so far is on disk; NBWorkersError if the write
        failed (nothing is lost: it is retried)."""
        path = self.store.path
        with self.lock:
            pending = self._pending()
            if not pending and self._written >= self._taken and self.error is None:
                return
            target = self._taken + 1 if pending else self._taken
            self._flush_now = True
            self._wake.notify()
            if not self._written_cond.wait_for(lambda: self._written >= target, timeout):
                raise NBWorkersError(f"nbworkers: writing to {path!r} took over {timeout} s")
            if self.error is not None:
                raise self._failed() from self.error

    @property
    def has_unwritten(self) -> bool:
        """True while any change (an emit, a purge, a pause...) waits for the writer or is
        being written."""
        with self.lock:
            return self._pending() or self._written < self._taken
