"""The timer: one thread that sleeps until the next cron time, delayed message or run
deadline, and then starts the crons due, releases the delayed messages due and abandons the
runs past their time limit; it also wakes the workers whose rate limit gives a token back or
whose batch has waited long enough (``gate.py``). It starts when something first needs it."""

from __future__ import annotations

import pickle
import threading
from collections.abc import Callable

from ..errors import NBWorkersError
from ..handlers import check_name
from ..log import log
from ..message import Message
from ..zone import Zone
from .registry import Registry
from .worker import Run, WorkerState

NO_EVENT = pickle.dumps(None, protocol=pickle.HIGHEST_PROTOCOL)  # what a cron tick carries
# The timer sleeps until the next due time, but wakes at least this often so that a
# suspended laptop or a changed system clock cannot delay a cron for long.
TIMER_MAX_SLEEP_S = 60.0


def failure(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class Timers:
    """Crons, delayed messages and time limits of one engine."""

    def __init__(self, registry: Registry, writer, events):
        self.registry = registry
        self.writer = writer
        self.events = events
        self._wake = threading.Condition(registry.lock)
        self._changed = False
        self._at: float | None = None  # when the timer thread means to wake
        self._thread: threading.Thread | None = None
        # Set by the runtime: wake(w, n) makes n newly ready messages of w start;
        # time_out(w, run) abandons a run past its deadline.
        self.wake_runs: Callable[[WorkerState, int], None] = lambda w, n: None
        self.time_out: Callable[[WorkerState, Run], None] = lambda w, run: None
        # expire(w, now) dead-letters the messages of w past their time to live and says
        # when the next may expire (engine/expiry.py).
        self.expire: Callable[[WorkerState, float], float | None] = lambda w, now: None

    # ----- waking the timer (the lock is held) ------------------------------------------------

    def ensure(self) -> None:
        """Start the timer thread if it is not going yet (not once stopping: it would end at
        once, and at exit Python refuses new threads)."""
        if self._thread is None and not self.registry.stopping:
            self._thread = self.registry.spawn(self._loop, "nbworkers-timer")

    def changed(self) -> None:
        """Something the timer waits for changed (a cron defined, paused...): recompute."""
        self._changed = True
        self._wake.notify_all()

    def wake_at(self, due_s: float) -> None:
        """Make sure the timer wakes by ``due_s``."""
        if self._thread is None:
            self.ensure()
        elif self._at is None or due_s < self._at:
            self.changed()

    def stop(self) -> None:
        self._wake.notify_all()

    # ----- a pass -----------------------------------------------------------------------------

    def run(self, now: float | None = None) -> float | None:
        """Start every cron due at ``now``, release the delayed messages due, and end runs past
        their time limit; returns when the next of these is due (None: nothing waits)."""
        reg = self.registry
        with reg.lock:
            return self.run_locked(reg.clock() if now is None else now)

    def run_locked(self, now: float) -> float | None:
        wake_at = None

        def soonest(due):
            nonlocal wake_at
            if due is not None:
                wake_at = due if wake_at is None else min(wake_at, due)

        for w in list(self.registry.workers.values()):
            if w.delayed:
                ready = w.due(now)
                if ready:
                    for m in ready:
                        m.due_at_s = None  # it may run now
                    if w.spill is not None:  # behind the messages spilled (paging.py)
                        ready = w.spill.came_due(ready, self.writer.next_seq)
                    w.queue.extend(ready)
                    self.wake_runs(w, len(ready))
                    self.events.mark_changed(w.name)
                soonest(w.next_due_s())
            if w.expiring or w.aging:
                soonest(self.expire(w, now))
            # A rate limit's token or a batch's wait (gate.py), and a failed read of spilled
            # messages (paging.py, which clears its retry_at when it reads again)
            for due in (w.wait_until_s, w.spill and w.spill.retry_at):
                if due is not None and due <= now:
                    w.cond.notify_all()  # its idle run threads look again
                    self.wake_runs(w, 0)  # and threads start if none is left
                else:
                    soonest(due)
            if w.wait_until_s is not None and w.wait_until_s <= now:
                w.wait_until_s = None
            for run in [r for r in w.runs.values() if r.deadline_s is not None]:
                if run.deadline_s <= now:
                    self.time_out(w, run)
                else:
                    soonest(run.deadline_s)
            if w.schedule is None or w.handler is None or w.paused:
                continue
            due = self._cron_due(w, now)
            if due is not None and due <= now:
                self._tick(w, now)
                self.events.mark_changed(w.name)
                due = self._cron_due(w, now)
            soonest(due)
        return wake_at

    def _cron_due(self, w: WorkerState, now: float) -> float | None:
        """When cron ``w`` runs next. None if that cannot be computed: its panel says why, the
        other crons go on, and the timer tries again on its next pass (at least once a
        minute)."""
        try:
            due = w.schedule.next_run(w.last_run_s, now, self.registry.zone)
        except Exception as exc:  # noqa: BLE001 - shown in its panel; the other crons go on
            error = failure(exc)
            if error != w.schedule_error:
                w.schedule_error = error
                self.events.mark_changed(w.name)
                log.error("cron %r has no next run:", w.name, exc_info=exc)
            return None
        if w.schedule_error is not None:
            w.schedule_error = None
            self.events.mark_changed(w.name)
        return due

    def _tick(self, w: WorkerState, now: float) -> None:
        """The schedule of cron ``w`` fired."""
        w.last_run_s = now
        self.writer.worker_changed(w)
        if w.running or w.ready_count() or w.delayed:
            w.skipped += 1  # never overlap: the previous run is still going
        else:
            message = Message(self.writer.number(), w.name, now, 1, NO_EVENT)
            w.queue.append(message)
            self.writer.insert([message])
            self.wake_runs(w, 1)

    def next_run(self, name: str):
        """When cron ``name`` runs next (an aware datetime), or None while it is paused."""
        check_name(name)
        reg = self.registry
        with reg.lock:
            w = reg.workers.get(name)
            if w is None or not w.is_cron:
                raise not_a_cron(name, w)
            if w.paused:
                return None
            try:
                due = w.schedule.next_run(w.last_run_s, reg.clock(), reg.zone)
            except Exception as exc:
                raise NBWorkersError(f"cron {name!r} has no next run: {failure(exc)}") from exc
            return (w.schedule.zone or reg.zone).aware(due)

    def set_timezone(self, name: str | None) -> None:
        """``NBWorkers.timezone`` changed to ``name`` (None: the kernel's zone): crons' --at
        times and expressions without a --tz of their own, and naive ``emit(at=)`` times, are
        in it from now on. ArgumentValueError, changing nothing, if it is not a zone."""
        zone = Zone(name)
        reg = self.registry
        with reg.lock:
            reg.zone = zone
            for w in reg.workers.values():
                if w.is_cron and w.schedule.zone is None:
                    self.events.mark_changed(w.name)  # its panel's next run
            self.changed()

    # ----- the thread -------------------------------------------------------------------------

    def _loop(self) -> None:
        reg = self.registry
        while True:
            try:
                wake_at = self.run()
            except Exception:  # noqa: BLE001 - reported; crons and delays must go on
                log.exception("the timer failed (it goes on):")
                wake_at = reg.clock() + 1.0
            with reg.lock:
                if reg.stopping:
                    return
                if self._changed:
                    self._changed = False
                    continue
                sleep_s = TIMER_MAX_SLEEP_S
                if wake_at is not None:
                    sleep_s = min(sleep_s, max(0.0, wake_at - reg.clock()))
                self._at = reg.clock() + sleep_s
                self._wake.wait(sleep_s)
                self._at = None


def not_a_cron(name: str, w: WorkerState | None) -> NBWorkersError:
    """The error of a cron's call (``nw.next_run``, ``nw.run_now``) on ``name``, which is not
    a cron: a worker (``w``), or nothing defined."""
    if w is not None and w.handler is not None:
        return NBWorkersError(
            f"{name!r} is a worker, not a cron: it runs when a message comes, "
            f"emit(event, {name!r}); a schedule is a %%cron cell's"
        )
    return NBWorkersError(f"no cron named {name!r} is defined; run its cell first")
