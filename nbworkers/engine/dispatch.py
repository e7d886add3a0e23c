"""Dispatch: the run threads of every worker, which take its messages, run them with its
executor and hand the outcome to ``Outcomes``.

Threads on demand: a worker with nothing to do holds no thread. When messages become ready
(``wake``), idle run threads of the worker are woken and, if there are more messages than
threads free to take them, new ones start, up to its concurrency; a run thread that has had
nothing to do for ``Settings.idle_thread_s`` ends.

Everything of a run that is user code happens in the run's thread, within its time limit:
unpickling the event, the handler, the result's repr and pickling.
"""

from __future__ import annotations

import threading
import time

from .. import handlers, output
from ..handlers import Handler
from ..log import log
from ..message import ClassNotDefined, load_event
from . import batches
from .registry import Registry
from .worker import CURRENT, Run, WorkerState


class _RunThread(threading.local):
    """The worker and runtime whose run thread this is: None on any other thread (read as
    class attributes there, without the cost of a failed lookup: an emit asks, flows.py)."""

    worker: str | None = None
    runtime = None


_thread = _RunThread()


def run_owner():
    """The runtime whose run thread this is (None on any other thread)."""
    return _thread.runtime


def current_worker() -> str | None:
    """The worker whose run thread this is (None on any other thread)."""
    return _thread.worker


def format_error(exc: BaseException) -> str:
    """A handler's traceback, from its own frame (nbworkers' frames left out)."""
    return handlers.format_error(exc, __file__, load_event.__code__.co_filename)


