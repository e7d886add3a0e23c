"""The runtime: in-memory queues, the threads that run handlers, and the writer thread.

This is the only module that starts threads. Live state (queues, counts, traces) is kept in
memory under one lock; DuckDB is the durable copy, written by one writer thread in group
commits, so no statement is ever made per message and no thread ever polls:

- ``emit`` appends to the worker's deque and to the writer's pending list, and wakes one idle
  run thread of that worker and, if it sleeps, the writer;
- each worker has ``concurrency`` run threads that sleep on the worker's condition;
- a message leaves the database only in the batch after its run ended (at-least-once).
"""

from __future__ import annotations

import pickle
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable

from . import handlers, output
from .errors import NBWorkersError
from .handlers import Handler, check_name
from .message import Message, parse_id
from .schedule import Schedule, Zone
from .store import Batch, Store, TraceRow, WorkerRow
from .trace import Trace

_PICKLE = pickle.HIGHEST_PROTOCOL
_NO_EVENT = pickle.dumps(None, protocol=_PICKLE)  # what a cron tick carries
# The scheduler sleeps until the next due time, but wakes at least this often so that a
# suspended laptop or a changed system clock cannot delay a cron for long.
_CRON_MAX_SLEEP_S = 60.0
# Listeners (panels) hear of changes at most this often, however fast messages flow, so a
# panel sends a few comm messages a second and reflects a change within half a second.
NOTIFY_INTERVAL_S = 0.4
# With nothing changing, listeners still hear every so often (relative times, "in 12 min").
NOTIFY_IDLE_S = 30.0


def snapshot(event) -> bytes:
    """The pickled copy of ``event`` that a message carries; TypeError naming the type."""
    try:
        return pickle.dumps(event, protocol=_PICKLE)
    except Exception as exc:
        raise TypeError(
            f"emit: a value of type {type(event).__module__}.{type(event).__qualname__} cannot "
            f"be snapshotted ({type(exc).__name__}: {exc}); emit data that pickles (dicts, "
            "lists, numbers, strings, DataFrames, arrays, dataclasses). Nothing was enqueued."
        ) from exc


def _format_error(exc: BaseException) -> str:
    """The traceback of an exception a handler raised, from the handler's own frame: the
    frames of this module and of the function wrappers in handlers.py are left out."""
    ours = {__file__, handlers.__file__}
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename in ours:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _text(value: str | None) -> str | None:
    """``value`` storable as UTF-8: lone surrogates (undecodable file names) are escaped."""
    if value is None:
        return None
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


class WorkerState:
    """Everything the runtime knows about one name, with or without a handler."""

    def __init__(self, name: str, lock: threading.Lock, traces_kept: int):
        self.name = name
        self.queue: deque[Message] = deque()
        self.parked: list[tuple[Message, str]] = []  # events that cannot be unpickled yet
        self.parked_traced: set[int] = set()  # parked messages that already left a trace
        self.handler: Handler | None = None
        self.paused = False
        self.concurrency = 0
        self.running = 0
        self.done = 0
        self.failed = 0
        self.traces: deque[Trace] = deque(maxlen=traces_kept)  # newest first
        self.cond = threading.Condition(lock)
        self.idle = 0  # run threads asleep on cond
        self.live: set[int] = set()  # indexes of run threads alive
        self.schedule: Schedule | None = None  # set for crons
        self.last_run_s: float | None = None  # crons: when the schedule last fired
        self.skipped = 0  # crons: ticks skipped because a run was still going
        self.forced: set[int] = set()  # run_now messages, which go through a pause

    def ready(self) -> bool:
        """A run may start now (the runtime lock is held)."""
        return bool(self.queue) and self.handler is not None and (not self.paused or self.forced)

    def take(self) -> Message:
        """The next message to run (the runtime lock is held; ``ready()`` was true)."""
        if self.paused:
            message = next(m for m in self.queue if m.seq in self.forced)
            self.queue.remove(message)
        else:
            message = self.queue.popleft()
        self.forced.discard(message.seq)
        return message

    @property
    def is_cron(self) -> bool:
        return self.schedule is not None

    def counts(self) -> dict:
        counts = {
            "queued": len(self.queue) + len(self.parked),
            "running": self.running,
            "done": self.done,
            "failed": self.failed,
        }
        if self.is_cron:
            counts["skipped"] = self.skipped
        return counts

    def row(self) -> WorkerRow:
        return WorkerRow(
            self.name, self.paused, self.done, self.failed, self.last_run_s, self.skipped
        )


