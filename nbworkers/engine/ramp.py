"""Ramp: run threads of a worker on threads start one at a time, as its runs prove slow.

Handlers on the kernel's threads share one GIL. A drain of quick handlers (microseconds each)
goes twice as fast on one run thread as on four: four threads hand the engine's lock and the
GIL to each other at every message, a context switch each time (measured: 100,000 msg/s on one
thread, 50,000 on four; docs/performance.md). More threads help only handlers that wait
(a fetch, a sleep, a database, C code that lets the GIL go), and those runs last.

So a worker whose handler runs on the kernel's threads (``--executor threads``, the default)
starts one run thread for what becomes ready, and its others (up to ``--concurrency``) once one
of its runs has been going for ``RAMP_S`` while messages wait, or once its runs are seen to
wait: one run in ``SAMPLE`` (every run while undecided) is timed on its thread's CPU clock,
and when two such in a row
spent most of their time waiting (a short fetch, a sleep of a millisecond), its threads start
as they would for a pool (``w.waits``); two in a row that did not wait end that. A drain of
quick handlers stays on one thread, and fetches go side by side. A run held back by another
thread (the writer, a collection) looks slow or waiting too: the threads it started end after
a quick run (``Dispatch._retires``). Pool processes and Dask tasks wait on another process:
their run threads start at once, as many as there are messages, up to ``--concurrency``.

The watch is one engine thread, ``nbworkers-ramp``, started when a worker first waits for more
threads; it looks every ``RAMP_S`` while one does and sleeps otherwise. Time here is the
machine's (``perf_counter``, as a run's ``t0``), never the runtime's clock: a test's frozen
clock must not freeze the threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..log import log
from .registry import Registry
from .worker import WorkerState

RAMP_S = 0.01  # how long a run goes before its worker gets its other run threads
SAMPLE = 8  # one run in SAMPLE of a run thread is timed on its CPU clock (a system call)
WAITED = 50e-6  # a run waited if it spent at least this, and half its time, off the CPU


class Ramp:
    """Which workers wait for more run threads, and the thread that starts them (the engine
    lock is held in every method)."""

    def __init__(self, registry: Registry, grow: Callable[[WorkerState], bool]):
        self.registry = registry
        self.grow = grow  # Dispatch.grow: one more run thread if one of w's runs is slow
        self.watched: set[WorkerState] = set()
        self._cond = threading.Condition(registry.lock)
        self._thread: threading.Thread | None = None

    def watch(self, w: WorkerState) -> bool:
        """``w`` may want more run threads once one of its runs proves slow. False if the
        watch could not start (the process is out of threads: logged)."""
        if w in self.watched or self.registry.stopping:
            return True
        if self._thread is None:
            try:
                self._thread = self.registry.spawn(self._loop, "nbworkers-ramp")
            except RuntimeError as exc:
                log.error(
                    "could not start the thread that adds run threads as runs prove slow (%s): "
                    "run threads start all at once until it can",
                    exc,
                )
                return False
        elif not self.watched:
            self._cond.notify()
        self.watched.add(w)
        return True

    def started(self) -> bool:
        """Whether the watch's thread was started."""
        return self._thread is not None

    def stop(self) -> None:
        self._cond.notify_all()

    def _loop(self) -> None:
        reg = self.registry
        with reg.lock:
            while not reg.stopping:
                for w in list(self.watched):
                    if not self.grow(w):
                        self.watched.discard(w)
                self._cond.wait(RAMP_S if self.watched else None)


def slow(w: WorkerState, now: float | None = None) -> bool:
    """One of ``w``'s runs has been going for ``RAMP_S`` or more."""
    since = (time.perf_counter() if now is None else now) - RAMP_S
    return any(run.t0 <= since for run in w.runs.values())


def vote(w: WorkerState, wall_s: float, cpu_s: float) -> None:
    """A sampled run of ``w`` took ``wall_s``, ``cpu_s`` of it on its thread's CPU (the lock
    is held): two in a row that waited set ``w.waits``, two that did not clear it."""
    idle = wall_s - cpu_s
    if idle >= WAITED and idle * 2 >= wall_s:
        w.waits = w.waits + 1 if w.waits > 0 else 1
    else:
        w.waits = w.waits - 1 if w.waits < 0 else -1


def waits(w: WorkerState) -> bool:
    """Two or more of ``w``'s sampled runs in a row waited."""
    return w.waits >= 2
