"""The runtime: in-memory queues, the threads that run handlers, and the timers.

This is the only module that starts threads. Live state (queues, counts, traces) is kept in
memory under one lock; DuckDB is the durable copy, written by the writer (``writer.py``) in
group commits, so no statement is ever made per message and no thread ever polls:

- ``emit`` appends to the worker's queue and to the writer's pending list, and wakes one idle
  run thread of that worker and, if it sleeps, the writer;
- each worker has ``concurrency`` run threads that sleep on the worker's condition;
- one timer thread sleeps until the next cron time, delayed message or run deadline;
- a message leaves the database only in the batch after its run ended (at-least-once).
"""

from __future__ import annotations

import contextlib
import gc
import pickle
import random
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime

from . import handlers, output
from .alerts import Alerts
from .control import QueueControl
from .errors import ArgumentTypeError, ArgumentValueError, NBWorkersError
from .executors import Executors, timeout_note
from .handlers import Handler, check_name
from .listeners import Listeners
from .log import log
from .message import ClassNotDefined, Message, load_event, parse_id
from .schedule import Schedule, Zone
from .store import DuckDBStore, Store
from .store.writer import Writer
from .trace import NO_RESULT, RunResult, Trace, run_result
from .worker import DeadLetter, Policy, Run, WorkerState, _number, _whole

_PICKLE = pickle.HIGHEST_PROTOCOL
_NO_EVENT = pickle.dumps(None, protocol=_PICKLE)  # what a cron tick carries
# The timer sleeps until the next due time, but wakes at least this often so that a
# suspended laptop or a changed system clock cannot delay a cron for long.
_TIMER_MAX_SLEEP_S = 60.0
_MANUAL_PAUSE = "paused by hand (nw.pause, --paused or the panel)"

# How far ahead a message may be delayed: dates beyond year 9999 cannot even be shown.
_MAX_DELAY_S = 10 * 365 * 86400

_NOTHING = RunResult(NO_RESULT, None, None)  # what a failed run returned

_thread = threading.local()  # .worker, .runtime: the worker and runtime whose run thread this is


def run_owner() -> Runtime | None:
    """The runtime whose run thread this is (None on any other thread)."""
    return getattr(_thread, "runtime", None)


def snapshot(event) -> bytes:
    """The pickled copy of ``event`` that a message carries; TypeError naming the type."""
    try:
        return pickle.dumps(event, protocol=_PICKLE)
    except Exception as exc:
        raise ArgumentTypeError(
            f"emit: a value of type {type(event).__module__}.{type(event).__qualname__} cannot "
            f"be snapshotted ({type(exc).__name__}: {exc}); emit data that pickles (dicts, "
            "lists, numbers, strings, DataFrames, arrays, dataclasses). Nothing was enqueued."
        ) from exc


@contextlib.contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector (process-wide) while the block runs.

    Loading a long queue builds millions of objects (rows, then messages) that form no
    cycles; with the collector on, each collection traverses everything built so far:
    opening 1,000,000 queued messages took 3.0-4.0 s with it and 1.3-1.7 s without.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _format_error(exc: BaseException) -> str:
    return handlers.format_error(exc, __file__, load_event.__code__.co_filename)


