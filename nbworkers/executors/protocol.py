"""What an executor is: the ``Executor`` protocol the engine calls, the ``Outcome`` of a run it
returns, and the ``Settings`` every executor is made with."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..trace import RunResult


@dataclass(slots=True)
class Outcome:
    """How a run ended: its result (None when it failed) or its formatted traceback."""

    result: RunResult | None
    error: str | None


@dataclass(slots=True)
class Settings:
    """What executors are made with, shared by one runtime's executors and kept up to date
    (``%config NBWorkers.max_processes`` or ``dask_address`` while running)."""

    max_processes: int = 0  # the pool's size, 0 being one per CPU
    dask_address: str = ""  # the cluster to connect to when nw.use_dask gave none
    result_max_bytes: int = 65536  # a bigger pickled result keeps only its repr


class Executor(Protocol):
    """Where a run's code runs. One instance per runtime and kind, made on first use with the
    runtime's ``Settings`` (``type(settings) -> Executor``), listed in ``EXECUTORS``."""

    name: str  # what --executor says: "threads", "processes", "dask"
    remote: bool  # False when the code runs on the run thread itself

    def prepare(self, handler, concurrency: int) -> None:
        """When a worker is defined: NBWorkersError saying why it cannot run ``handler``;
        warm up what ``concurrency`` runs at once will use."""

    def run(self, handler, event, run, on_emit: Callable[[str, tuple], tuple]) -> Outcome | None:
        """Run ``handler`` on ``event`` for ``run``, on the run thread, inside
        ``run.capture``; None if the run was abandoned (time limit or stop). ``on_emit(kind,
        request)`` queues what a handler elsewhere emits: ("ok", ids) or ("error", exc)."""

    def abandon(self, run) -> None:
        """``run`` passed its time limit (``run.timed_out`` is set, the engine lock held):
        stop it where it can be stopped, without waiting."""

    def stop(self, run) -> None:
        """``nw.stop`` asked to stop ``run`` (``run.stop`` is set, the engine lock held),
        without waiting. A remote executor (``remote``) abandons it as at a time limit
        (``run.timed_out`` is set: the engine settles it now); on the run thread, RunStopped
        is raised in the handler (``interrupt.py``) and the run ends in its thread."""

    def timeout_note(self) -> str:
        """What happened to an abandoned run, for its trace."""

    def close(self) -> None:
        """End what it started; runs still going are abandoned."""
