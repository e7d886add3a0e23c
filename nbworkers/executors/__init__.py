"""Where a run's code runs: on its run thread, in a pool of processes, or on a Dask cluster.

``--executor threads`` (the default, ``threads.py``) calls the handler on the run thread. With
``processes`` (``processes.py``) or ``dask`` (``dask.py``) the run thread stays (it holds the
run's slot, its timer and its trace) but hands the handler, the event and the notebook globals
the handler uses, pickled with cloudpickle (``jobs.py``), to a pool process or a Dask task, and
waits for the outcome (``child.py`` is the far side). Queues, traces, counts, retries and
pauses never leave the kernel, so they behave the same whichever executor runs a worker.

Each executor is one class following the ``Executor`` protocol (``protocol.py``), listed by
its name in ``EXECUTORS``: adding one is a file and a line here.
"""

from __future__ import annotations

import threading

from ..errors import ArgumentValueError
from .dask import DaskExecutor, DaskRunner
from .processes import ProcessExecutor, ProcessPool, pool_size
from .protocol import Executor, Outcome, Settings
from .threads import ThreadExecutor

__all__ = ["EXECUTORS", "Executor", "Executors", "Outcome", "Settings", "check"]

# What --executor may say, and the class that runs it (made with the runtime's Settings).
EXECUTORS: dict[str, type] = {
    "threads": ThreadExecutor,
    "processes": ProcessExecutor,
    "dask": DaskExecutor,
}


def check(executor: object) -> str:
    """``executor`` if it is one nbworkers knows, else ArgumentValueError listing them."""
    if isinstance(executor, str) and executor in EXECUTORS:
        return executor
    raise ArgumentValueError(
        f"executor must be one of {', '.join(EXECUTORS)}, not {executor!r} (threads: on the "
        "kernel's threads; processes: a process pool, for CPU-heavy handlers; dask: the "
        "cluster given to nw.use_dask)"
    )


class Executors:
    """The executors of one runtime, each made on first use (``executors["processes"]``) and
    closed with it."""

    def __init__(self, max_processes: int = 0, dask_address: str = "", result_max_bytes=65536):
        self.settings = Settings(max_processes, dask_address, result_max_bytes)
        self._made: dict[str, Executor] = {}
        self._making = threading.Lock()  # one instance per name, even made by two threads
        self._closed = False

    def __getitem__(self, name: str) -> Executor:
        try:
            return self._made[name]  # no lock: every run asks
        except KeyError:
            pass
        with self._making:
            executor = self._made.get(name)
            if executor is None:
                executor = self._made[name] = EXECUTORS[name](self.settings)
                if self._closed:
                    executor.close()  # made after close: it runs nothing
            return executor

    @property
    def pool(self) -> ProcessPool:
        """The process pool of ``--executor processes`` (``nw.restart_processes``)."""
        return self["processes"].pool

    @property
    def dask(self) -> DaskRunner:
        """The Dask runner of ``--executor dask`` (``nw.use_dask``, ``dask_address``)."""
        return self["dask"].runner

    def set_max_processes(self, max_processes: int) -> None:
        """``NBWorkers.max_processes`` changed while running (see ``ProcessPool.resize``)."""
        self.settings.max_processes = max_processes
        self.pool.resize(pool_size(max_processes))

    def set_dask_address(self, address: str) -> None:
        """``NBWorkers.dask_address`` changed while running (see ``DaskRunner.set_address``)."""
        self.settings.dask_address = address
        self.dask.set_address(address)

    def close(self) -> None:
        """Close those made: runs still going in a pool process or on Dask are abandoned."""
        with self._making:
            self._closed = True
            made = list(self._made.values())
        for executor in made:
            executor.close()
