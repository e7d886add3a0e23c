"""Where a run's code runs: on its run thread, in a pool of processes, or on a Dask cluster.

``--executor threads`` (the default) calls the handler on the run thread. With ``processes``
or ``dask`` the run thread stays (it holds the run's slot, its timer and its trace) but hands
the handler, the event and the notebook globals the handler uses, pickled with cloudpickle, to
a pool process or a Dask task, and waits for the outcome (``child.py`` is the far side).
Queues, traces, counts, retries and pauses never leave the kernel, so they behave the same
whichever executor runs a worker.

``jobs.py`` makes what travels, ``pool.py`` is the process pool, ``daskrunner.py`` the Dask
runner. A run past its ``--timeout`` has its process killed; a Dask run past it has its task
cancelled.
"""

from __future__ import annotations

import os

from . import handlers, jobs
from .daskrunner import DaskRunner
from .errors import ArgumentValueError, NBWorkersError
from .pool import ProcessPool

EXECUTORS = ("threads", "processes", "dask")


def check(executor: object) -> str:
    """``executor`` if it is one nbworkers knows, else ArgumentValueError listing them."""
    if executor in EXECUTORS:
        return executor
    raise ArgumentValueError(
        f"executor must be one of {', '.join(EXECUTORS)}, not {executor!r} (threads: on the "
        "kernel's threads; processes: a process pool, for CPU-heavy handlers; dask: the "
        "cluster given to nw.use_dask)"
    )


def timeout_note(executor: str) -> str:
    """What happened to a run abandoned at its time limit, for its trace."""
    if executor == "processes":
        return "Its process was killed (the pool starts another)."
    if executor == "dask":
        return (
            "Its Dask task was cancelled; a task already running on a Dask worker cannot be "
            "stopped there, and what it does from now on is not recorded."
        )
    return (
        "A Python thread cannot be stopped: the handler goes on in the background until it "
        "returns, and what it does from now on is not recorded."
    )


def _pool_size(max_processes: int) -> int:
    """How many processes the pool may run: ``NBWorkers.max_processes``, 0 being one per CPU."""
    return max_processes or os.cpu_count() or 1


class Executors:
    """The process pool and the Dask runner of one runtime (both started only when used)."""

    def __init__(self, max_processes: int = 0, dask_address: str = ""):
        self.pool = ProcessPool(_pool_size(max_processes))
        self.dask = DaskRunner(dask_address)

    def set_max_processes(self, max_processes: int) -> None:
        """``NBWorkers.max_processes`` changed while running (see ``ProcessPool.resize``)."""
        self.pool.resize(_pool_size(max_processes))

    def prepare(self, handler, executor: str, concurrency: int) -> None:
        """Check, when a worker is defined, that its executor can run it (NBWorkersError
        saying why not); warm up the processes it will use."""
        if executor == "threads":
            return
        if executor == "dask":
            self.dask.check()
        jobs.check_sendable(handler, executor)
        if executor == "processes":
            self.pool.warm(concurrency)

    def run(self, handler, event, run, executor: str, on_emit) -> dict | None:
        """Run ``handler`` on ``event`` with ``executor``; the outcome (``stdout``,
        ``error``, ``result_data``, ``result_repr``), or None if the run was abandoned."""
        try:
            return self._run(handler, event, run, executor, on_emit)
        except BaseException as exc:  # noqa: BLE001 - the run fails; its run thread goes on
            return jobs.failed(
                f"nbworkers: --executor {executor} failed to run it:\n" + handlers.format_error(exc)
            )

    def _run(self, handler, event, run, executor: str, on_emit) -> dict | None:
        try:
            job = jobs.make(handler, event, run.message, executor)
        except NBWorkersError as exc:
            return jobs.failed(f"{exc}\n")
        if executor == "processes":
            return self.pool.run(job, run, on_emit)
        outcome = self.dask.run(job, run, run.message.worker)
        if outcome is not None:
            failed = []
            for kind, request in outcome.pop("emits", ()):
                try:
                    status, answer = on_emit(kind, jobs.decode(kind, request))
                except Exception as exc:  # noqa: BLE001 - the event would not unpickle here
                    status, answer = "error", exc
                if status == "error":
                    failed.append(f"{type(answer).__name__}: {answer}")
            if failed and outcome["error"] is None:
                # The handler could not see these errors (its emits were queued at the end):
                # the run fails, so that it is retried or dead-lettered, not lost.
                outcome["error"] = (
                    "nbworkers: emits of this run, queued when it ended on Dask, failed:\n"
                    + "\n".join(failed)
                    + "\n"
                )
        return outcome

    def abandon(self, run) -> None:
        """Stop ``run``, past its time limit, where it can be stopped (the lock is held)."""
        executor = run.policy.executor
        if executor == "processes":
            self.pool.abandon(run)
        elif executor == "dask":
            self.dask.abandon(run)

    def close(self) -> None:
        self.pool.close()
        self.dask.close()
