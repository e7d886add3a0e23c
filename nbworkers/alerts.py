"""Being told about failures: ``nw.on_failure`` callbacks and the "keeps failing" notice.

A part of ``Runtime`` (a mixin). Failed runs are collected under the runtime's lock and
reported by whichever thread ended them, after it let go of the lock.
"""

from __future__ import annotations

from collections.abc import Callable

from .errors import ArgumentTypeError
from .log import log
from .trace import Trace


class Alerts:
    """``on_failure`` callbacks and notices, mixed into ``Runtime``."""

    def on_failure(self, callback: Callable[[str, Trace], object]) -> Callable:
        """Call ``callback(worker, trace)`` after every failed run, on the alerts thread.

        A function of the same name registered before is replaced, so running the defining
        cell again does not call it twice.
        """
        if not callable(callback):
            raise ArgumentTypeError(f"on_failure needs a function, not {type(callback).__name__}")
        qualname = getattr(callback, "__qualname__", "")
        if qualname and "<lambda>" not in qualname:
            key = f"{getattr(callback, '__module__', '')}.{qualname}"
        else:
            key = str(id(callback))  # lambdas and partials have no name to replace by
        with self._lock:
            self._check_running()
            self._on_failure[key] = callback
            if self._alerter is None:
                self._alerter = self._spawn(self._alert_loop, "nbworkers-alerts")
        return callback

    def _alert_loop(self) -> None:
        """The alerts thread: a slow or broken callback delays only other alerts."""
        while True:
            with self._lock:
                self._alerts_wake.wait_for(lambda: self._failures or self._stopping)
                if self._stopping and not self._failures:
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

    def take_notices(self) -> list[str]:
        """The "keeps failing" notices not shown yet (the extension prints them after a cell)."""
        with self._lock:
            notices, self._notices = self._notices, []
        return notices
