"""The registry: the engine's one lock, the live state of every name, and its threads.

Every part of the engine (intake, dispatch, timers, admin, events) works on the
``WorkerState`` of a name only while holding ``lock``. One lock, not one a worker: a drain's
critical sections are a few microseconds, and one lock keeps every count exact without
ordering rules between locks (measured in docs/measurements.md).

``spawn`` is the one place nbworkers starts a thread (the pool's and Dask's threads are
theirs).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable

from ..errors import NBWorkersError
from ..handlers import check_name
from ..zone import Zone
from .settings import Settings
from .worker import WorkerState


class Registry:
    """The lock, the worker states by name, the stop flag and the engine's threads."""

    def __init__(self, settings: Settings, clock: Callable[[], float], rng: random.Random):
        self.settings = settings
        self.clock = clock
        self.rng = rng
        self.zone = Zone(settings.timezone)
        self.traces_kept = settings.traces_kept
        self.lock = threading.Lock()
        self.workers: dict[str, WorkerState] = {}
        self.stopping = False  # no new runs, ticks or emits
        self.paging = None  # Paging (paging.py): each worker's window of ready messages
        # Notified when a run ends or a queue empties, for ``wait`` (only while one waits).
        self.changed = threading.Condition(self.lock)
        self.change_waiters = 0
        self._threads: set[threading.Thread] = set()
        self._threads_lock = threading.Lock()  # not the engine lock: spawn is called under it

    def state(self, name: str) -> WorkerState:
        """The state of ``name``, made if it has none yet (the lock is held)."""
        w = self.workers.get(name)
        if w is None:
            w = self.workers[name] = WorkerState(name, self.lock, self.traces_kept)
        return w

    def defined(self, name: str) -> WorkerState | None:
        """The state of ``name`` if it has a handler (the lock is held)."""
        w = self.workers.get(name)
        return w if w is not None and w.handler is not None else None

    def known_or_valid(self, name) -> None:
        """``check_name``, except for a name the file already holds: an older nbworkers let
        names such as 'resize\\n' through, and their messages must stay reachable (counted,
        purged, requeued or discarded)."""
        if not (isinstance(name, str) and name in self.workers):
            check_name(name)

    def check_running(self) -> None:
        if self.stopping:
            raise NBWorkersError("nbworkers has been stopped; run %load_ext nbworkers again")

    # ----- threads ----------------------------------------------------------------------------

    def spawn(self, target: Callable, name: str, *args) -> threading.Thread:
        """Start a daemon thread running ``target(*args)``, known until it ends."""

        def run():
            try:
                target(*args)
            finally:
                with self._threads_lock:
                    self._threads.discard(thread)

        thread = threading.Thread(target=run, name=name, daemon=True)
        with self._threads_lock:
            self._threads.add(thread)
        try:
            thread.start()
        except BaseException:
            with self._threads_lock:
                self._threads.discard(thread)
            raise
        return thread

    def threads(self) -> list[threading.Thread]:
        """The engine's threads still going."""
        with self._threads_lock:
            return list(self._threads)