class Runtime:
    """Queues, run threads and the writer for one database file."""

    def __init__(
        self,
        path: str,
        *,
        traces_kept: int = 10,
        default_concurrency: int = 4,
        flush_interval_s: float = 0.005,
        result_max_bytes: int = 65536,
        timezone: str | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.path = path
        self.zone = Zone(timezone)
        self.clock = clock
        self.traces_kept = traces_kept
        self.default_concurrency = default_concurrency
        self.flush_interval_s = flush_interval_s
        self.result_max_bytes = result_max_bytes
        self.store = Store(path, traces_kept)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a run ended or a queue emptied
        self._change_waiters = 0
        self._writer_wake = threading.Condition(self._lock)
        self._writer_asleep = False
        self._written_cond = threading.Condition(self._lock)
        self._workers: dict[str, WorkerState] = {}
        self._inserts: list[Message] = []
        self._acks: list[int] = []
        self._new_traces: list[Trace] = []
        self._dirty: set[WorkerState] = set()
        self._taken = 0  # batches handed to the store
        self._written = 0  # batches the store finished (or failed)
        self._write_error: BaseException | None = None
        self._flush_now = False
        self._stopping = False  # no new runs, ticks or emits
        self._writer_stop = False  # set after the runs ended: the writer drains, then exits
        self._threads: list[threading.Thread] = []
        self._listeners: list[Callable[[set[str]], None]] = []
        self._changed_names: set[str] = set()
        self._notify_wake = threading.Condition(self._lock)
        self._notifier_asleep = False
        self._notifier: threading.Thread | None = None
        self._cron_wake = threading.Condition(self._lock)
        self._cron_changed = False
        self._scheduler: threading.Thread | None = None
        self._load()
        self._saved_seq = self._next_seq
        output.install()
        self._writer = self._spawn(self._write_loop, "nbworkers-writer")

    # ----- start-up -------------------------------------------------------------------------

    def _load(self) -> None:
        loaded = self.store.load()
        self._next_seq = loaded.next_seq
        for row in loaded.workers:
            w = self._state(row.name)
            w.paused, w.done, w.failed = bool(row.paused), int(row.done), int(row.failed)
            w.last_run_s, w.skipped = row.last_run, int(row.skipped or 0)
        for seq, worker, enqueued_at, attempt, data in loaded.messages:
            self._state(worker).queue.append(Message(seq, worker, enqueued_at, attempt, data))
        for row in reversed(loaded.traces):  # oldest first, so appendleft leaves newest first
            trace = Trace(
                row.seq,
                row.message_seq,
                row.worker,
                row.input,
                row.started_at,
                row.duration,
                row.stdout,
                row.error,
                row.replay,
                result_data=row.result,
                result_repr=row.result_repr,
            )
            self._state(row.worker).traces.appendleft(trace)

    def _state(self, name: str) -> WorkerState:
        w = self._workers.get(name)
        if w is None:
            w = self._workers[name] = WorkerState(name, self._lock, self.traces_kept)
        return w

    def _spawn(self, target, name: str, *args) -> threading.Thread:
        thread = threading.Thread(target=target, name=name, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()
        return thread

    # ----- emitting ---------------------------------------------------------------------------

    def emit(self, event, name: str) -> str:
        """Queue ``event`` for worker ``name``; returns the message id at once."""
        check_name(name)
        return self._enqueue(name, [snapshot(event)])[0]

    def emit_many(self, events: Iterable, name: str) -> list[str]:
        """Queue every event of ``events`` (all or nothing) for worker ``name``."""
        check_name(name)
        return self._enqueue(name, [snapshot(e) for e in events])

    def _enqueue(self, name: str, datas: list[bytes]) -> list[str]:
        now = time.time()
        with self._lock:
            w = self._workers.get(name) or self._state(name)
            messages = self._enqueue_locked(w, datas, now)
        return [m.id for m in messages]

    def _enqueue_locked(self, w: WorkerState, datas: list[bytes], now: float) -> list[Message]:
        """Queue ``datas`` for ``w`` (the lock is held)."""
        if self._stopping:
            raise NBWorkersError(
                "nbworkers has been stopped (%unload_ext or shutdown); run "
                "%load_ext nbworkers again to emit. Nothing was enqueued."
            )
        name = w.name
        seq = self._next_seq
        self._next_seq = seq + len(datas)
        messages = [Message(seq + i, name, now, 1, d) for i, d in enumerate(datas)]
        w.queue.extend(messages)
        self._inserts.extend(messages)
        if w.idle and (not w.paused or w.forced):
            if len(messages) == 1:
                w.cond.notify()
            else:
                w.cond.notify(len(messages))
        if self._writer_asleep:
            self._writer_wake.notify()
        if self._listeners:
            self._mark_changed(name)
        return messages

    # ----- workers ------------------------------------------------------------------------

    def define(
        self,
        name: str,
        handler: Handler,
        concurrency: int | None = None,
        paused: bool = False,
    ) -> None:
        """Make ``handler`` the code of worker ``name``; new messages use it at once."""
        check_name(name)
        concurrency = self.default_concurrency if concurrency is None else concurrency
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(
                f"concurrency must be a whole number of at least 1, not {concurrency!r}"
            )
        with self._lock:
            self._check_running()
            w = self._state(name)
            w.handler = handler
            if w.schedule is not None:
                w.schedule = None  # a worker now: no more ticks
                self._crons_changed()
            if paused and not w.paused:
                w.paused = True
                self._mark_dirty(w)
            self._set_concurrency(w, concurrency)
            self._retry_parked(w)
        self._notify(name)

    def set_concurrency(self, name: str, concurrency: int) -> None:
        """Change how many runs of ``name`` may go at once, effective immediately."""
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(
                f"concurrency must be a whole number of at least 1, not {concurrency!r}"
            )
        with self._lock:
            w = self._workers.get(name)
            if w is None or w.handler is None:
                raise NBWorkersError(f"no worker named {name!r} is defined")
            self._set_concurrency(w, concurrency)

    def _set_concurrency(self, w: WorkerState, concurrency: int) -> None:
        w.concurrency = concurrency
        for index in range(concurrency):
            if index not in w.live:
                w.live.add(index)
                self._spawn(self._run_loop, f"nbworkers-run-{w.name}-{index}", w, index)
        w.cond.notify_all()  # threads past the new limit see it and end

    def pause(self, name: str) -> None:
        """Stop starting runs of ``name`` (runs already going finish); kept in the database."""
        check_name(name)
        with self._lock:
            w = self._state(name)
            if not w.paused:
                w.paused = True
                self._mark_dirty(w)
                self._crons_changed()
        self._notify(name)

    def resume(self, name: str) -> None:
        """Lift a pause of ``name``; its queued messages start at once."""
        check_name(name)
        with self._lock:
            w = self._state(name)
            if w.paused:
                w.paused = False
                self._mark_dirty(w)
                w.cond.notify_all()
                self._crons_changed()
        self._notify(name)

    def is_paused(self, name: str) -> bool:
        with self._lock:
            w = self._workers.get(name)
            return bool(w and w.paused)

    def _mark_dirty(self, w: WorkerState) -> None:
        self._dirty.add(w)
        if self._writer_asleep:
            self._writer_wake.notify()

    def _check_running(self) -> None:
        if self._stopping:
            raise NBWorkersError("nbworkers has been stopped; run %load_ext nbworkers again")

    # ----- crons ------------------------------------------------------------------------------

    def define_cron(
        self, name: str, handler: Handler, schedule: Schedule, paused: bool = False
    ) -> None:
        """Make ``handler`` run on ``schedule`` as cron ``name`` (one run at a time)."""
        check_name(name)
        with self._lock:
            self._check_running()
            w = self._state(name)
            w.handler = handler
            w.schedule = schedule
            if schedule.wall_clock and w.last_run_s is None:
                # Its first run is the first of its times after now: count from here, so a
                # scheduler waking a moment late at that time still finds it due.
                w.last_run_s = self.clock()
                self._dirty.add(w)
            if paused and not w.paused:
                w.paused = True
                self._mark_dirty(w)
            self._set_concurrency(w, 1)  # a cron never overlaps itself
            self._cron_pass(self.clock())  # due at once: queued before this returns
            if self._scheduler is None:
                self._scheduler = self._spawn(self._cron_loop, "nbworkers-cron")
            self._crons_changed()
        self._notify(name)

    def undefine(self, name: str) -> None:
        """Forget the code of worker or cron ``name``; its queued messages stay, unhandled."""
        with self._lock:
            w = self._workers.get(name)
            if w is None:
                return
            w.handler = None
            w.schedule = None
            w.concurrency = 0
            w.cond.notify_all()
            self._crons_changed()
        self._notify(name)

    def run_now(self, name: str) -> str:
        """Run cron ``name`` once now, even while paused (after a run still going); its
        schedule does not move. Returns the run's message id."""
        with self._lock:
            w = self._workers.get(name)
            if w is None or not w.is_cron:
                raise NBWorkersError(f"no cron named {name!r} is defined; run its cell first")
            message = self._enqueue_locked(w, [_NO_EVENT], time.time())[0]
            w.forced.add(message.seq)
            w.cond.notify_all()
        return message.id

    def next_run(self, name: str):
        """When cron ``name`` runs next (an aware datetime), or None while it is paused."""
        with self._lock:
            w = self._workers.get(name)
            if w is None or not w.is_cron:
                raise NBWorkersError(f"no cron named {name!r} is defined; run its cell first")
            if w.paused:
                return None
            due = w.schedule.next_run(w.last_run_s, self.clock(), self.zone)
            return self.zone.aware(due)

    def _crons_changed(self) -> None:
        self._cron_changed = True
        self._cron_wake.notify_all()

    def run_due_crons(self, now: float | None = None) -> float | None:
        """Start every cron due at ``now``; returns when the next one is due (None: never).

        The scheduler thread calls this; tests call it with their own ``now``.
        """
        with self._lock:
            ticked, wake_at = self._cron_pass(self.clock() if now is None else now)
            for name in ticked:
                self._mark_changed(name)
        return wake_at

    def _cron_pass(self, now: float) -> tuple[list[str], float | None]:
        ticked: list[str] = []
        wake_at = None
        for w in list(self._workers.values()):
            if w.schedule is None or w.handler is None or w.paused:
                continue
            due = w.schedule.next_run(w.last_run_s, now, self.zone)
            if due <= now:
                self._tick(w, now)
                ticked.append(w.name)
                due = w.schedule.next_run(w.last_run_s, now, self.zone)
            wake_at = due if wake_at is None else min(wake_at, due)
        return ticked, wake_at

    def _tick(self, w: WorkerState, now: float) -> None:
        """The schedule of cron ``w`` fired (the lock is held)."""
        w.last_run_s = now
        self._dirty.add(w)
        if w.running or w.queue:
            w.skipped += 1  # never overlap: the previous run is still going
        else:
            message = Message(self._next_seq, w.name, now, 1, _NO_EVENT)
            self._next_seq += 1
            w.queue.append(message)
            self._inserts.append(message)
            if w.idle:
                w.cond.notify()
        if self._writer_asleep:
            self._writer_wake.notify()

    def _cron_loop(self) -> None:
        while True:
            wake_at = self.run_due_crons()
            with self._lock:
                if self._stopping:
                    return
                if self._cron_changed:
                    self._cron_changed = False
                    continue
                sleep_s = _CRON_MAX_SLEEP_S
                if wake_at is not None:
                    sleep_s = min(sleep_s, max(0.0, wake_at - self.clock()))
                self._cron_wake.wait(sleep_s)

    # ----- running ----------------------------------------------------------------------------

    def _run_loop(self, w: WorkerState, index: int) -> None:
        lock = self._lock
        while True:
            with lock:
                while not self._stopping and index < w.concurrency and not w.ready():
                    w.idle += 1
                    w.cond.wait()
                    w.idle -= 1
                if self._stopping or index >= w.concurrency or w.handler is None:
                    w.live.discard(index)
                    return
                message = w.take()
                w.running += 1
                handler = w.handler
            trace, unpicklable = self._run(handler, message, replay=False)
            with lock:
                w.running -= 1
                if unpicklable:
                    w.parked.append((message, unpicklable))
                    if message.seq in w.parked_traced:
                        trace = None  # one trace says why; retries add none
                    w.parked_traced.add(message.seq)
                else:
                    w.parked_traced.discard(message.seq)
                    self._acks.append(message.seq)
                    if trace.error is None:
                        w.done += 1
                    else:
                        w.failed += 1
                    self._dirty.add(w)
                if trace is not None:
                    self._record(w, trace)
                if self._change_waiters:
                    self._changed.notify_all()
                if self._listeners:
                    self._mark_changed(w.name)

    def _run(self, handler: Handler, message: Message, replay: bool):
        """Run ``handler`` on ``message``; returns (trace, reason it was parked or None)."""
        capture = output.Capture(tee=replay)
        result = None
        error = None
        unpicklable = None
        started = time.time()
        t0 = time.perf_counter()
        with capture:
            try:
                event = pickle.loads(message.data)
            except Exception as exc:
                unpicklable = (
                    f"the event cannot be unpickled yet ({type(exc).__name__}: {exc}); it stays "
                    "queued and is tried again after the next cell runs (define its class first)"
                )
                error = unpicklable
                if replay:
                    raise NBWorkersError(unpicklable) from exc
            else:
                try:
                    result = handler.call(event, message)
                # A handler may raise anything, SystemExit and KeyboardInterrupt included: the
                # run fails and is recorded; the runtime goes on.
                except BaseException as exc:
                    error = _format_error(exc)
                    if replay:
                        trace = self._trace(message, started, t0, capture, error, None, replay)
                        self._record_replay(message.worker, trace)
                        raise
        trace = self._trace(message, started, t0, capture, error, result, replay)
        return trace, unpicklable

    def _trace(self, message, started, t0, capture, error, result, replay) -> Trace:
        return Trace(
            0,  # numbered under the lock by _record
            message.seq,
            message.worker,
            message.data,
            started,
            time.perf_counter() - t0,
            capture.text(),
            error,
            replay,
            result=result,
        )

    def _record(self, w: WorkerState, trace: Trace) -> None:
        """Keep ``trace`` (the lock is held)."""
        trace.seq = self._next_seq
        self._next_seq += 1
        w.traces.appendleft(trace)
        self._new_traces.append(trace)
        if self._writer_asleep:
            self._writer_wake.notify()

    def _record_replay(self, name: str, trace: Trace) -> None:
        with self._lock:
            self._record(self._state(name), trace)
        self._notify(name)

    def replay(self, name: str, trace_id: str | None = None):
        """Run the current code of ``name`` on a trace's input, here, in the calling thread.

        Output shows where the caller is and exceptions propagate (so ``%debug`` works); a new
        trace is recorded either way. Returns the run's result.
        """
        with self._lock:
            w = self._workers.get(name)
            if w is None or w.handler is None:
                raise NBWorkersError(f"no worker named {name!r} is defined; run its cell first")
            handler = w.handler
            traces = [t for t in w.traces if not t.replay] or list(w.traces)
            kept_traces = list(w.traces)
        if trace_id is None:
            if not traces:
                raise NBWorkersError(f"worker {name!r} has no trace to replay yet")
            trace = traces[0]
        else:
            seq = parse_id(trace_id, "t")
            trace = next((t for t in kept_traces if t.seq == seq), None)
            if trace is None:
                kept = ", ".join(t.id for t in kept_traces) or "none"
                raise NBWorkersError(f"worker {name!r} has no trace {trace_id!r} (kept: {kept})")
        message = Message(trace.message_seq, name, trace.started_at_s, 1, trace.input_data)
        trace, _ = self._run(handler, message, replay=True)
        self._record_replay(name, trace)
        return trace.result

    def _retry_parked(self, w: WorkerState) -> None:
        if w.parked:
            w.queue.extendleft(reversed([m for m, _ in w.parked]))
            w.parked.clear()
            w.cond.notify_all()

    def retry_parked(self) -> None:
        """Give every parked message (its event could not be unpickled) another try."""
        with self._lock:
            for w in self._workers.values():
                self._retry_parked(w)

    # ----- looking ----------------------------------------------------------------------------

    def counts(self, name: str) -> dict:
        with self._lock:
            w = self._workers.get(name)
            if w is None:
                return {"queued": 0, "running": 0, "done": 0, "failed": 0}
            return w.counts()

    def traces(self, name: str) -> list[Trace]:
        with self._lock:
            w = self._workers.get(name)
            return list(w.traces) if w else []

    def unhandled(self) -> dict[str, int]:
        with self._lock:
            return {
                name: len(w.queue) + len(w.parked)
                for name, w in self._workers.items()
                if w.handler is None and (w.queue or w.parked)
            }

    def workers(self) -> list[str]:
        with self._lock:
            return [name for name, w in self._workers.items() if w.handler is not None]

    def definitions(self) -> list[tuple[str, Handler, int, Schedule | None]]:
        """(name, handler, concurrency, schedule) of every defined worker and cron."""
        with self._lock:
            return [
                (name, w.handler, w.concurrency, w.schedule)
                for name, w in self._workers.items()
                if w.handler is not None
            ]

    def snapshot(self, name: str) -> dict:
        """Everything a panel shows about ``name``, read in one go."""
        with self._lock:
            w = self._workers.get(name) or WorkerState(name, self._lock, self.traces_kept)
            now = self.clock()
            next_run_s = None
            if w.is_cron and not w.paused:
                next_run_s = w.schedule.next_run(w.last_run_s, now, self.zone)
            last_error = next((t.error for t in w.traces if t.error), None)
            return {
                "name": name,
                "defined": w.handler is not None,
                "kind": "cron" if w.is_cron else "worker",
                "paused": w.paused,
                "counts": w.counts(),
                "concurrency": w.concurrency,
                "schedule": w.schedule.describe() if w.is_cron else None,
                "next_run_s": next_run_s,
                "last_run_s": w.traces[0].started_at_s if w.is_cron and w.traces else None,
                "last_error": last_error,
                "traces": list(w.traces),
                "oldest_s": w.queue[0].enqueued_at_s if w.queue else None,
                "now": now,
            }

    def unhandled_details(self) -> list[tuple[str, int, float | None]]:
        """(name, queued, oldest enqueued_at) for each name with messages but no worker."""
        with self._lock:
            return [
                (name, len(w.queue) + len(w.parked), w.queue[0].enqueued_at_s if w.queue else None)
                for name, w in self._workers.items()
                if w.handler is None and (w.queue or w.parked)
            ]

    def resend(self, name: str, trace_id: str) -> str:
        """Queue a trace's input again for ``name`` (a background replay); the message id."""
        seq = parse_id(trace_id, "t")
        with self._lock:
            w = self._workers.get(name)
            trace = next((t for t in w.traces if t.seq == seq), None) if w else None
        if trace is None:
            raise NBWorkersError(f"{name!r} has no trace {trace_id!r} any more")
        return self._enqueue(name, [trace.input_data or _NO_EVENT])[0]

    def wait(self, name: str | None = None, timeout: float | None = 30) -> bool:
        """Block until nothing is queued or running for ``name`` (or every defined, unpaused
        worker); False if ``timeout`` seconds passed first."""
        if name is not None:
            check_name(name)

        def idle() -> bool:
            if name is not None:
                w = self._workers.get(name)
                return w is None or not (w.queue or w.parked or w.running)
            return not any(
                w.queue or w.parked or w.running
                for w in self._workers.values()
                if w.handler is not None and not w.paused
            )

        with self._lock:
            self._change_waiters += 1
            try:
                return self._changed.wait_for(idle, timeout)
            finally:
                self._change_waiters -= 1

    # ----- listeners (panels) -------------------------------------------------------------

    def add_listener(self, callback: Callable[[set[str]], None]) -> None:
        """Call ``callback(names)`` with the names that changed, at most every 0.4 s (and
        with an empty set every 30 s when nothing changes), on the notifier thread."""
        with self._lock:
            self._check_running()
            self._listeners.append(callback)
            if self._notifier is None:
                self._notifier = self._spawn(self._notify_loop, "nbworkers-notify")

    def _notify(self, name: str) -> None:
        if self._listeners:
            with self._lock:
                self._mark_changed(name)

    def _mark_changed(self, name: str) -> None:
        """Tell the listeners about ``name`` soon (the lock is held)."""
        if self._listeners:
            self._changed_names.add(name)
            if self._notifier_asleep:
                self._notify_wake.notify()

    def _notify_loop(self) -> None:
        lock = self._lock
        while True:
            with lock:
                if not self._changed_names and not self._stopping:
                    self._notifier_asleep = True
                    self._notify_wake.wait(NOTIFY_IDLE_S)
                    self._notifier_asleep = False
                if self._stopping:
                    return
                names, self._changed_names = self._changed_names, set()
                listeners = list(self._listeners)
            for callback in listeners:
                try:
                    callback(names)
                except Exception:  # noqa: BLE001 - a broken panel must not stop the runtime
                    print(f"nbworkers: a panel failed to update {names}:", file=sys.__stderr__)
                    traceback.print_exc(file=sys.__stderr__)
            with lock:
                self._notify_wake.wait_for(lambda: self._stopping, NOTIFY_INTERVAL_S)

    # ----- writing ------------------------------------------------------------------------

    def _pending(self) -> bool:
        return bool(self._inserts or self._acks or self._new_traces or self._dirty)

    def _take(self) -> tuple[Batch, list[Trace]]:
        """Everything to write, leaving empty lists behind (the lock is held)."""
        batch = Batch(
            inserts=self._inserts,
            acks=self._acks,
            workers=[w.row() for w in self._dirty],
        )
        traces = self._new_traces
        self._inserts, self._acks, self._new_traces = [], [], []
        self._dirty = set()
        if self._next_seq != self._saved_seq:
            batch.next_seq = self._saved_seq = self._next_seq
        return batch, traces

    def _trace_rows(self, traces: list[Trace]) -> list[TraceRow]:
        """The newest ``traces_kept`` of each worker, ready for the store."""
        kept: dict[str, int] = {}
        rows = []
        for t in reversed(traces):
            if kept.get(t.worker, 0) >= self.traces_kept:
                continue
            kept[t.worker] = kept.get(t.worker, 0) + 1
            result, result_repr = t.result_for_storage(self.result_max_bytes)
            rows.append(
                TraceRow(
                    t.seq,
                    t.worker,
                    t.message_seq,
                    t.started_at_s,
                    t.duration,
                    t.input_data,
                    result,
                    _text(result_repr),
                    _text(t.stdout),
                    _text(t.error),
                    t.replay,
                )
            )
        return rows

    def _write_loop(self) -> None:
        lock = self._lock
        while True:
            with lock:
                while not self._pending() and not self._writer_stop and not self._flush_now:
                    self._writer_asleep = True
                    self._writer_wake.wait()
                    self._writer_asleep = False
                if self._writer_stop and not self._pending():
                    self._written = self._taken
                    self._written_cond.notify_all()
                    return
                batch, traces = self._take()
                self._taken += 1
                self._flush_now = False
            error = None
            try:
                # A result's __repr__ and pickling are user code: keep their prints out of cells.
                with output.Capture():
                    batch.traces = self._trace_rows(traces)
                if batch:
                    self.store.write(batch)
            except Exception as exc:  # noqa: BLE001 - reported by flush() and on stderr, retried
                error = exc
                print(
                    f"nbworkers: could not write to {self.path!r} ({exc}); "
                    "the changes stay in memory and are tried again",
                    file=sys.__stderr__,
                )
            with lock:
                if error is not None:
                    self._put_back(batch, traces)
                self._write_error = error
                self._written = self._taken
                self._written_cond.notify_all()
                # Group commit: let a few milliseconds of work gather before the next batch.
                gap = self.flush_interval_s if error is None else 1.0
                self._writer_wake.wait_for(lambda: self._flush_now or self._writer_stop, gap)
                if error is not None and self._writer_stop:
                    print(
                        f"nbworkers: stopping with unwritten changes to {self.path!r}: "
                        "messages emitted since the last successful write are lost",
                        file=sys.__stderr__,
                    )
                    return

    def _put_back(self, batch: Batch, traces: list[Trace]) -> None:
        self._inserts[:0] = batch.inserts
        self._acks[:0] = batch.acks
        self._new_traces[:0] = traces
        for row in batch.workers:
            self._dirty.add(self._workers[row.name])
        if batch.next_seq is not None:
            self._saved_seq = -1

    def flush(self, timeout: float | None = 30) -> None:
        """Return once everything emitted or finished so far is on disk.

        Raises NBWorkersError if the write failed (nothing is lost: it is retried).
        """
        with self._lock:
            pending = self._pending()
            if not pending and self._written >= self._taken and self._write_error is None:
                return
            target = self._taken + 1 if pending else self._taken
            self._flush_now = True
            self._writer_wake.notify()
            if not self._written_cond.wait_for(lambda: self._written >= target, timeout):
                raise NBWorkersError(f"nbworkers: writing to {self.path!r} took over {timeout} s")
            if self._write_error is not None:
                raise NBWorkersError(
                    f"nbworkers could not write to {self.path!r}: {self._write_error}. What was "
                    "emitted is kept in memory and written when the problem is gone (free disk "
                    "space, fix permissions), or pick another file with %config NBWorkers.db_path"
                ) from self._write_error

    @property
    def has_unwritten(self) -> bool:
        """True while emitted messages wait for the writer or are being written."""
        with self._lock:
            return bool(self._inserts) or self._written < self._taken

    # ----- stopping ---------------------------------------------------------------------------

    def stop(self, timeout_s: float = 5.0) -> None:
        """Finish runs that end within ``timeout_s``, write everything, close the file.

        Runs still going after that are abandoned: their messages stay queued in the file
        and are delivered again next time (at-least-once). Calling it twice is harmless.
        """
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            for w in self._workers.values():
                w.cond.notify_all()
            self._cron_wake.notify_all()
            self._notify_wake.notify_all()
        deadline = time.monotonic() + timeout_s
        others = [
            t
            for t in self._threads
            if t is not self._writer and t is not threading.current_thread()
        ]
        for thread in others:
            thread.join(max(0.0, deadline - time.monotonic()))
        # Runs that ended in time are acknowledged by this last batch.
        with self._lock:
            self._writer_stop = True
            self._writer_wake.notify()
        self._writer.join(max(1.0, deadline - time.monotonic()))
        try:
            if not self._writer.is_alive():
                self.store.checkpoint()
                self.store.close()
        finally:
            # A run still going keeps its output captured: the router stays until it ends.
            if not any(t.is_alive() for t in others):
                output.uninstall()
