"""The one path from the runtime to the panels: the runtime's throttled notifier calls
``_changed`` with the names that changed, and each open view that cares refreshes."""

from __future__ import annotations

import threading
import weakref

from .. import api
from ..log import log

_views: weakref.WeakSet = weakref.WeakSet()
_lock = threading.Lock()
_attached: set[int] = set()


def register(view) -> None:
    """Keep ``view`` (with ``wants(names)`` and ``refresh()``) up to date until it is closed."""
    with _lock:
        _views.add(view)
    api.on_start(_attach)


def views() -> list:
    with _lock:
        return [v for v in _views if getattr(v, "comm", None) is not None]


def _attach(rt) -> None:
    with _lock:
        if id(rt) in _attached:
            return
        _attached.add(id(rt))
    rt.add_listener(_changed)


def _changed(names: set[str]) -> None:
    for view in views():
        if view.wants(names):
            try:
                view.refresh()
            except Exception:  # noqa: BLE001 - one broken view must not stop the others
                log.exception("could not refresh %r:", view)
