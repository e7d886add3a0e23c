"""``--executor dask``: the run thread sends the job (``jobs.py``) as a task to a Dask cluster
(``child.run_on_dask`` runs it there) and waits for its outcome. What the handler emits there
travels back with the outcome and is queued when the run ends. A run past its time limit has
its task cancelled."""

from __future__ import annotations

import threading
import uuid

from ..errors import NBWorkersError
from . import child, jobs
from .jobs import failed
from .protocol import Outcome, Settings


class DaskExecutor:
    """Runs each run as a task of the ``DaskRunner``'s cluster."""

    name = "dask"
    remote = True

    def __init__(self, settings: Settings):
        self.settings = settings
        self.runner = DaskRunner(settings.dask_address)

    def prepare(self, handler, concurrency: int) -> None:
        self.runner.check()
        jobs.check_sendable(handler, self.name)

    def run(self, handler, event, run, on_emit) -> Outcome | None:
        try:
            done = self._run(handler, event, run, on_emit)
        except BaseException as exc:  # noqa: BLE001 - the run fails; its run thread goes on
            done = jobs.crashed(self.name, exc)
        return jobs.outcome(done, run, self.settings.result_max_bytes)

    def _run(self, handler, event, run, on_emit) -> dict | None:
        try:
            job, _ = jobs.make(handler, event, run.message, self.name)
        except NBWorkersError as exc:
            return failed(f"{exc}\n")
        done = self.runner.run(job, run, run.message.worker)
        if done is None:
            return None
        failures = []
        for kind, request in done.pop("emits", ()):
            try:
                status, answer = on_emit(kind, jobs.decode(kind, request))
            except Exception as exc:  # noqa: BLE001 - the event would not unpickle here
                status, answer = "error", exc
            if status == "error":
                failures.append(f"{type(answer).__name__}: {answer}")
        if failures and done["error"] is None:
            # The handler could not see these errors (its emits were queued at the end): the
            # run fails, so that it is retried or dead-lettered, not lost.
            done["error"] = (
                "nbworkers: emits of this run, queued when it ended on Dask, failed:\n"
                + "\n".join(failures)
                + "\n"
            )
        return done

    def stop(self, run) -> None:
        """``nw.stop`` (``run.timed_out`` is set, the engine lock held): as a time limit."""
        self.abandon(run)

    def abandon(self, run) -> None:
        self.runner.abandon(run)

    def timeout_note(self) -> str:
        return (
            "Its Dask task was cancelled; a task already running on a Dask worker cannot be "
            "stopped there, and what it does from now on is not recorded."
        )

    def close(self) -> None:
        self.runner.close()


class DaskRunner:
    """Runs jobs on a ``distributed.Client``: one given by ``nw.use_dask``, or one made on
    first use from ``%config NBWorkers.dask_address``."""

    def __init__(self, address: str = ""):
        self.address = address
        self.client = None
        self._own_client = False
        self._connecting = threading.Lock()  # one connection attempt at a time
        # Held only for a dict operation: the timer takes it with the runtime lock held.
        self._lock = threading.Lock()
        self._waits: dict[int, tuple] = {}  # id(run) -> (run, future, woken)
        self._closed = False

    def use(self, client) -> None:
        with self._lock:
            old, own = self.client, self._own_client
            self.client, self._own_client = client, False
        if own and old is not None and old is not client:
            old.close()

    def set_address(self, address: str) -> None:
        """A new ``dask_address``: a client nbworkers made for the old one is closed."""
        with self._lock:
            self.address = address
            old = self.client if self._own_client else None
            if old is not None:
                self.client, self._own_client = None, False
        if old is not None:
            old.close()

    def check(self) -> None:
        """NBWorkersError if no cluster can be reached the way the user set up."""
        try:
            import distributed  # noqa: F401
        except ImportError as exc:
            raise NBWorkersError(
                "--executor dask needs the distributed package: pip install distributed"
            ) from exc
        if self.client is None and not self.address:
            raise NBWorkersError(
                "--executor dask needs a cluster: call nw.use_dask(client) with a "
                "distributed.Client first, or %config NBWorkers.dask_address = 'tcp://...'"
            )

    def _get_client(self):
        client = self.client
        if client is not None:
            return client
        with self._connecting:  # never with self._lock: connecting may take seconds
            if self.client is None:
                self.check()
                from distributed import Client

                client = Client(self.address, timeout="10s")
                with self._lock:
                    self.client, self._own_client = client, True
            return self.client

    def run(self, job: bytes, run, name: str) -> dict | None:
        try:
            client = self._get_client()
            key = f"nbworkers-{name}-{uuid.uuid4().hex[:12]}"  # a task name the dashboard shows
            future = client.submit(child.run_on_dask, job, pure=False, key=key)
        except Exception as exc:  # noqa: BLE001 - reported in the run's trace
            return failed(f"nbworkers: the Dask cluster could not take the run: {exc!r}\n")
        woken = threading.Event()
        with self._lock:
            self._waits[id(run)] = (run, future, woken)
            abandoned = run.timed_out or self._closed
        if not abandoned:
            future.add_done_callback(lambda _: woken.set())
            woken.wait()
        with self._lock:
            del self._waits[id(run)]
            abandoned = run.timed_out or self._closed
        if abandoned:
            future.cancel()
            return None
        try:
            return future.result()
        except Exception as exc:  # noqa: BLE001 - reported in the run's trace
            return failed(
                f"nbworkers: the Dask cluster could not run it ({type(exc).__name__}: {exc})"
                f"{_dask_hint(exc)}\n"
            )

    def abandon(self, run) -> None:
        with self._lock:
            entry = self._waits.get(id(run))
        if entry is not None:
            entry[2].set()  # its run thread wakes and cancels the task

    def close(self) -> None:
        with self._lock:
            self._closed = True
            waits = list(self._waits.values())
            client, own = self.client, self._own_client
            self.client = None
        for _, _, woken in waits:
            woken.set()
        if client is not None and own:
            client.close()


def _dask_hint(exc: BaseException) -> str:
    name = type(exc).__name__
    if isinstance(exc, ImportError) or "No module named" in str(exc):
        return "; every Dask worker needs nbworkers and the modules the handler uses"
    if "Closed" in name or "Cancelled" in name:
        return "; the client is closed or the task was cancelled: nw.use_dask(an open client)"
    return ""
