"""What the live state answers, read under the lock: counts, traces, the workers defined,
the panel's snapshot, and ``wait``."""

from __future__ import annotations

from .. import progress
from ..errors import ArgumentValueError
from ..handlers import check_name
from ..log import log
from ..trace import Trace
from . import failures
from .history import History
from .policy import _number
from .registry import Registry
from .removal import REMOVED
from .snapshot import Definition, WorkerSnapshot
from .timers import failure
from .worker import WorkerState

PANEL_GROUPS = 3  # failure groups a panel shows


def _by_start(run) -> float:
    return run.t0


class Queries:
    """Reading the live state of one engine."""

    def __init__(self, registry: Registry):
        self.registry = registry
        self.trimmer = None  # memory.Trimmer: a drained wait is a quiet moment; runtime
        self.histories: dict[str, History] = {}  # the sparklines' samples, by worker

    def _state_or_blank(self, name: str) -> WorkerState:
        reg = self.registry
        return reg.workers.get(name) or WorkerState(name, reg.lock, reg.traces_kept)

    def counts(self, name: str) -> dict:
        reg = self.registry
        reg.known_or_valid(name)
        with reg.lock:
            return self._state_or_blank(name).counts(reg.clock())

    def traces(self, name: str) -> list[Trace]:
        reg = self.registry
        reg.known_or_valid(name)
        with reg.lock:
            w = reg.workers.get(name)
            return list(w.traces) if w else []

    def unhandled(self) -> dict[str, int]:
        with self.registry.lock:
            return {
                name: w.queued()
                for name, w in self.registry.workers.items()
                if w.handler is None and w.queued()
            }

    def unhandled_details(self) -> list[tuple[str, int, float | None]]:
        """(name, queued, oldest enqueued_at) for each name with messages but no worker."""
        with self.registry.lock:
            return [
                (name, w.queued(), w.oldest_s())
                for name, w in self.registry.workers.items()
                if w.handler is None and w.queued()
            ]

    def workers(self) -> list[str]:
        with self.registry.lock:
            return [name for name, w in self.registry.workers.items() if w.handler is not None]

    def definitions(self) -> list[Definition]:
        """Every defined worker and cron, in definition order."""
        with self.registry.lock:
            return [
                Definition(name, w.handler, w.concurrency, w.schedule, w.policy)
                for name, w in self.registry.workers.items()
                if w.handler is not None
            ]

    def snapshot(self, name: str) -> WorkerSnapshot:
        """Everything a panel shows about ``name``, read in one go."""
        reg = self.registry
        with reg.lock:
            w = self._state_or_blank(name)
            now = reg.clock()
            next_run_s = None
            schedule_error = w.schedule_error
            if w.is_cron and not w.paused and schedule_error is None:
                try:
                    next_run_s = w.schedule.next_run(w.last_run_s, now, reg.zone)
                except Exception as exc:  # noqa: BLE001 - shown in the panel
                    schedule_error = failure(exc)
            last_error = next((t.error for t in w.traces if t.error), None)
            runs = sorted(w.runs.values(), key=_by_start)  # the runs going, oldest first
            counts = w.counts(now)
            history = self.histories.get(name)
            if history is None and name in reg.workers:  # (not for any name asked about)
                history = self.histories[name] = History()
            return WorkerSnapshot(
                name=name,
                defined=w.handler is not None,
                kind=w.kind_name,
                paused=w.paused,
                pause_reason=w.pause_reason,
                counts=counts,
                concurrency=w.concurrency,
                policy=w.policy,
                schedule=w.schedule.describe() if w.is_cron else None,
                next_run_s=next_run_s,
                schedule_error=schedule_error,
                zone=(w.schedule.zone or reg.zone).tz if w.is_cron else None,
                last_run_s=w.traces[0].started_at_s if w.is_cron and w.traces else None,
                last_error=last_error,
                failing=w.failing if w.failing >= reg.settings.failure_notice_after else 0,
                traces=list(w.traces),
                oldest_s=w.oldest_s(),
                delayed=len(w.delayed) - len(w.delayed_gone),
                next_due_s=w.next_due_s(),
                now=now,
                priorities=w.by_priority(),
                running_ids=tuple(r.message.id for r in runs),
                running_attempts=tuple(r.message.attempt for r in runs),
                stopping_ids=tuple(r.message.id for r in w.runs.values() if r.stop is not None),
                removed=w.handler is None and w.kind == REMOVED,
                failures=failures.top(w, PANEL_GROUPS) if w.dead else (),
                running_started=tuple(r.started_at_s for r in runs),
                running_progress=tuple(
                    progress.shown(getattr(r.message, "progress_now", None), r.capture.parts)
                    for r in runs
                ),
                history=() if history is None else history.sample(now, counts),
            )

    def wait(self, name: str | None = None, timeout: float | None = 30) -> bool:
        """Block until nothing is queued (delayed messages included) or running for ``name``
        (or: no run goes anywhere and nothing waits for a defined, unpaused worker); False if
        ``timeout`` seconds passed first."""
        if name is not None:
            check_name(name)
        if timeout is not None and (not _number(timeout) or timeout < 0):
            raise ArgumentValueError(
                f"wait: timeout must be seconds, 0 or more (or None: no limit), not {timeout!r}"
            )
        reg = self.registry
        workers = reg.workers

        def idle() -> bool:
            if name is not None:
                w = workers.get(name)
                return w is None or not (w.queued() or w.running)
            # Runs going count wherever they are (a removed or paused worker's too); what
            # waits counts for the workers that will run it.
            return not any(
                w.running or (w.queued() and w.handler is not None and not w.paused)
                for w in workers.values()
            )

        with reg.lock:
            w = workers.get(name) if name is not None else None
            # (nw.run_now's runs go through a pause: they are not held)
            held = max(0, w.queued() - len(w.forced)) if w is not None and w.paused else 0
        if held:
            # (a new user's nw.wait sat for its whole timeout, with no word why)
            until = "until" if timeout is None else f"for {timeout:g} s (then False) unless"
            log.warning(
                "nw.wait(%r): %r is paused with %d queued, which wait for nw.resume(%r); "
                "this waits %s something resumes it",
                name,
                name,
                held,
                name,
                until,
            )
        with reg.lock:
            reg.change_waiters += 1
            try:
                drained = reg.changed.wait_for(idle, timeout)
            finally:
                reg.change_waiters -= 1
        if drained and self.trimmer is not None:
            self.trimmer.quiet_moment()  # memory of what ended goes back to the system
        return drained
