"""Events: telling panels what changed, ``nw.on_failure`` callbacks, and the "keeps failing"
notices shown under the next cell.

Names that changed and failed runs collect under the engine's lock; two threads, started on
first use, pass them on without it: ``nbworkers-notify`` tells the listeners (panels) at most
every 0.4 s, and ``nbworkers-alerts`` calls the ``on_failure`` callbacks, so that a slow or
broken callback or panel delays only others of its kind, never a run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ..errors import ArgumentTypeError
from ..log import log
from ..trace import Trace
from .registry import Registry
from .worker import WorkerState

# Listeners (panels) hear of changes at most this often, however fast messages flow, so a
# panel sends a few comm messages a second and reflects a change within half a second.
NOTIFY_INTERVAL_S = 0.4
# With nothing changing, listeners still hear every so often (relative times, "in 12 min").
NOTIFY_IDLE_S = 30.0
# ...and every second while a run goes: the progress a tqdm bar prints tells no one.
NOTIFY_RUNNING_S = 1.0


def _callback_key(callback: Callable) -> str:
    """A function registered again under the same name replaces the first (a cell run twice);
    lambdas and partials have no name to replace by."""
    qualname = getattr(callback, "__qualname__", "")
    if qualname and "<lambda>" not in qualname:
        return f"{getattr(callback, '__module__', '')}.{qualname}"
    return str(id(callback))


class Events:
    """Listeners, failure callbacks and notices of one engine."""

    def __init__(self, registry: Registry):
        self.registry = registry
        lock = registry.lock
        self.listeners: list[Callable[[set[str]], None]] = []
        self._changed_names: set[str] = set()
        self._notify_wake = threading.Condition(lock)
        self._notifier_asleep = False
        self._notifier: threading.Thread | None = None
        self._on_failure: dict[str, Callable] = {}
        self._failures: list[tuple[str, Trace]] = []  # to report to on_failure callbacks
        self._alerts_wake = threading.Condition(lock)
        self._alerter: threading.Thread | None = None
        self._notices: list[str] = []  # "keeps failing" notices for the next cell
        self.quiet: Callable[[], object] | None = None  # Trimmer.quiet_moment; runtime
        # Failures of groups told of already, counted until the next cell: (worker, digest) ->
        # [the worker's label, the group, where to see it, how many].
        self._counted: dict[tuple[str, str], list] = {}

    # ----- changes (the lock is held, unless said) --------------------------------------------

    def after_change(self, w: WorkerState) -> None:
        """A run of ``w`` ended or its queue changed: wake ``wait`` and tell the panels."""
        reg = self.registry
        # ``wait`` waits for workers to have nothing to do: only a worker that has nothing
        # left to do now can end that wait. Waking it at every run's end woke the waiting
        # thread (the notebook's) once a message, and it took the lock each time: a drain ran
        # about a quarter slower while someone waited for it.
        if reg.change_waiters and (
            not w.running and (not w.queued() or w.paused or w.handler is None)
        ):
            reg.changed.notify_all()
        if self.listeners:
            self.mark_changed(w.name)

    def mark_changed(self, name: str) -> None:
        """Tell the listeners about ``name`` soon."""
        if self.listeners:
            self._changed_names.add(name)
            if self._notifier_asleep:
                self._notify_wake.notify()

    def notify(self, name: str) -> None:
        """``mark_changed``, taking the lock."""
        if self.listeners:
            with self.registry.lock:
                self.mark_changed(name)

    def add_listener(self, callback: Callable[[set[str]], None]) -> None:
        """Call ``callback(names)`` with the names that changed, at most every 0.4 s (and
        with an empty set every 30 s when nothing changes), on the notifier thread."""
        reg = self.registry
        with reg.lock:
            reg.check_running()
            self.listeners.append(callback)
            if self._notifier is None:
                self._notifier = reg.spawn(self._notify_loop, "nbworkers-notify")

    def _notify_loop(self) -> None:
        reg = self.registry
        lock = reg.lock
        while True:
            with lock:
                idle = False
                if not self._changed_names and not reg.stopping:
                    going = any(w.running for w in reg.workers.values())
                    self._notifier_asleep = True
                    self._notify_wake.wait(NOTIFY_RUNNING_S if going else NOTIFY_IDLE_S)
                    self._notifier_asleep = False
                    idle = not self._changed_names and not going
                if reg.stopping:
                    return
                names, self._changed_names = self._changed_names, set()
                listeners = list(self.listeners)
            for callback in listeners:
                try:
                    callback(names)
                except Exception:  # noqa: BLE001 - a broken panel must not stop the runtime
                    log.exception("a panel failed to update %s:", names)
            if idle and self.quiet is not None:
                try:
                    self.quiet()  # nothing changed for a while: memory can go back
                except Exception:  # noqa: BLE001 - the panels must go on updating
                    log.exception("could not hand freed memory back to the system:")
            with lock:
                self._notify_wake.wait_for(lambda: reg.stopping, NOTIFY_INTERVAL_S)

    # ----- failures ----------------------------------------------------------------------------

    def failed(self, name: str, trace: Trace) -> None:
        """A run of ``name`` failed (the lock is held): tell the ``on_failure`` callbacks."""
        if self._on_failure:
            self._failures.append((name, trace))
            self._alerts_wake.notify()

    def notice(self, text: str) -> None:
        """Show ``text`` under the next cell that runs (the lock is held)."""
        self._notices.append(text)

    def counted(self, name: str, group) -> bool:
        """Count one more failure of ``group`` (a Fingerprint) if it is counted already since
        the last notices were shown; False if not (``count_failure`` starts its count)."""
        counted = self._counted.get((name, group.digest))
        if counted is None:
            return False
        counted[3] += 1
        return True

    def count_failure(self, name: str, label: str, group, see: str) -> None:
        """One more failure of a ``group`` (a Fingerprint) told of already: counted, and told
        as a count after the next cell (the lock is held)."""
        if not self.counted(name, group):
            self._counted[name, group.digest] = [label, group, see, 1]

    def take_notices(self) -> list[str]:
        """The notices not shown yet (the extension prints them after a cell): those told,
        then one line per group with failures counted since."""
        with self.registry.lock:
            notices, self._notices = self._notices, []
            counted, self._counted = self._counted, {}
        for label, group, see, count in counted.values():
            runs = "run" if count == 1 else "runs"
            notices.append(
                f"nbworkers: {label} failed {count:,} more {runs} for {group.title} "
                f"(group {group.digest}; see {see})"
            )
        return notices

    def on_failure(self, callback: Callable[[str, Trace], object]) -> Callable:
        """Call ``callback(worker, trace)`` after every failed run, on the alerts thread.

        A function of the same name registered before is replaced, so running the defining
        cell again does not call it twice.
        """
        if not callable(callback):
            raise ArgumentTypeError(f"on_failure needs a function, not {type(callback).__name__}")
        reg = self.registry
        with reg.lock:
            reg.check_running()
            self._on_failure[_callback_key(callback)] = callback
            if self._alerter is None:
                self._alerter = reg.spawn(self._alert_loop, "nbworkers-alerts")
        return callback

    def _alert_loop(self) -> None:
        reg = self.registry
        while True:
            with reg.lock:
                self._alerts_wake.wait_for(lambda: self._failures or reg.stopping)
                if reg.stopping and not self._failures:
                    return
                failures, self._failures = self._failures, []
                callbacks = list(self._on_failure.values())
            for name, trace in failures:
                for callback in callbacks:
                    try:
                        callback(name, trace)
                    # A callback may raise anything (sys.exit included): report it, go on.
                    except BaseException as exc:  # noqa: BLE001
                        log.error("the on_failure callback %r raised:", callback, exc_info=exc)

    def stop(self) -> None:
        """Wake the notifier and alerts threads so that they end (the lock is held)."""
        self._notify_wake.notify_all()
        self._alerts_wake.notify_all()
