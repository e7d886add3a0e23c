"""One worker's live state: its queue, delayed messages, dead letters, runs and counts.

The runtime keeps one ``WorkerState`` per name (defined or not) and changes it only while
holding its lock; nothing here takes a lock or starts a thread.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections import deque

from ..message import Message
from ..schedule import Schedule
from ..store import WorkerRow
from ..trace import Trace
from .dead import DeadLetters
from .policy import Policy
from .rate import next_token_s
from .ready import ReadyQueue

# The run going on in this thread, for @nw.recorded (develop/recorded.py): set once a run by
# Dispatch.execute (and by nw.replay around its handler), never cleared, so that a worker
# with no recorded call pays one assignment a run and nothing else.
CURRENT = threading.local()


class Run:
    """One run going on: what a timeout needs to end it from another thread, and the calls
    of ``@nw.recorded`` functions it made (``calls``: None until the first)."""

    __slots__ = (
        "calls",
        "capture",
        "deadline_s",
        "index",
        "message",
        "policy",
        "started_at_s",
        "superseded",
        "t0",
        "timed_out",
        "messages",
        "input_data",
        "batch_index",
        "stop",
        "interrupt",
    )

    def __init__(self, message, index, started_at_s, t0, capture, deadline_s, policy):
        self.message = message
        self.policy = policy  # the worker's policy when the run started
        self.index = index
        self.started_at_s = started_at_s
        self.t0 = t0
        self.capture = capture
        self.deadline_s = deadline_s
        self.timed_out = False
        self.calls = None  # a develop.recorded.Calls, made by the first recorded call
        # Set by the engine: superseded(worker name) says whether a newer trace will replace
        # this run's anyway (a guess, read without the lock).
        self.superseded = None
        # A batch (--batch): its messages, ``message`` being the first, and its events' list
        # pickled for its trace (engine/batches.py); None for a run of one message.
        self.messages: list | None = None
        self.input_data: bytes | None = None
        self.batch_index = 0  # which message of its batch a failure hook is told about
        self.stop = None  # the StopRequest of nw.stop (engine/stops.py), once asked
        self.interrupt = None  # on a thread: the run thread's Interrupt while the handler runs

    @property
    def keep_result(self) -> bool:
        """Whether the executor makes the result's copies (repr and pickle: user code, a cost
        every run of a drain): not when a newer trace will replace this run's anyway. Asked
        when the handler has returned, so that a queue purged meanwhile counts."""
        return self.superseded is None or not self.superseded(self.message.worker)


class WorkerState:
    """Everything the runtime knows about one name, with or without a handler."""

    def __init__(self, name: str, lock: threading.Lock, traces_kept: int):
        self.name = name
        self.queue = ReadyQueue()  # ready to run, in run order (priority, then oldest first)
        # Ready messages beyond the window, kept only in the file (paging.py): None if none.
        self.spill = None
        self.delayed: list[tuple[float, int, Message]] = []  # heap: (due_at, seq, message)
        # Delayed messages that came due went to the back of the queue, behind newer ones:
        # their emit times, a heap (enqueued_at, seq) with entries for messages gone since
        # dropped lazily, so that the oldest queued message is found without a scan.
        self.late: list[tuple[float, int]] = []
        self.late_seqs: set[int] = set()  # the late messages still in the queue
        self.parked: list[tuple[Message, str]] = []  # events that cannot be unpickled yet
        self.parked_traced: set[int] = set()  # parked messages that already left a trace
        self.keys: dict[str, Message] = {}  # dedupe keys of messages queued or running
        # Its dead letters, counted by cause; the letters themselves are on disk (dead.py).
        self.dead = DeadLetters()
        self.handler = None
        self.policy = Policy()
        self.paused = False
        self.pause_reason: str | None = None
        self.concurrency = 0
        self.running = 0
        self.runs: dict[int, Run] = {}  # by run-thread index
        self.done = 0
        self.failed = 0
        self.retried = 0
        self.failing = 0  # runs failed in a row
        self.traces: deque[Trace] = deque(maxlen=traces_kept)  # newest first
        # --keep N of its last definition (None: the runtime's traces_kept), kept in the file
        # so that a restarted kernel keeps that many before the cell runs again.
        self.keep_traces: int | None = None
        self.cond = threading.Condition(lock)
        self.idle = 0  # run threads asleep on cond
        self.live: set[int] = set()  # indexes of run threads alive
        self.schedule: Schedule | None = None  # set for crons
        # "worker" or "cron": what the name was last defined as, kept in the database (for
        # nw.sql and `python -m nbworkers status`) while its code lives only in a kernel.
        self.kind: str | None = None
        self.last_run_s: float | None = None  # crons: when the schedule last fired
        self.schedule_error: str | None = None  # crons: why no next run could be computed
        self.skipped = 0  # crons: ticks skipped because a run was still going
        self.forced: set[int] = set()  # run_now messages, which go through a pause
        # Storm guard: emits by this worker's own runs, per second of the clock.
        self.storm_second = 0
        self.storm_count = 0
        self.storm_seconds = 0  # whole seconds in a row above the rate, before storm_second
        # Expiry (engine/expiry.py): waiting messages with an expiry of their own, a heap
        # (expires_at, seq, message), and while the policy has a ttl the others, a heap
        # (enqueued_at, seq, message); entries of messages that left since are skipped.
        self.expiring: list[tuple[float, int, Message]] = []
        self.aging: list[tuple[float, int, Message]] = []
        self.delayed_gone: set[int] = set()  # expired messages still in ``delayed``
        # Rate limits and batches (engine/gate.py): ``gate(w)`` says whether a run may start
        # now (None: always); ``wait_until_s`` is when the timer wakes a worker that waits for
        # a token or a batch; ``rate_log`` the starts of its rate's last period (rate.py).
        self.gate = None
        self.wait_until_s: float | None = None
        self.rate_log: deque[float] = deque()
        self.batch_open_s: float | None = None  # when the batch being collected began
        self.batch_extra = 0  # messages of the batches running beyond one each

    def keep(self, keep: int | None, default: int) -> None:
        """Keep the newest ``keep`` traces (None: ``default``) from now on (the lock is held)."""
        self.keep_traces = keep
        count = default if keep is None else keep
        if self.traces.maxlen != count:
            self.traces = deque(itertools.islice(self.traces, count), maxlen=count)

    def ready(self) -> bool:
        """A run may start now (the runtime lock is held)."""
        return (
            self.handler is not None
            and (not self.paused or self.forced)
            and self.has_ready()
            and (self.gate is None or self.gate(self))
        )

    def has_ready(self) -> bool:
        """Whether a ready message is in memory, once spilled ones were paged in if it had
        none (the lock is held)."""
        spill = self.spill
        if spill is None:
            return bool(self.queue)
        if spill.above(self.queue.first()):  # spilled ones run first: read back (or wait)
            return spill.paging.page_in(self) and not spill.above(self.queue.first())
        return bool(self.queue) or spill.paging.page_in(self)

    def ready_count(self) -> int:
        """How many messages are ready, spilled ones included (read without the lock by
        ``Dispatch._superseded``: a guess there)."""
        spill = self.spill
        return len(self.queue) + (0 if spill is None else spill.count)

    def take(self) -> Message:
        """The next message to run (the runtime lock is held; ``ready()`` was true)."""
        if self.paused:
            message = next(m for m in self.queue if m.seq in self.forced)
            self.queue.remove(message)
        else:
            spill = self.spill
            if spill is not None and (
                len(self.queue) < spill.paging.low or spill.above(self.queue.first())
            ):
                spill.paging.page_in(self)
            message = self.queue.popleft()
        self.forced.discard(message.seq)
        if self.late_seqs:
            self._not_late(message.seq)
        return message

    def _not_late(self, seq: int) -> None:
        self.late_seqs.discard(seq)
        if len(self.late) > 2 * len(self.late_seqs) + 64:  # mostly gone: keep it small
            self.late = [entry for entry in self.late if entry[1] in self.late_seqs]
            heapq.heapify(self.late)

    def delay(self, message: Message) -> None:
        heapq.heappush(self.delayed, (message.due_at_s, message.seq, message))

    def due(self, now: float) -> list[Message]:
        """Delayed messages whose time has come, taken off the heap."""
        ready = []
        while self.delayed and self.delayed[0][0] <= now:
            message = heapq.heappop(self.delayed)[2]
            if self.delayed_gone and message.seq in self.delayed_gone:
                self.delayed_gone.discard(message.seq)  # it expired meanwhile
                continue
            ready.append(message)
            heapq.heappush(self.late, (message.enqueued_at_s, message.seq))
            self.late_seqs.add(message.seq)
        return ready

    def next_due_s(self) -> float | None:
        return self.delayed[0][0] if self.delayed else None

    def waiting(self, limit: int | None = None, spilled=None) -> list[Message]:
        """The first ``limit`` (None: all) messages not running: ready ones (those in memory,
        then ``spilled``, what ``Paging.peek`` read of the others; None: only the late ones
        held with them), delayed ones (soonest first), parked ones."""
        if spilled is None:
            spilled = self.spill.held() if self.spill is not None else ()
        gone = self.delayed_gone
        if limit is None:
            delayed = sorted(self.delayed)
        else:
            delayed = heapq.nsmallest(limit + len(gone), self.delayed)
        if gone:
            delayed = [entry for entry in delayed if entry[1] not in gone]
        messages = itertools.chain(
            self.queue, spilled, (m for _, _, m in delayed), (m for m, _ in self.parked)
        )
        return list(itertools.islice(messages, limit))

    def remove_waiting(self, seqs: set[int] | None) -> list[Message]:
        """Take the waiting messages numbered ``seqs`` (all when None) out of this worker."""

        def keep(m: Message) -> bool:
            return seqs is not None and m.seq not in seqs

        removed = [m for m in self.waiting(spilled=()) if not keep(m)]
        if self.spill is not None and self.spill.late:  # came due behind spilled ones
            removed += self.spill.drop_late(lambda m: not keep(m))
        if not removed:
            return []
        self.queue = ReadyQueue(m for m in self.queue if keep(m))
        gone = self.delayed_gone
        self.delayed = [e for e in self.delayed if keep(e[2]) and e[1] not in gone]
        heapq.heapify(self.delayed)
        self.delayed_gone = set()
        if self.expiring or self.aging:  # their entries must not outlive them
            self.expiring = [e for e in self.expiring if keep(e[2])]
            self.aging = [e for e in self.aging if keep(e[2])]
            heapq.heapify(self.expiring)
            heapq.heapify(self.aging)
        self.parked = [entry for entry in self.parked if keep(entry[0])]
        for m in removed:
            self.forced.discard(m.seq)
            self.forget_key(m)
            if self.late_seqs:
                self._not_late(m.seq)
        return removed

    def forget_key(self, message: Message) -> None:
        if message.key is not None and self.keys.get(message.key) is message:
            del self.keys[message.key]

    def note_self_emits(self, count: int, now: float, rate: int, seconds: int) -> bool:
        """Count ``count`` emits by this worker's own runs; True once they went over ``rate``
        a second for ``seconds`` whole seconds of the clock in a row, and still do."""
        second = int(now)
        if second != self.storm_second:
            over = self.storm_count > rate
            contiguous = second == self.storm_second + 1
            self.storm_seconds = self.storm_seconds + 1 if over and contiguous else 0
            self.storm_second, self.storm_count = second, 0
        self.storm_count += count
        return self.storm_count > rate and self.storm_seconds >= seconds

    def clear_storm(self) -> None:
        self.storm_second = self.storm_count = self.storm_seconds = 0

    @property
    def is_cron(self) -> bool:
        return self.schedule is not None

    @property
    def kind_name(self) -> str:
        return "cron" if self.is_cron else "worker"

    def queued(self) -> int:
        return self.ready_count() + len(self.delayed) - len(self.delayed_gone) + len(self.parked)

    def oldest_s(self) -> float | None:
        """When the oldest waiting message was emitted."""
        # Retries with no backoff go to the front, delayed messages that came due are in
        # ``late``: the oldest of the others is the first of its priority, among the first few.
        times = [m.enqueued_at_s for m in self.queue.firsts(64)]
        while self.late and self.late[0][1] not in self.late_seqs:
            heapq.heappop(self.late)
        if self.late:
            times.append(self.late[0][0])
        gone = self.delayed_gone
        times += [m.enqueued_at_s for _, seq, m in self.delayed if seq not in gone]
        times += [m.enqueued_at_s for m, _ in self.parked]
        if self.spill is not None and (oldest := self.spill.oldest_s()) is not None:
            times.append(oldest)
        return min(times, default=None)

    def by_priority(self) -> dict[int, int]:
        """How many ready messages each priority has, spilled ones included, highest first."""
        counts = self.queue.by_priority()
        if self.spill is not None:
            for priority, count in self.spill.by_priority().items():
                counts[priority] = counts.get(priority, 0) + count
            counts = dict(sorted(counts.items(), reverse=True))
        return counts

    def counts(self, now: float) -> dict:
        oldest = self.oldest_s()
        counts = {
            "queued": self.queued(),
            "running": self.running,
            "done": self.done,
            "failed": self.failed,
            "dead": self.dead.count,
            "retried": self.retried,
            "oldest_age_s": None if oldest is None else max(0.0, now - oldest),
        }
        if self.is_cron:
            counts["skipped"] = self.skipped
        if self.dead.expired:
            counts["expired"] = self.dead.expired
        if self.batch_extra:
            counts["running"] += self.batch_extra  # messages, not runs: a batch is many
        rate = self.policy.rate
        if rate is not None:
            due = next_token_s(self.rate_log, rate, now) if self.ready_count() else None
            counts["rate_wait_s"] = None if due is None else due - now
        return counts

    def row(self) -> WorkerRow:
        return WorkerRow(
            self.name,
            self.paused,
            self.done,
            self.failed,
            self.last_run_s,
            self.skipped,
            self.pause_reason,
            self.retried,
            self.kind,
            self.keep_traces,
        )
