"""Defining workers and crons: the code a name runs, its concurrency, policy and schedule;
``run_now`` for a cron. A name's messages wait, unhandled, while it has no code."""

from __future__ import annotations

import dataclasses
import itertools
import time

from ..errors import ArgumentValueError, NBWorkersError
from ..handlers import Handler, check_name
from ..log import log
from ..schedule import Schedule
from . import gate
from .policy import Policy, _whole
from .rate import parse_rate
from .registry import Registry
from .timers import NO_EVENT, not_a_cron
from .worker import WorkerState


def check_concurrency(concurrency) -> None:
    if not _whole(concurrency) or concurrency < 1:
        raise ArgumentValueError(
            f"concurrency must be a whole number of at least 1, not {concurrency!r}"
        )


class Definitions:
    """``define``, ``define_cron``, ``undefine``, ``set_concurrency`` and ``run_now``."""

    def __init__(
        self, registry: Registry, writer, executors, timers, events, dispatch, admin, intake
    ):
        self.registry = registry
        self.writer = writer
        self.executors = executors
        self.timers = timers
        self.events = events
        self.dispatch = dispatch
        self.admin = admin
        self.intake = intake
        self.expiry = None  # Expiry, set by the runtime

    def _set(self, w: WorkerState, handler: Handler, policy: Policy, kind: str) -> None:
        w.handler = handler
        old_ttl_s, w.policy = w.policy.ttl_s, policy
        if policy.ttl_s != old_ttl_s:
            self.expiry.policy_changed(w, old_ttl_s)
        w.kind = kind
        gate.attach(w, self.registry.clock, self.timers.wake_at)
        w.keep(policy.keep, self.registry.traces_kept)
        if policy.keep is None:
            self.writer.kept.pop(w.name, None)
        else:
            self.writer.kept[w.name] = policy.keep
        self.writer.worker_changed(w)

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
        reg = self.registry
        concurrency = reg.settings.default_concurrency if concurrency is None else concurrency
        check_concurrency(concurrency)
        policy = policy or Policy()
        reg.check_running()
        self.executors[policy.executor].prepare(handler, concurrency)
        with reg.lock:
            reg.check_running()
            w = reg.state(name)
            self._set(w, handler, policy, "worker")
            if w.schedule is not None:
                w.schedule = None  # a worker now: no more ticks
                self.timers.changed()
            if paused and not w.paused:
                self.admin.pause_locked(w)
            self.dispatch.set_concurrency(w, concurrency)
            self.dispatch.retry_parked(w)
            if w.policy.timeout_s is not None:
                self.timers.ensure()
        self.events.notify(name)

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
        reg = self.registry
        reg.check_running()
        try:
            schedule.next_run(None, reg.clock(), reg.zone)
        except Exception as exc:
            raise NBWorkersError(f"cron {name!r} was not defined: {exc}") from exc
        self.executors[policy.executor].prepare(handler, 1)
        with reg.lock:
            reg.check_running()
            w = reg.state(name)
            # messages queued with an event: sent while it was no cron (or before its cell ran
            # again after a restart); a cron's own ticks and run_now carry none
            # (ready, delayed and parked ones in memory; those past the window are on disk only)
            waiting = itertools.islice(w.waiting(spilled=()), 100_000)
            events = sum(1 for m in waiting if m.data != NO_EVENT)
            unread = w.spill.count if w.spill is not None else 0
            w.schedule = schedule
            w.schedule_error = None
            self._set(w, handler, policy, "cron")
            if schedule.wall_clock and w.last_run_s is None:
                # Its first run is the first of its times after now: count from here, so a
                # timer waking a moment late at that time still finds it due.
                w.last_run_s = reg.clock()
            if paused and not w.paused:
                self.admin.pause_locked(w)
            self.dispatch.set_concurrency(w, 1)  # a cron never overlaps itself
            self.timers.run_locked(reg.clock())  # due at once: queued before this returns
            self.timers.ensure()
            self.timers.changed()
        self.events.notify(name)
        if events:
            more = f" (and {unread:,} more on disk, not read)" if unread else ""
            log.warning(
                "cron %r: %d message%s queued for it carry events%s (sent to %r while it was "
                "no cron, or before its cell ran): a cron gets no event, so each runs it once "
                "and its event is not used, and a delayed one holds its ticks back until due. "
                "nw.purge(%r) drops them.",
                name,
                events,
                "s" if events != 1 else "",
                more,
                name,
                name,
            )

    def undefine(self, name: str) -> None:
        """Forget the code of worker or cron ``name``; its queued messages stay, unhandled."""
        with self.registry.lock:
            w = self.registry.workers.get(name)
            if w is None:
                return
            w.handler = None
            w.schedule = None
            w.concurrency = 0
            w.cond.notify_all()
            self.timers.changed()
        self.events.notify(name)

    def set_concurrency(self, name: str, concurrency: int) -> None:
        """Change how many runs of ``name`` may go at once, effective immediately."""
        check_name(name)
        check_concurrency(concurrency)
        with self.registry.lock:
            w = self.registry.defined(name)
            if w is None:
                raise NBWorkersError(f"no worker named {name!r} is defined")
            if w.is_cron:
                raise NBWorkersError(f"{name!r} is a cron: crons run one at a time")
            self.dispatch.set_concurrency(w, concurrency)
        self.events.notify(name)

    def run_now(self, name: str) -> str:
        """Run cron ``name`` once now, even while paused (after a run still going); its
        schedule does not move. Returns the run's message id."""
        check_name(name)
        with self.registry.lock:
            w = self.registry.workers.get(name)
            if w is None or not w.is_cron:
                raise not_a_cron(name, w)
            message = self.intake.enqueue_locked(w, [NO_EVENT], time.time())[0]
            w.forced.add(message.seq)
            self.dispatch.wake_all(w)
        return message.id

    def set_rate(self, name: str, rate) -> None:
        """Let at most ``rate`` ("10/s", "600/m", "5/h") runs of worker ``name`` start in any
        window of that length from now on; None lifts the limit. Until its cell runs again."""
        check_name(name)
        rate = parse_rate(rate)
        with self.registry.lock:
            w = self.registry.defined(name)
            if w is not None and w.is_cron:
                raise NBWorkersError(
                    f"{name!r} is a cron: it runs one at a time on its schedule and takes no "
                    "rate limit; nw.set_rate is for workers"
                )
            if w is None:
                known = self.registry.workers.get(name)
                why = (
                    " (it was removed with nw.remove)"
                    if known is not None and known.kind == "removed"
                    else ""
                )
                raise NBWorkersError(
                    f"no worker named {name!r} is defined{why}; run its cell first"
                )
            w.policy = dataclasses.replace(w.policy, rate=rate)
            gate.attach(w, self.registry.clock, self.timers.wake_at)
            w.wait_until_s = None
            self.dispatch.wake_all(w)
        self.events.notify(name)
