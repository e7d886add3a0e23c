"""The ``%nbworkers`` dashboard: every worker and cron, and the unhandled names."""

from __future__ import annotations

import threading

import ipywidgets as widgets

from .. import api
from . import render, state
from .hub import register
from .panel import Panel
from .view import PipelineView


class Dashboard(widgets.VBox):
    """A panel per worker and cron, kept in definition order, and an Unhandled section."""

    def __init__(self, **kwargs):
        self._lock = threading.RLock()
        self._panels: dict[str, Panel] = {}
        self.header = widgets.HTML()
        self.graph = PipelineView()
        self.panels_box = widgets.VBox()
        self.unhandled = widgets.HTML()
        super().__init__([self.header, self.graph, self.panels_box, self.unhandled], **kwargs)
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
                f"<span style='color:var(--jp-ui-font-color2, #666)'>{render.esc(rt.path)}</span>"
            )
            if names != list(self._panels):
                for name in names:
                    if name not in self._panels:
                        self._panels[name] = Panel(name, removable=True)
                for name in [n for n in self._panels if n not in names]:
                    self._panels.pop(name).close()
                self.panels_box.children = [self._panels[n] for n in names]
            unhandled = rt.unhandled_details()
            self.unhandled.value = render.unhandled_html(unhandled, rt.clock())
            defined = [
                (
                    d.name,
                    "worker" if d.schedule is None else "cron",
                    rt.is_paused(d.name),
                    rt.counts(d.name),
                )
                for d in rt.definitions()
            ]
            waiting = [(name, queued) for name, queued, _ in unhandled]
            self.graph.graph = state.graph(defined, waiting, rt.flows())

    def _repr_mimebundle_(self, **kwargs):
        """The widget, and for front ends without widgets one line per worker and cron."""
        bundle = super()._repr_mimebundle_(**kwargs)
        rt = api.running()
        if isinstance(bundle, dict) and rt is not None:
            snaps = [rt.snapshot(name) for name in rt.workers()]
            waiting = [(name, queued) for name, queued, _ in rt.unhandled_details()]
            bundle["text/plain"] = render.dashboard_text(snaps, waiting)
        return bundle

    def panel(self, name: str) -> Panel:
        return self._panels[name]
