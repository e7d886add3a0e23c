"""The runtime of one database file: it wires the engine's parts together and offers their
public methods (``api.py`` and the panels call these).

Live state (queues, counts, traces) is kept in memory under one lock (``registry.py``); DuckDB
is the durable copy, written by the writer thread in group commits, so no statement is ever
made per message and no thread ever polls. One message's path:

- ``intake`` pickles the event, queues it in memory, records it for the writer and wakes a
  run thread of its worker (``dispatch``), starting one if none is free;
- the run thread takes it, runs it with the worker's executor (``executors/``), and
  ``outcomes`` settles it: done, retried later or dead (``policies/`` decide), and a trace;
- the writer (``store/writer.py``) writes the batch; a message leaves the database only in
  the batch after its run ended (at-least-once);
- ``timers`` releases delayed messages, starts crons and ends runs past their time limit;
  ``events`` tells panels and ``on_failure`` callbacks; ``admin`` pauses and changes queues.
"""

from __future__ import annotations

import random
import threading
import time

from .. import output
from ..executors import Executors
from ..executors.interrupt import shielded
from ..store import DuckDBStore, Store
from ..store.writer import Writer
from . import startup
from .admin import Admin
from .dead_admin import DeadAdmin
from .definitions import Definitions
from .dispatch import Dispatch
from .events import Events
from .expiry import Expiry
from .failures import Failures
from .fan_in import FanIn
from .intake import Intake
from .memory import Trimmer, libc_trim
from .outcomes import Outcomes
from .paging import Paging
from .policies import Hooks
from .policies.failure_notice import FailureNotice
from .policies.flows import Flows
from .policies.rate_limit import RateLimit
from .policies.retries import Retries
from .policies.start_notice import StartNotice
from .policies.storm_guard import StormGuard
from .policies.time_limit import TimeLimit
from .queries import Queries
from .registry import Registry
from .removal import Removal
from .replay import Replay
from .results import Results
from .settings import Settings
from .stops import Stops
from .timers import Timers

# The public methods, by the part that owns each: ``rt.emit`` is ``rt.intake.emit``.
PUBLIC = {
    "intake": ("emit", "emit_many"),
    "definitions_": (
        "define",
        "define_cron",
        "undefine",
        "set_concurrency",
        "run_now",
        "set_rate",
    ),
    "admin": (
        "pause",
        "resume",
        "is_paused",
        "pause_reason",
        "messages",
        "cancel",
        "purge",
    ),
    "dead_admin": ("dead_letters", "requeue", "discard"),
    "timers": ("next_run", "set_timezone"),
    "replays": ("replay", "resend"),
    "queries": (
        "counts",
        "traces",
        "unhandled",
        "unhandled_details",
        "workers",
        "definitions",
        "snapshot",
        "wait",
    ),
    "events": ("add_listener", "on_failure", "take_notices"),
    "results": ("result",),
    "flows_": ("flows",),
    "stops": ("stop_run",),
    "removal": ("remove",),
    "failures_": ("failures",),
}