class Dispatch:
    """The run threads of one engine."""

    def __init__(self, registry: Registry, writer, executors, hooks, outcomes, owner):
        self.registry = registry
        self.writer = writer
        self.executors = executors
        self.hooks = hooks
        self.outcomes = outcomes
        self.owner = owner  # the Runtime: run_owner() and emits of remote runs
        self._executor: dict[str, object] = {}  # by name: one dict lookup a run
        self.expiry = None  # Expiry, set by the runtime

    def _executor_of(self, name: str):
        executor = self._executor[name] = self.executors[name]
        return executor

    # ----- threads (the lock is held) ---------------------------------------------------------

    def wake(self, w: WorkerState, count: int) -> None:
        """``count`` messages of ``w`` became ready: wake that many idle run threads, and start
        new ones while there are more ready messages than threads free to take them."""
        if w.handler is None or (w.paused and not w.forced) or self.registry.stopping:
            return
        if w.gate is not None:
            w.gate.woken(w, count)
            if w.ready_count() and not w.gate(w):
                return  # waiting for a token or a batch: the timer wakes it (gate.py)
        if w.idle:
            w.cond.notify(count)
        if self.registry.stopping:
            return  # no run starts any more (and at exit Python refuses new threads)
        ready = len(w.forced) if w.paused else w.ready_count()
        wanted = min(w.concurrency, w.running + ready)
        if len(w.live) < wanted:
            self._start_threads(w, wanted)

    def wake_all(self, w: WorkerState) -> None:
        """Whatever is ready of ``w`` may run (a resume, a new definition, a concurrency
        change): every idle thread looks again, and threads start as needed."""
        w.cond.notify_all()
        self.wake(w, 0)

    def _start_threads(self, w: WorkerState, wanted: int) -> None:
        index = 0
        while len(w.live) < wanted:
            while index in w.live:
                index += 1
            w.live.add(index)
            try:
                self.registry.spawn(self._loop, f"nbworkers-run-{w.name}-{index}", w, index)
            # The process is out of threads: the messages stay queued (and are written); the
            # next wake of this worker (an emit, a run ending...) tries again.
            except RuntimeError as exc:
                w.live.discard(index)
                log.error(
                    "could not start a run thread for %r (%s): its messages wait for the next "
                    "emit, resume or run that ends",
                    w.name,
                    exc,
                )
                return

    def set_concurrency(self, w: WorkerState, concurrency: int) -> None:
        """At most ``concurrency`` runs of ``w`` go at once from now on: threads past it end
        after their run, and threads start for what is ready."""
        w.concurrency = concurrency
        self.wake_all(w)

    def retry_parked(self, w: WorkerState) -> None:
        """Parked messages of ``w`` (their event could not be unpickled) go back to the front."""
        if w.parked:
            w.queue.extendleft(reversed([m for m, _ in w.parked]))
            w.parked.clear()
            self.wake_all(w)

    # ----- a run thread -----------------------------------------------------------------------

    def _loop(self, w: WorkerState, index: int) -> None:
        _thread.worker = w.name
        _thread.runtime = self.owner
        reg = self.registry
        lock = reg.lock
        # A lock's wait takes at most TIMEOUT_MAX (about 292 years; more, such as inf, raises)
        idle_s = min(reg.settings.idle_thread_s, threading.TIMEOUT_MAX)
        run = outcome = None
        while True:
            # One critical section per message, not two: the run that ended is settled and the
            # next message taken under the same acquisition, so a drain's run threads meet on
            # the one lock half as often.
            with lock:
                if run is not None:
                    if run.timed_out:
                        return  # the timer recorded it and gave its slot up
                    if outcome is None:
                        # Stopping ended its process or Dask task: the message stays queued.
                        del w.runs[index]
                        w.running -= 1
                        w.live.discard(index)
                        return
                    self.outcomes.end_run(w, run, *outcome)
                # (``ready`` asked once per message: this loop is a drain's hot path)
                while not (go := w.ready()) and not reg.stopping and index < w.concurrency:
                    w.idle += 1
                    woken = w.cond.wait(idle_s)
                    w.idle -= 1
                    if not woken and not w.ready():
                        break  # nothing to do for a while: this thread ends
                if go and (w.expiring or w.aging) and not w.paused:
                    go = self.expiry.at_take(w)  # the messages at the front may have expired
                if not go or reg.stopping or index >= w.concurrency:
                    w.live.discard(index)
                    # Past a lowered concurrency, this thread may have been the one counted
                    # on for what waits: another (of a lower index) starts if needed.
                    self.wake(w, 0)
                    return
                run = self._start(w, index)
                handler = w.handler
            outcome = self.execute(handler, run)

    def _start(self, w: WorkerState, index: int) -> Run:
        """Take the next message of ``w`` and start its run (the lock is held; ``w.ready()``)."""
        message = w.take()
        w.running += 1
        message.started = True
        self.writer.update(message)
        run = Run(
            message, index, time.time(), time.perf_counter(), output.Capture(), None, w.policy
        )
        if w.policy.batch is not None:
            batches.take(w, run, self.writer)
        for hook in self.hooks.before_run:
            hook(w, run)
        w.runs[index] = run
        return run

    def execute(self, handler: Handler, run: Run):
        """Run ``handler`` on ``run.message``: (RunResult or None, error text, reason it was
        parked), or None when its process or Dask task was abandoned because the engine
        stops."""
        result = error = unpicklable = None
        with run.capture:
            try:
                if run.messages is None:
                    event = load_event(run.message.data)
                else:
                    event = batches.load_events(run)
            except ClassNotDefined as exc:
                unpicklable = (
                    f"the event cannot be unpickled yet: {exc}. It stays queued and is tried "
                    "again after the next cell runs"
                )
                error = unpicklable
            # Unpickling runs user code (__setstate__, __reduce__), which may raise anything:
            # a failed attempt like any other (retried, then a dead letter).
            except BaseException as exc:  # noqa: BLE001
                error = "the event cannot be unpickled, so the handler did not run:\n"
                error += format_error(exc)
            else:
                run.superseded = self._superseded  # for run.keep_result
                CURRENT.run = run  # for @nw.recorded calls (develop/recorded.py)
                name = run.policy.executor
                executor = self._executor.get(name) or self._executor_of(name)
                if run.messages is not None:
                    handler = batches.handler_of(handler, run, executor.remote)
                outcome = executor.run(handler, event, run, self.remote_emit)
                if outcome is None:
                    return None
                return outcome.result, outcome.error, None
        return result, error, unpicklable

    def _superseded(self, name: str) -> bool:
        """Whether the trace of a run of ``name`` ending now will be replaced anyway: at least
        as many of its messages as it keeps traces wait to run, so that many newer traces
        will follow.
        Its result's copies (repr and pickle: user code, a cost every run) are then skipped,
        so that a drain does not pay for copies no one will see. Read without the lock: a
        guess, which only decides that."""
        w = self.registry.workers.get(name)
        return (
            w is not None
            and not w.paused
            and w.ready_count() >= w.traces.maxlen * (w.policy.batch or 1)
        )

    def remote_emit(self, kind: str, request: tuple) -> tuple:
        """An emit by a handler running in another process: ("ok", message id(s)) or
        ("error", the exception), for the far side to return or raise."""
        try:
            # The keyword options (priority=, ttl=...) come last, as a dict.
            if kind == "emit":
                event, name, key, delay, at, *options = request
                options = options[0] if options else {}
                return (
                    "ok",
                    self.owner.emit(event, name, key=key, delay=delay, at=at, **options),
                )
            events, name, *options = request
            return ("ok", self.owner.emit_many(events, name, **(options[0] if options else {})))
        # What emit raises is the handler's to see, as it would be on a thread.
        except Exception as exc:  # noqa: BLE001
            return ("error", exc)
