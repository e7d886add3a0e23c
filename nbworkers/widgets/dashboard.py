"""The ``%nbworkers`` dashboard: every worker and cron, and the unhandled names."""

from __future__ import annotations

import threading

import ipywidgets as widgets

from .. import api
from . import render
from .hub import register
from .panel import Panel


class Dashboard(widgets.VBox):
    """A panel per worker and cron, kept in definition order, and an Unhandled section."""

    def __init__(self, **kwargs):
        self._lock = threading.RLock()
        self._panels: dict[str, Panel] = {}
        self.header = widgets.HTML()
        self.panels_box = widgets.VBox()
        self.unhandled = widgets.HTML()
        super().__init__([self.header, self.panels_box, self.unhandled], **kwargs)
        self.add_class("nbw-dashboard")
        self.unhandled.add_class("nbw-unhandled")
        self.refresh()
        register(self)

    def wants(self, names: set[str]) -> bool:
        return True

    def refresh(self) -> None:
        rt = api.running() or api.runtime()
        with self._lock:  # read under it too: refreshes show what they read in order
            names = rt.workers()
            self.header.value = (
                f"<b>nbworkers</b> · {len(names)} worker(s) and cron(s) · "
                f"<span style='color:#666'>{render.esc(rt.path)}</span>"
            )
            if names != list(self._panels):
                for name in names:
                    if name not in self._panels:
                        self._panels[name] = Panel(name, removable=True)
                for name in [n for n in self._panels if n not in names]:
                    self._panels.pop(name).close()
                self.panels_box.children = [self._panels[n] for n in names]
            self.unhandled.value = render.unhandled_html(rt.unhandled_details(), rt.clock())

    def panel(self, name: str) -> Panel:
        return self._panels[name]
