"""The browser views, anywidgets of one ES module and one CSS file (``static/nbworkers.js`` and
``static/nbworkers.css``) shipped in the package: nothing is fetched at run time, and no
JupyterLab extension beyond anywidget's own is needed. ``WorkerView`` is a worker's or cron's
panel; ``PipelineView`` the dashboard's graph.

The kernel sends plain data (``state.py``) in synced traits: ``header`` (name, settings,
counts, times, runs going, the sparklines' history), ``traces`` (the table's rows) and
``detail`` (the selected trace). The browser sends back ``selected`` (a trace id) and, as
custom messages, the actions of the selected trace's buttons.
"""

from __future__ import annotations

from pathlib import Path

import anywidget
import traitlets

STATIC = Path(__file__).parent / "static"
# Read here, as text: a path would have anywidget watch the file in a thread of its own.
ESM = (STATIC / "nbworkers.js").read_text(encoding="utf-8")
CSS = (STATIC / "nbworkers.css").read_text(encoding="utf-8")


class WorkerView(anywidget.AnyWidget):
    _esm = ESM
    _css = CSS

    header = traitlets.Dict().tag(sync=True)
    history = traitlets.List().tag(sync=True)  # changes at most once a second
    traces = traitlets.List().tag(sync=True)
    selected = traitlets.Unicode("").tag(sync=True)
    detail = traitlets.Dict().tag(sync=True)
    # Live values of the selected trace: {} (none), {"state": "running" | "error" | "done"...}
    live = traitlets.Dict().tag(sync=True)


class PipelineView(anywidget.AnyWidget):
    """Workers and crons as nodes with their counts, the emits between them as edges with
    theirs, names nobody handles as dashed nodes (``state.graph``)."""

    _esm = ESM
    _css = CSS

    graph = traitlets.Dict().tag(sync=True)
