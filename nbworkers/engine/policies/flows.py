"""Flows: which worker's runs emitted to which name, counted as messages are queued, for the
dashboard's pipeline graph (``nw.api.runtime().flows()``).

An emit made by a run (on its thread; a pool process's emits are answered on it; a Dask run's
are queued when it ends) adds to the count of the edge from the run's worker to the name it
emitted to; an emit from the notebook, or from a thread of its own, is no edge. Kept in memory
for the kernel's life: a dict entry per edge, an addition per emit.
"""

from __future__ import annotations

from ..dispatch import current_worker
from ..worker import WorkerState
from . import RunPolicy


class Flows(RunPolicy):
    def __init__(self, registry):
        self.registry = registry
        self.edges: dict[tuple[str, str], int] = {}

    def after_enqueue(self, w: WorkerState, count: int) -> None:
        source = current_worker()
        if source is not None:
            edge = (source, w.name)
            self.edges[edge] = self.edges.get(edge, 0) + count

    def flows(self) -> dict[tuple[str, str], int]:
        """{(worker, name it emitted to): messages}, since the kernel started."""
        with self.registry.lock:
            return dict(self.edges)
