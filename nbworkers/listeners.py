"""Telling panels what changed: one throttled notifier thread for every listener.

A part of ``Runtime`` (a mixin): names that changed collect under the runtime's lock and the
``nbworkers-notify`` thread (started by the runtime) passes them on at most every 0.4 s.
"""

from __future__ import annotations

from collections.abc import Callable

from .log import log

# Listeners (panels) hear of changes at most this often, however fast messages flow, so a
# panel sends a few comm messages a second and reflects a change within half a second.
NOTIFY_INTERVAL_S = 0.4
# With nothing changing, listeners still hear every so often (relative times, "in 12 min").
NOTIFY_IDLE_S = 30.0


class Listeners:
    """Change notification for panels, mixed into ``Runtime``."""

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
                    log.exception("a panel failed to update %s:", names)
            with lock:
                self._notify_wake.wait_for(lambda: self._stopping, NOTIFY_INTERVAL_S)