class Runtime:
    """Queues, run threads, timers and the writer for one database file."""

    def __init__(
        self,
        path: str,
        settings: Settings | None = None,
        *,
        clock=time.time,
        rng: random.Random | None = None,
        store: Store | None = None,
    ):
        settings = settings if settings is not None else Settings()
        self.path = path
        self.settings = settings
        self.clock = clock
        reg = self.registry = Registry(settings, clock, rng or random.Random())
        self.store = store if store is not None else DuckDBStore(path, settings.traces_kept)
        self.executors = Executors(
            settings.max_processes, settings.dask_address, settings.result_max_bytes
        )
        with startup.gc_paused():
            try:
                loaded = self.store.load(settings.queue_window)
            except BaseException:
                self.store.close()  # a damaged file was moved aside; any other error: unlocked
                raise
            self.writer = writer = Writer(
                self.store,
                reg.lock,
                loaded.next_seq,
                traces_kept=settings.traces_kept,
                flush_interval_s=settings.flush_interval_s,
                results_kept_s=settings.results_kept_s,
                clock=clock,
            )
            reg.paging = Paging(reg, writer, self.store, settings.queue_window)
            startup.load(reg, writer, loaded)
        # The parts, each given the ones it calls.
        self.events = events = Events(reg)
        self.timers = timers = Timers(reg, writer, events)
        self.outcomes = outcomes = Outcomes(reg, writer, events, self.executors)
        self.dispatch = dispatch = Dispatch(reg, writer, self.executors, None, outcomes, self)
        self.intake = intake = Intake(reg, writer, timers, events, dispatch.wake, None)
        self.admin = admin = Admin(reg, writer, timers, events, intake, dispatch.wake_all)
        self.dead_admin = DeadAdmin(reg, writer, self.store, events, intake)
        self.failures_ = Failures(reg)
        expiry = Expiry(reg, writer, timers, events)
        self.flows_ = Flows(reg)  # who emits to whom: the dashboard's pipeline graph
        # The policies, in the order they act.
        self.hooks = hooks = Hooks(
            [
                TimeLimit(reg, timers),
                RateLimit(reg, writer),
                StormGuard(reg, admin.pause_locked),
                FailureNotice(reg, events),
                Retries(reg, writer, timers, dispatch),
                expiry,  # after Retries: a message it took back may expire while it waits
                StartNotice(events),
                self.flows_,
            ]
        )
        intake.expiry = dispatch.expiry = reg.paging.expiry = expiry
        intake.paging, reg.paging.wake_all = reg.paging, dispatch.wake_all
        reg.paging.timers = timers
        reg.paging.wake = dispatch.wake
        writer.after_write = reg.paging.written
        timers.expire = expiry.expire_due
        dispatch.hooks = intake.hooks = outcomes.hooks = hooks
        outcomes.wake = timers.wake_runs = dispatch.wake
        timers.time_out = outcomes.time_out
        self.definitions_ = Definitions(
            reg, writer, self.executors, timers, events, dispatch, admin, intake
        )
        self.definitions_.expiry = expiry
        self.queries = Queries(reg)
        # Freed memory back to the system at quiet moments (engine/memory.py).
        self.trimmer = Trimmer(reg, libc_trim())
        self.queries.trimmer = self.dead_admin.trimmer = self.trimmer
        events.quiet = self.trimmer.quiet_moment
        # Results by id and fan-in: told of every message that ends.
        self.results = Results(reg, writer, self.store)
        self.fan_in = FanIn(reg, writer, intake)
        self.results.fan_in = intake.fan_in = self.fan_in
        outcomes.results = admin.results = expiry.results = self.results
        reg.paging.results = self.results
        with reg.lock:
            self.fan_in.load(loaded)
        self.replays = Replay(reg, outcomes, events, intake)
        self.stops = Stops(reg, self.executors, outcomes, events, dispatch.wake)
        self.removal = Removal(reg, writer, timers, events)
        self.removal.results = self.results
        with reg.lock:  # what expired while no kernel ran is a dead letter before anyone looks
            for w in list(reg.workers.values()):
                if w.expiring:
                    expiry.expire_due(w, reg.clock())
        for part, names in PUBLIC.items():
            for name in names:
                # shielded: a handler's nw.* call is never cut by nw.stop (executors/interrupt.py)
                setattr(self, name, shielded(getattr(getattr(self, part), name)))
        self.flush = shielded(self.flush)  # it waits on the writer's Condition (Python code)
        output.install()
        self._writer_thread = reg.spawn(writer.loop, "nbworkers-writer")
        if any(w.delayed or w.expiring for w in reg.workers.values()):
            with reg.lock:
                timers.ensure()

    # ----- the public methods, by part ---------------------------------------------------------

    @property
    def zone(self):
        """The zone of crons' --at times and expressions (``NBWorkers.timezone``)."""
        return self.registry.zone

    def run_timers(self, now: float | None = None) -> float | None:
        """One pass of the timer at ``now`` (the timer thread's, or a test's own clock): crons
        due start, delayed messages due are released, runs past their limit end; returns
        when the next of these is due (None: nothing waits)."""
        return self.timers.run(now)

    def retry_parked(self) -> None:
        """Give every parked message (its event could not be unpickled) another try."""
        with self.registry.lock:
            for w in self.registry.workers.values():
                self.dispatch.retry_parked(w)

    # ----- writing ----------------------------------------------------------------------------

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
        return self.registry.stopping

    @property
    def taking_emits(self) -> bool:
        """False once a stop has taken its last batch: an emit then raises NBWorkersError."""
        return self.intake.taking_emits

    def stop(self, timeout_s: float = 5.0) -> None:
        """Finish runs that end within ``timeout_s``, write everything, close the file.

        Runs still going after that are abandoned: their messages stay queued in the file
        and are delivered again next time (at-least-once). Calling it twice is harmless.
        """
        reg = self.registry
        with reg.lock:
            if reg.stopping:
                return
            reg.stopping = True
            self.results.stop()
            for w in reg.workers.values():
                w.cond.notify_all()
            self.timers.stop()
            self.events.stop()
        deadline = time.monotonic() + timeout_s
        me = threading.current_thread()
        others = [t for t in reg.threads() if t is not self._writer_thread and t is not me]
        for thread in others:
            thread.join(max(0.0, deadline - time.monotonic()))
        with reg.lock:
            remote = any(
                self.executors[r.policy.executor].remote
                for w in reg.workers.values()
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
        with reg.lock:
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