def _undecodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _failure(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _last_line(error: str) -> str:
    lines = [line for line in error.strip().splitlines() if line.strip()]
    return lines[-1] if lines else error


class Runtime(QueueControl, Alerts, Listeners):
    """Queues, run threads, timers and the writer for one database file."""

    def __init__(
        self,
        path: str,
        *,
        traces_kept: int = 10,
        default_concurrency: int = 4,
        flush_interval_s: float = 0.005,
        result_max_bytes: int = 65536,
        timezone: str | None = None,
        storm_rate: int = 1000,
        storm_seconds: int = 5,
        max_queued: int = 1_000_000,
        failure_notice_after: int = 5,
        max_processes: int = 0,
        dask_address: str = "",
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        store: Store | None = None,
    ):
        self.path = path
        self.zone = Zone(timezone)
        self.clock = clock
        self.rng = rng or random.Random()
        self.traces_kept = traces_kept
        self.default_concurrency = default_concurrency
        self.storm_rate = storm_rate
        self.storm_seconds = storm_seconds
        self.max_queued = max_queued
        self.failure_notice_after = failure_notice_after
        self.result_max_bytes = result_max_bytes
        self.store = store if store is not None else DuckDBStore(path, traces_kept)
        self.executors = Executors(max_processes, dask_address)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a run ended or a queue emptied
        self._change_waiters = 0
        self._workers: dict[str, WorkerState] = {}
        self._stopping = False  # no new runs, ticks or emits
        self._threads: list[threading.Thread] = []
        self._listeners: list[Callable[[set[str]], None]] = []
        self._changed_names: set[str] = set()
        self._notify_wake = threading.Condition(self._lock)
        self._notifier_asleep = False
        self._notifier: threading.Thread | None = None
        self._timer_wake = threading.Condition(self._lock)
        self._timer_changed = False
        self._timer_at: float | None = None  # when the timer thread means to wake
        self._timer: threading.Thread | None = None
        self._on_failure: dict[str, Callable] = {}
        self._failures: list[tuple[str, Trace]] = []  # to report to on_failure callbacks
        self._alerts_wake = threading.Condition(self._lock)
        self._alerter: threading.Thread | None = None
        self._notices: list[str] = []  # "keeps failing" notices for the next cell
        with _gc_paused():
            try:
                loaded = self.store.load()
            except BaseException:
                self.store.close()  # a damaged file was moved aside; any other error: unlocked
                raise
            self.writer = Writer(
                self.store,
                self._lock,
                loaded.next_seq,
                traces_kept=traces_kept,
                flush_interval_s=flush_interval_s,
            )
            self._load(loaded)
        output.install()
        self._writer_thread = self._spawn(self.writer.loop, "nbworkers-writer")
        if any(w.delayed for w in self._workers.values()):
            with self._lock:
                self._ensure_timer()

    # ----- start-up -------------------------------------------------------------------------

    def _load(self, loaded) -> None:
        now = self.clock()
        for row in loaded.workers:
            w = self._state(row.name)
            w.paused, w.done, w.failed = bool(row.paused), int(row.done), int(row.failed)
            w.last_run_s, w.skipped = row.last_run, int(row.skipped or 0)
            w.pause_reason, w.retried = row.pause_reason, int(row.retried or 0)
            w.kind = row.kind
        for row in loaded.messages:
            # A message whose attempt had started when the kernel died gets its next attempt.
            attempt = row.attempt + 1 if row.started else row.attempt
            m = Message(
                row.seq, row.worker, row.enqueued_at, attempt, row.data, row.due_at, row.key
            )
            m.written = True
            if row.started:
                self.writer.update(m)  # the file says so too: queued again, not running
            w = self._state(row.worker)
            if m.due_at_s is not None and m.due_at_s > now:
                w.delay(m)
            else:
                m.due_at_s = None
                w.queue.append(m)
            if m.key is not None:
                w.keys[m.key] = m
        for row in loaded.dead:
            m = Message(row.seq, row.worker, row.enqueued_at, row.attempt, row.data, None, row.key)
            letter = DeadLetter(m, row.error, row.died_at)
            letter.written = True
            self._state(row.worker).dead.append(letter)
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
                attempt=row.attempt,
                timed_out=row.timed_out,
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

    def emit(
        self,
        event,
        name: str,
        *,
        key: str | None = None,
        delay: float | None = None,
        at: datetime | None = None,
    ) -> str:
        """Queue ``event`` for worker ``name``; returns the message id at once.

        ``key``: enqueue nothing if a message with this key is queued or running for
        ``name``, and return that message's id. ``delay`` (seconds) or ``at`` (a datetime;
        naive means local time, or ``NBWorkers.timezone`` when set): the message waits until
        then.
        """
        check_name(name)
        if key is not None and not isinstance(key, str):
            raise ArgumentTypeError(f"emit: key must be a string, not {type(key).__name__}")
        if key is not None and not key.isprintable() and _undecodable(key):
            raise ArgumentValueError(
                f"emit: key {key!r} is not valid text (it holds a lone surrogate)"
            )
        due_at = self._due_at(delay, at)
        data = snapshot(event)
        with self._lock:
            w = self._state(name)
            if key is not None and key in w.keys:
                return w.keys[key].id
            message = self._enqueue_locked(w, [data], time.time(), due_at, key)[0]
        return message.id

    def emit_many(self, events: Iterable, name: str) -> list[str]:
        """Queue every event of ``events`` (all or nothing) for worker ``name``."""
        check_name(name)
        return self._enqueue(name, [snapshot(e) for e in check_events(events)])

    def _due_at(self, delay, at) -> float | None:
        if delay is not None and at is not None:
            raise ArgumentValueError("emit: give delay= or at=, not both")
        if delay is not None:
            if not _number(delay) or not 0 <= delay <= _MAX_DELAY_S:
                raise ArgumentValueError(
                    f"emit: delay must be seconds, from 0 to {_MAX_DELAY_S:,} (ten years), "
                    f"not {delay!r}"
                )
            return self.clock() + delay if delay > 0 else None
        if at is not None:
            if not isinstance(at, datetime):
                raise ArgumentTypeError(f"emit: at must be a datetime, not {type(at).__name__}")
            return at.timestamp() if at.tzinfo else self.zone.epoch(at)
        return None

    def _enqueue(self, name: str, datas: list[bytes]) -> list[str]:
        now = time.time()
        with self._lock:
            messages = self._enqueue_locked(self._state(name), datas, now)
        return [m.id for m in messages]

    def _enqueue_locked(
        self,
        w: WorkerState,
        datas: list[bytes],
        now: float,
        due_at: float | None = None,
        key: str | None = None,
    ) -> list[Message]:
        """Queue ``datas`` for ``w`` (the lock is held)."""
        # While stopping, emits (of runs still going, of other threads) join the last batch.
        # Once the writer has taken it, nothing more can reach the file: refused, not lost.
        if not self.taking_emits:
            raise NBWorkersError(
                "nbworkers is stopping (nw.shutdown, %unload_ext, %reload_ext or the kernel "
                "exiting) and has written its last batch: this emit came after it. Nothing was "
                "enqueued; everything emitted before is kept. Emit again once the stop has "
                "returned (nw.emit then starts nbworkers again)."
            )
        name = w.name
        seq = self.writer.number(len(datas))
        messages = [Message(seq + i, name, now, 1, d, due_at, key) for i, d in enumerate(datas)]
        if key is not None:
            w.keys[key] = messages[0]
        if due_at is not None and due_at > self.clock():
            for m in messages:
                w.delay(m)
            self._wake_timer(due_at)
        else:
            w.queue.extend(messages)
            if w.idle and (not w.paused or w.forced):
                if len(messages) == 1:
                    w.cond.notify()
                else:
                    w.cond.notify(len(messages))
        self.writer.insert(messages)
        if w.handler is not None and not w.paused:
            self._guard(w, len(messages))
        if self._listeners:
            self._mark_changed(name)
        return messages

    def _guard(self, w: WorkerState, count: int) -> None:
        """The storm guard: pause ``w`` if its runs emit to it too fast, or its queue is too
        long (the lock is held)."""
        if getattr(_thread, "worker", None) == w.name and w.note_self_emits(
            count, self.clock(), self.storm_rate, self.storm_seconds
        ):
            self._pause_locked(
                w,
                f"storm guard: its runs emitted to it more than {self.storm_rate:,} messages "
                f"a second for {self.storm_seconds} s (a loop?). Fix the handler, then resume; "
                "the queued messages are kept",
            )
        elif w.queued() > self.max_queued:
            self._pause_locked(
                w,
                f"storm guard: more than {self.max_queued:,} messages queued "
                "(%config NBWorkers.max_queued). Resume when ready; nothing was dropped",
            )

    # ----- workers ------------------------------------------------------------------------

    def define(
        self,
        name: str,
        handler: Handler,
        concurrency: int | None = None,
        paused: bool = False,
        policy: Policy | None = None,
    ) -> None:
        """Make ``handler`` the code of worker ``name``; new messages use it at once."""
        check_name(name)
        concurrency = self.default_concurrency if concurrency is None else concurrency
        _check_concurrency(concurrency)
        policy = policy or Policy()
        self._check_running()
        self.executors.prepare(handler, policy.executor, concurrency)
        with self._lock:
            self._check_running()
            w = self._state(name)
            w.handler = handler
            w.policy = policy
            w.kind = "worker"
            self.writer.worker_changed(w)
            if w.schedule is not None:
                w.schedule = None  # a worker now: no more ticks
                self._timers_changed()
            if paused and not w.paused:
                self._pause_locked(w)
            self._set_concurrency(w, concurrency)
            self._retry_parked(w)
            if w.policy.timeout_s is not None:
                self._ensure_timer()
        self._notify(name)

    def set_concurrency(self, name: str, concurrency: int) -> None:
        """Change how many runs of ``name`` may go at once, effective immediately."""
        check_name(name)
        _check_concurrency(concurrency)
        with self._lock:
            w = self._workers.get(name)
            if w is None or w.handler is None:
                raise NBWorkersError(f"no worker named {name!r} is defined")
            if w.is_cron:
                raise NBWorkersError(f"{name!r} is a cron: crons run one at a time")
            self._set_concurrency(w, concurrency)
        self._notify(name)

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
            self._pause_locked(self._state(name))
        self._notify(name)

    def _pause_locked(self, w: WorkerState, reason: str | None = None) -> None:
        if not w.paused or reason:
            w.paused = True
            w.pause_reason = reason
            self.writer.worker_changed(w)
            self._timers_changed()
            self._mark_changed(w.name)

    def resume(self, name: str) -> None:
        """Lift a pause of ``name``; its queued messages start at once."""
        check_name(name)
        with self._lock:
            w = self._state(name)
            if w.paused:
                w.paused = False
                w.pause_reason = None
                w.clear_storm()
                self.writer.worker_changed(w)
                w.cond.notify_all()
                self._timers_changed()
        self._notify(name)

    def is_paused(self, name: str) -> bool:
        check_name(name)
        with self._lock:
            w = self._workers.get(name)
            return bool(w and w.paused)

    def pause_reason(self, name: str) -> str | None:
        """Why ``name`` is paused (the storm guard says why it paused it); None if running."""
        check_name(name)
        with self._lock:
            w = self._workers.get(name)
            if w is None or not w.paused:
                return None
            return w.pause_reason or _MANUAL_PAUSE

    def _check_running(self) -> None:
        if self._stopping:
            raise NBWorkersError("nbworkers has been stopped; run %load_ext nbworkers again")

    # ----- crons ------------------------------------------------------------------------------

    def define_cron(
        self,
        name: str,
        handler: Handler,
        schedule: Schedule,
        paused: bool = False,
        policy: Policy | None = None,
    ) -> None:
        """Make ``handler`` run on ``schedule`` as cron ``name`` (one run at a time)."""
        check_name(name)
        policy = policy or Policy()
        self._check_running()
        try:
            schedule.next_run(None, self.clock(), self.zone)
        except Exception as exc:
            raise NBWorkersError(f"cron {name!r} was not defined: {exc}") from exc
        self.executors.prepare(handler, policy.executor, 1)
        with self._lock:
            self._check_running()
            w = self._state(name)
            w.handler = handler
            w.schedule = schedule
            w.schedule_error = None
            w.policy = policy
            w.kind = "cron"
            self.writer.worker_changed(w)
            if schedule.wall_clock and w.last_run_s is None:
                # Its first run is the first of its times after now: count from here, so a
                # timer waking a moment late at that time still finds it due.
                w.last_run_s = self.clock()
                self.writer.worker_changed(w)
            if paused and not w.paused:
                self._pause_locked(w)
            self._set_concurrency(w, 1)  # a cron never overlaps itself
            self._timer_pass(self.clock())  # due at once: queued before this returns
            self._ensure_timer()
            self._timers_changed()
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
            self._timers_changed()
        self._notify(name)

    def run_now(self, name: str) -> str:
        """Run cron ``name`` once now, even while paused (after a run still going); its
        schedule does not move. Returns the run's message id."""
        check_name(name)
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
        check_name(name)
        with self._lock:
            w = self._workers.get(name)
            if w is None or not w.is_cron:
                raise NBWorkersError(f"no cron named {name!r} is defined; run its cell first")
            if w.paused:
                return None
            try:
                due = w.schedule.next_run(w.last_run_s, self.clock(), self.zone)
            except Exception as exc:
                raise NBWorkersError(f"cron {name!r} has no next run: {_failure(exc)}") from exc
            return (w.schedule.zone or self.zone).aware(due)

    def _tick(self, w: WorkerState, now: float) -> None:
        """The schedule of cron ``w`` fired (the lock is held)."""
        w.last_run_s = now
        self.writer.worker_changed(w)
        if w.running or w.queue or w.delayed:
            w.skipped += 1  # never overlap: the previous run is still going
        else:
            message = Message(self.writer.number(), w.name, now, 1, _NO_EVENT)
            w.queue.append(message)
            self.writer.insert([message])
            if w.idle:
                w.cond.notify()

    # ----- the timer: crons, delayed messages, time limits ------------------------------------

    def _ensure_timer(self) -> None:
        if self._timer is None:
            self._timer = self._spawn(self._timer_loop, "nbworkers-timer")

    def _timers_changed(self) -> None:
        self._timer_changed = True
        self._timer_wake.notify_all()

    def _wake_timer(self, due_s: float) -> None:
        """Make sure the timer wakes by ``due_s`` (the lock is held)."""
        if self._timer is None:
            self._ensure_timer()
        elif self._timer_at is None or due_s < self._timer_at:
            self._timers_changed()

    def run_timers(self, now: float | None = None) -> float | None:
        """Start every cron due at ``now``, release the delayed messages due, and end runs past
        their time limit; returns when the next of these is due (None: nothing waits).

        The timer thread calls this; tests call it with their own ``now``.
        """
        with self._lock:
            return self._timer_pass(self.clock() if now is None else now)

    def _timer_pass(self, now: float) -> float | None:
        wake_at = None

        def soonest(due):
            nonlocal wake_at
            if due is not None:
                wake_at = due if wake_at is None else min(wake_at, due)

        for w in list(self._workers.values()):
            if w.delayed:
                ready = w.due(now)
                if ready:
                    for m in ready:
                        m.due_at_s = None  # it may run now
                    w.queue.extend(ready)
                    w.cond.notify(len(ready))
                    self._mark_changed(w.name)
                soonest(w.next_due_s())
            for run in [r for r in w.runs.values() if r.deadline_s is not None]:
                if run.deadline_s <= now:
                    self._time_out(w, run)
                else:
                    soonest(run.deadline_s)
            if w.schedule is None or w.handler is None or w.paused:
                continue
            due = self._cron_due(w, now)
            if due is not None and due <= now:
                self._tick(w, now)
                self._mark_changed(w.name)
                due = self._cron_due(w, now)
            soonest(due)
        return wake_at

    def _cron_due(self, w: WorkerState, now: float) -> float | None:
        """When cron ``w`` runs next (the lock is held). None if that cannot be computed: its
        panel says why, the other crons go on, and the timer tries again on its next pass (at
        least once a minute)."""
        try:
            due = w.schedule.next_run(w.last_run_s, now, self.zone)
        except Exception as exc:  # noqa: BLE001 - shown in its panel; the other crons go on
            error = _failure(exc)
            if error != w.schedule_error:
                w.schedule_error = error
                self._mark_changed(w.name)
                log.error("cron %r has no next run:", w.name, exc_info=exc)
            return None
        if w.schedule_error is not None:
            w.schedule_error = None
            self._mark_changed(w.name)
        return due

    def _timer_loop(self) -> None:
        while True:
            try:
                wake_at = self.run_timers()
            except Exception:  # noqa: BLE001 - reported; crons and delays must go on
                log.exception("the timer failed (it goes on):")
                wake_at = self.clock() + 1.0
            with self._lock:
                if self._stopping:
                    return
                if self._timer_changed:
                    self._timer_changed = False
                    continue
                sleep_s = _TIMER_MAX_SLEEP_S
                if wake_at is not None:
                    sleep_s = min(sleep_s, max(0.0, wake_at - self.clock()))
                self._timer_at = self.clock() + sleep_s
                self._timer_wake.wait(sleep_s)
                self._timer_at = None

    def _time_out(self, w: WorkerState, run: Run) -> None:
        """End ``run``, which passed its time limit (the lock is held). A pool process running
        it is killed and a Dask task cancelled; a thread cannot be stopped, so it is left to
        finish on its own. A new thread takes the slot either way."""
        run.timed_out = True
        self.executors.abandon(run)
        del w.runs[run.index]
        w.running -= 1
        limit = run.policy.timeout_s
        error = (
            f"TimeoutError: the run took longer than its time limit of {limit:g} s "
            f"(--timeout) and was abandoned. {timeout_note(run.policy.executor)}\n"
        )
        trace = self._trace(run, error, None, timed_out=True)
        self._settle(w, run.message, trace, run.policy)
        if not self._stopping and run.index < w.concurrency:
            self._spawn(self._run_loop, f"nbworkers-run-{w.name}-{run.index}", w, run.index)
        else:
            w.live.discard(run.index)  # a later set_concurrency starts a thread for it

    # ----- running ----------------------------------------------------------------------------

    def _run_loop(self, w: WorkerState, index: int) -> None:
        _thread.worker = w.name
        _thread.runtime = self
        lock = self._lock
        run = outcome = None
        while True:
            # One critical section per message, not two: the run that ended is settled and the
            # next message taken under the same acquisition, so a drain's run threads meet on
            # the one runtime lock half as often.
            with lock:
                if run is not None:
                    if run.timed_out:
                        return  # the timer recorded it and gave this slot to a new thread
                    if outcome is None:
                        # Stopping ended its process or Dask task: the message stays queued.
                        del w.runs[index]
                        w.running -= 1
                        return
                    self._end_run(w, run, *outcome)
                while not self._stopping and index < w.concurrency and not w.ready():
                    w.idle += 1
                    w.cond.wait()
                    w.idle -= 1
                if self._stopping or index >= w.concurrency or w.handler is None:
                    w.live.discard(index)
                    return
                run = self._start_run(w, index)
                handler = w.handler
            outcome = self._execute(handler, run, replay=False)

    def _start_run(self, w: WorkerState, index: int) -> Run:
        """Take the next message of ``w`` and start its run (the lock is held; ``w.ready()``)."""
        message = w.take()
        w.running += 1
        policy = w.policy
        message.started = True
        self.writer.update(message)
        deadline = None
        if policy.timeout_s is not None:
            deadline = self.clock() + policy.timeout_s
            self._wake_timer(deadline)
        run = Run(
            message,
            index,
            time.time(),
            time.perf_counter(),
            output.Capture(),
            deadline,
            policy,
        )
        w.runs[index] = run
        return run

    def _end_run(self, w: WorkerState, run: Run, result, error, unpicklable) -> None:
        """``run`` ended in its own thread, in time (the lock is held)."""
        message = run.message
        del w.runs[run.index]
        w.running -= 1
        trace = self._trace(run, error, result)
        if unpicklable:
            self._park(w, message, unpicklable, trace)
        else:
            w.parked_traced.discard(message.seq)
            self._settle(w, message, trace, run.policy)

    def _execute(self, handler: Handler, run: Run, replay: bool):
        """Run ``handler`` on ``run.message``: (RunResult or None, error text, reason it was
        parked), or None when its process or Dask task was abandoned because the runtime
        stops.

        Everything of the run that is user code happens here, in the run's thread, within its
        time limit: unpickling the event, the handler, the result's repr and pickling. A
        replay always runs here, on the calling thread, whatever the executor: that is where
        ``%debug`` can reach it."""
        result = error = unpicklable = None
        with run.capture:
            try:
                event = load_event(run.message.data)
            except ClassNotDefined as exc:
                unpicklable = (
                    f"the event cannot be unpickled yet: {exc}. It stays queued and is tried "
                    "again after the next cell runs"
                )
                error = unpicklable
                if replay:
                    raise NBWorkersError(unpicklable) from exc
            # Unpickling runs user code (__setstate__, __reduce__), which may raise anything:
            # a failed attempt like any other (retried, then a dead letter).
            except BaseException as exc:
                error = "the event cannot be unpickled, so the handler did not run:\n"
                error += _format_error(exc)
                if replay:
                    raise NBWorkersError(
                        f"the trace's input cannot be unpickled ({type(exc).__name__}: {exc})"
                    ) from exc
            else:
                if run.policy.executor != "threads" and not replay:
                    outcome = self.executors.run(
                        handler, event, run, run.policy.executor, self._remote_emit
                    )
                    if outcome is None:
                        return None
                    run.capture.parts.append(outcome["stdout"])
                    if outcome["error"] is None:
                        data = outcome["result_data"]
                        if data is not None and len(data) > self.result_max_bytes:
                            data = None
                        result = RunResult(NO_RESULT, data, outcome["result_repr"])
                    return result, outcome["error"], None
                try:
                    value = handler.call(event, run.message)
                # A handler may raise anything, SystemExit and KeyboardInterrupt included: the
                # run fails and is recorded; the runtime goes on.
                except BaseException as exc:
                    error = _format_error(exc)
                    if replay:
                        trace = self._trace(run, error, None, replay=True)
                        self._record_replay(run.message.worker, trace)
                        raise
                else:
                    if replay or not self._superseded(run.message.worker):
                        result = run_result(value, self.result_max_bytes)
                    else:
                        result = RunResult(value, None, None)  # no copies: see _superseded
        return result, error, unpicklable

    def _superseded(self, name: str) -> bool:
        """Whether the trace of a run of ``name`` ending now will be replaced anyway: at least
        ``traces_kept`` of its messages wait to run, so that many newer traces will follow.
        Its result's copies (repr and pickle: user code, a cost every run) are then skipped,
        so that a drain does not pay for copies no one will see. Read without the lock: a
        guess, which only decides that."""
        w = self._workers.get(name)
        return w is not None and not w.paused and len(w.queue) >= self.traces_kept

    def _remote_emit(self, kind: str, request: tuple) -> tuple:
        """An emit by a handler running in another process: ("ok", message id(s)) or
        ("error", the exception), for the far side to return or raise."""
        try:
            if kind == "emit":
                event, name, key, delay, at = request
                return ("ok", self.emit(event, name, key=key, delay=delay, at=at))
            events, name = request
            return ("ok", self.emit_many(events, name))
        # What emit raises is the handler's to see, as it would be on a thread.
        except Exception as exc:  # noqa: BLE001
            return ("error", exc)

    def _trace(
        self, run: Run, error, result: RunResult | None, replay=False, timed_out=False
    ) -> Trace:
        m = run.message
        value, data, shown = _NOTHING if result is None else result
        return Trace(  # positional: keywords cost a drain a microsecond a run
            0,  # numbered under the lock by _record
            m.seq,
            m.worker,
            m.data,
            run.started_at_s,
            time.perf_counter() - run.t0,
            run.capture.text(),
            error,
            replay,
            value,
            data,
            shown,
            m.attempt,
            timed_out,
        )

    def _park(self, w: WorkerState, message: Message, reason: str, trace: Trace) -> None:
        """Keep a message whose event cannot be unpickled yet (the lock is held)."""
        message.started = False  # it never really ran
        self.writer.update(message)
        w.parked.append((message, reason))
        if message.seq not in w.parked_traced:  # one trace says why; retries add none
            w.parked_traced.add(message.seq)
            self._record(w, trace)
        self._after_change(w)

    def _settle(self, w: WorkerState, message: Message, trace: Trace, policy: Policy) -> None:
        """A run of ``message`` ended (the lock is held): done, retried later, or dead."""
        now = self.clock()
        if trace.error is None:
            w.done += 1
            w.failing = 0
            w.forget_key(message)
            self.writer.ack([message.seq])
        else:
            w.failing += 1
            if w.failing == self.failure_notice_after:
                self._notices.append(
                    f"nbworkers: {w.kind_name} {w.name!r} has failed {w.failing} runs in a row; "
                    f"the latest: {_last_line(trace.error)}  (see nw.traces({w.name!r}))"
                )
            if self._on_failure:
                self._failures.append((w.name, trace))
                self._alerts_wake.notify()
            if message.attempt <= policy.retries:
                w.retried += 1
                message.attempt += 1
                message.started = False
                wait_s = policy.retry_delay_s(message.attempt - 1, self.rng)
                if wait_s > 0:
                    message.due_at_s = now + wait_s
                    w.delay(message)
                    self._wake_timer(message.due_at_s)
                else:
                    w.queue.appendleft(message)  # "retry now": before newer messages
                    w.cond.notify()
                self.writer.update(message)
            else:
                w.failed += 1
                w.forget_key(message)
                if w.is_cron:
                    self.writer.ack([message.seq])
                else:
                    letter = DeadLetter(message, trace.error, now)
                    w.dead.append(letter)
                    self.writer.dead(letter)
        self.writer.worker_changed(w)
        self._record(w, trace)
        self._after_change(w)

    def _after_change(self, w: WorkerState) -> None:
        if self._change_waiters:
            self._changed.notify_all()
        if self._listeners:
            self._mark_changed(w.name)

    def _record(self, w: WorkerState, trace: Trace) -> None:
        """Keep ``trace`` (the lock is held)."""
        trace.seq = self.writer.number()
        w.traces.appendleft(trace)
        self.writer.trace(trace)

    def _record_replay(self, name: str, trace: Trace) -> None:
        with self._lock:
            self._record(self._state(name), trace)
        self._notify(name)

    def replay(self, name: str, trace_id: str | None = None):
        """Run the current code of ``name`` on a trace's input, here, in the calling thread.

        Output shows where the caller is and exceptions propagate (so ``%debug`` works); a new
        trace is recorded either way. Returns the run's result.
        """
        check_name(name)
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
        run = Run(
            message, -1, time.time(), time.perf_counter(), output.Capture(tee=True), None, Policy()
        )
        result, error, _ = self._execute(handler, run, replay=True)
        self._record_replay(name, self._trace(run, error, result, replay=True))
        return result.value

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
        self._known_or_valid(name)
        with self._lock:
            w = self._workers.get(name) or WorkerState(name, self._lock, self.traces_kept)
            return w.counts(self.clock())

    def traces(self, name: str) -> list[Trace]:
        self._known_or_valid(name)
        with self._lock:
            w = self._workers.get(name)
            return list(w.traces) if w else []

    def unhandled(self) -> dict[str, int]:
        with self._lock:
            return {
                name: w.queued()
                for name, w in self._workers.items()
                if w.handler is None and w.queued()
            }

    def workers(self) -> list[str]:
        with self._lock:
            return [name for name, w in self._workers.items() if w.handler is not None]

    def definitions(self) -> list[tuple[str, Handler, int, Schedule | None, Policy]]:
        """(name, handler, concurrency, schedule, policy) of every defined worker and cron."""
        with self._lock:
            return [
                (name, w.handler, w.concurrency, w.schedule, w.policy)
                for name, w in self._workers.items()
                if w.handler is not None
            ]

    def snapshot(self, name: str) -> dict:
        """Everything a panel shows about ``name``, read in one go."""
        with self._lock:
            w = self._workers.get(name) or WorkerState(name, self._lock, self.traces_kept)
            now = self.clock()
            next_run_s = None
            schedule_error = w.schedule_error
            if w.is_cron and not w.paused and schedule_error is None:
                try:
                    next_run_s = w.schedule.next_run(w.last_run_s, now, self.zone)
                except Exception as exc:  # noqa: BLE001 - shown in the panel
                    schedule_error = _failure(exc)
            last_error = next((t.error for t in w.traces if t.error), None)
            oldest_run = min((r.t0 for r in w.runs.values()), default=None)
            return {
                "name": name,
                "defined": w.handler is not None,
                "kind": w.kind_name,
                "paused": w.paused,
                "pause_reason": w.pause_reason,
                "counts": w.counts(now),
                "concurrency": w.concurrency,
                "policy": w.policy,
                "schedule": w.schedule.describe() if w.is_cron else None,
                "next_run_s": next_run_s,
                "schedule_error": schedule_error,
                "zone": (w.schedule.zone or self.zone).tz if w.is_cron else None,
                "last_run_s": w.traces[0].started_at_s if w.is_cron and w.traces else None,
                "last_error": last_error,
                "failing": w.failing if w.failing >= self.failure_notice_after else 0,
                "traces": list(w.traces),
                "oldest_s": w.oldest_s(),
                "delayed": len(w.delayed),
                "next_due_s": w.next_due_s(),
                # How long the longest run still going has taken so far (None: none going)
                "longest_run_s": None if oldest_run is None else time.perf_counter() - oldest_run,
                "now": now,
            }

    def unhandled_details(self) -> list[tuple[str, int, float | None]]:
        """(name, queued, oldest enqueued_at) for each name with messages but no worker."""
        with self._lock:
            return [
                (name, w.queued(), w.oldest_s())
                for name, w in self._workers.items()
                if w.handler is None and w.queued()
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
        """Block until nothing is queued (delayed messages included) or running for ``name``
        (or every defined, unpaused worker); False if ``timeout`` seconds passed first."""
        if name is not None:
            check_name(name)
        if timeout is not None and (not _number(timeout) or timeout < 0):
            raise ArgumentValueError(
                f"wait: timeout must be seconds, 0 or more (or None: no limit), not {timeout!r}"
            )

        def idle() -> bool:
            if name is not None:
                w = self._workers.get(name)
                return w is None or not (w.queued() or w.running)
            return not any(
                w.queued() or w.running
                for w in self._workers.values()
                if w.handler is not None and not w.paused
            )

        with self._lock:
            self._change_waiters += 1
            try:
                return self._changed.wait_for(idle, timeout)
            finally:
                self._change_waiters -= 1

    # ----- writing ------------------------------------------------------------------------

    def flush(self, timeout: float | None = 30) -> None:
        """Return once everything emitted or finished so far is on disk.

        Raises NBWorkersError if the write failed (nothing is lost: it is retried).
        """
        self.writer.flush(timeout)

    @property
    def has_unwritten(self) -> bool:
        """True while emitted messages wait for the writer or are being written."""
        return self.writer.has_unwritten

    # ----- stopping ---------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        """True from the moment ``stop`` is called."""
        return self._stopping

    @property
    def taking_emits(self) -> bool:
        """False once a stop has taken its last batch: an emit then raises NBWorkersError."""
        return not (self._stopping and self.writer.stopped)

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
            self._timer_wake.notify_all()
            self._notify_wake.notify_all()
            self._alerts_wake.notify_all()
        deadline = time.monotonic() + timeout_s
        others = [
            t
            for t in self._threads
            if t is not self._writer_thread and t is not threading.current_thread()
        ]
        for thread in others:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            remote = any(
                r.policy.executor != "threads"
                for w in self._workers.values()
                for r in w.runs.values()
            )
        # Runs still going in a pool process are ended with it (their messages stay queued),
        # so their threads end too (given 1 s, or half a shorter grace; a thread running a
        # handler itself is not waited for again); a Dask task is cancelled.
        self.executors.close()
        if remote:
            end = deadline + min(1.0, timeout_s / 2)
            for thread in others:
                thread.join(max(0.0, end - time.monotonic()))
        # Runs that ended in time are acknowledged by this last batch, and what was emitted
        # until now is in it. It is written however long that takes (if the write fails,
        # the writer says what is lost): the file must be closed before another runtime may
        # open it, and nbworkers' api opens none until then.
        with self._lock:
            self.writer.stop()
        self._writer_thread.join()
        try:
            try:
                self.store.checkpoint()
            finally:
                self.store.close()
        finally:
            # A run still going keeps its output captured: the router stays until it ends.
            if not any(t.is_alive() for t in others):
                output.uninstall()


def check_events(events) -> Iterable:
    """``events`` if ``emit_many`` can take them (any iterable but one string), else say so."""
    if isinstance(events, str | bytes):
        raise ArgumentTypeError(
            "emit_many: events must be a list (or another iterable) of events, not one "
            f"{type(events).__name__}: to queue one value, use nw.emit(value, name)"
        )
    try:
        iter(events)
    except TypeError:
        raise ArgumentTypeError(
            "emit_many: events must be a list (or another iterable) of events, not "
            f"{type(events).__name__}"
        ) from None
    return events


def _check_concurrency(concurrency) -> None:
    if not _whole(concurrency) or concurrency < 1:
        raise ArgumentValueError(
            f"concurrency must be a whole number of at least 1, not {concurrency!r}"
        )
