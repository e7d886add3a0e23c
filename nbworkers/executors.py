"""Where a run's code runs: on its run thread, in a pool of processes, or on a Dask cluster.

``--executor threads`` (the default) calls the handler on the run thread. With ``processes``
or ``dask`` the run thread stays (it holds the run's slot, its timer and its trace) but hands
the handler, the event and the notebook globals the handler uses, pickled with cloudpickle, to
a pool process or a Dask task, and waits for the outcome (``child.py`` is the far side).
Queues, traces, counts, retries and pauses never leave the kernel, so they behave the same
whichever executor runs a worker.

Pool processes are started with ``subprocess`` (never forked from the kernel's threads) and
talk over a socket pair: nothing listens on a port. A run past its ``--timeout`` has its
process killed; a Dask run past it has its task cancelled.
"""

from __future__ import annotations

import linecache
import os
import socket
import subprocess
import sys
import threading
import types
import uuid
from multiprocessing.connection import Connection
from typing import NamedTuple

import cloudpickle

from . import child
from .errors import NBWorkersError

EXECUTORS = ("threads", "processes", "dask")

# How a pool process starts: the child module's loop on the socket given by number.
_BOOT = "import sys; from nbworkers.child import main; main(int(sys.argv[1]))"


def check(executor: object) -> str:
    """``executor`` if it is one nbworkers knows, else ValueError listing them."""
    if executor in EXECUTORS:
        return executor
    raise ValueError(
        f"executor must be one of {', '.join(EXECUTORS)}, not {executor!r} (threads: on the "
        "kernel's threads; processes: a process pool, for CPU-heavy handlers; dask: the "
        "cluster given to nw.use_dask)"
    )


class RemoteResult(NamedTuple):
    """A result that came back from another process: pickled (None if it did not pickle or
    was None) and its repr preview."""

    data: bytes | None
    repr: str | None


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


# ----- sending a handler elsewhere ------------------------------------------------------------


def _functions(call) -> list[types.FunctionType]:
    """The user's function(s) behind a handler's ``call`` (wrappers keep it as ``_fn``)."""
    found = [call] if isinstance(call, types.FunctionType) else []
    for value in getattr(call, "__defaults__", None) or ():
        if isinstance(value, types.FunctionType):
            found.append(value)
    return found


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _used_globals(call) -> dict[str, object]:
    """The notebook globals the handler's code names (what cloudpickle sends with it)."""
    used = {}
    for fn in _functions(call):
        for name in _global_names(fn.__code__):
            if name in fn.__globals__:
                used[name] = fn.__globals__[name]
    return used


def _why_unsendable(call, exc: BaseException, executor: str) -> str:
    for name, value in sorted(_used_globals(call).items()):
        try:
            cloudpickle.dumps(value)
        except Exception as inner:  # noqa: BLE001 - the culprit: named in the message
            return (
                f"--executor {executor}: the handler uses the notebook global {name!r} (a "
                f"{type(value).__module__}.{type(value).__qualname__}), which cannot be sent to "
                f"another process ({type(inner).__name__}: {inner}). Create it inside the cell, "
                "pass what it needs in the event, or use --executor threads"
            )
    return (
        f"--executor {executor}: the handler cannot be sent to another process "
        f"({type(exc).__name__}: {exc}); use --executor threads"
    )


def check_sendable(handler, executor: str) -> None:
    """NBWorkersError saying why ``handler`` cannot run in another process, if it cannot."""
    # IPython puts get_ipython in the builtins, so look at the names the code uses.
    if any("get_ipython" in _global_names(fn.__code__) for fn in _functions(handler.call)):
        raise NBWorkersError(
            f"--executor {executor}: the cell uses IPython syntax (!command or %magic), which "
            "needs the kernel; it runs only with --executor threads"
        )
    try:
        cloudpickle.dumps(handler.call)
    except Exception as exc:
        raise NBWorkersError(_why_unsendable(handler.call, exc, executor)) from exc


def _job(handler, event, message, executor: str) -> bytes:
    meta = (
        message.seq,
        message.worker,
        message.enqueued_at_s,
        message.attempt,
        b"",
        None,
        message.key,
    )
    lines = {}
    if handler.filename:
        lines[handler.filename] = linecache.getlines(handler.filename)
    env = {
        "filename": handler.filename,
        "lines": lines,
        "path": list(sys.path),
        "cwd": os.getcwd(),
    }
    try:
        return cloudpickle.dumps((handler.call, event, meta, env))
    except Exception as exc:
        raise NBWorkersError(_why_unsendable(handler.call, exc, executor)) from exc


def _failed(error: str) -> dict:
    return {"stdout": "", "error": error, "result_data": None, "result_repr": None}


def _decode(kind: str, request: tuple) -> tuple:
    """An emit request from the far side, with its events unpickled."""
    if kind == "emit":
        data, name, key, delay, at = request
        return (cloudpickle.loads(data), name, key, delay, at)
    datas, name = request
    return ([cloudpickle.loads(d) for d in datas], name)


# ----- the process pool -----------------------------------------------------------------------


class _Process:
    """One pool process and the kernel's end of its socket."""

    def __init__(self):
        ours, theirs = socket.socketpair()
        try:
            self.popen = subprocess.Popen(
                [sys.executable, "-c", _BOOT, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        self.run = None  # the run it is busy with

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()

    def end(self) -> int | None:
        """Close it (a process still running its job is killed); its exit code."""
        self.conn.close()
        try:
            return self.popen.wait(2)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.popen.wait()


class ProcessPool:
    """Up to ``size`` processes shared by every worker with ``--executor processes``.

    A run takes an idle process (or starts one), sends its job, answers the job's emits
    while it runs, and gives the process back. A run that finds every process busy waits
    for one (the wait counts towards its time limit).
    """

    def __init__(self, size: int):
        self.size = size
        self._lock = threading.Lock()
        self._free = threading.Condition(self._lock)
        self._idle: list[_Process] = []
        self._busy: list[_Process] = []
        self._closed = False

    def warm(self, count: int) -> None:
        """Start processes until ``count`` (at most the pool's size) are there, ready."""
        with self._lock:
            while not self._closed and len(self._idle) + len(self._busy) < min(count, self.size):
                self._idle.append(_Process())

    def processes(self) -> int:
        with self._lock:
            return len(self._idle) + len(self._busy)

    def pids(self) -> list[int]:
        with self._lock:
            return [p.popen.pid for p in self._idle + self._busy]

    def _take(self, run) -> _Process | None:
        with self._lock:
            while not self._closed and not run.timed_out:
                while self._idle:
                    process = self._idle.pop()
                    if process.popen.poll() is None:
                        break
                    process.end()  # it died while idle (killed from outside): replace it
                else:
                    if len(self._busy) >= self.size:
                        self._free.wait()
                        continue
                    process = _Process()
                process.run = run
                self._busy.append(process)
                return process
            return None

    def _give_back(self, process: _Process, reusable: bool) -> None:
        with self._lock:
            self._busy.remove(process)
            process.run = None
            if reusable and not self._closed:
                self._idle.append(process)
                process = None
            self._free.notify()
        if process is not None:
            process.end()

    def run(self, job: bytes, run, on_emit) -> dict | None:
        """The outcome of ``job``; None if the run was abandoned (time limit or stop)."""
        process = self._take(run)
        if process is None:
            return None
        try:
            process.conn.send_bytes(job)
            while True:
                kind, request = process.conn.recv()
                if kind == "done":
                    break
                answer = on_emit(kind, _decode(kind, request))
                try:
                    process.conn.send(answer)
                except (TypeError, AttributeError, ValueError) as exc:  # an unpicklable error
                    process.conn.send(("error", NBWorkersError(f"{answer[1]!r} ({exc})")))
        except (EOFError, OSError):
            abandoned = run.timed_out or self._closed
            self._give_back(process, reusable=False)
            if abandoned:
                return None
            code = process.popen.returncode
            how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            return _failed(
                f"nbworkers: the process running this handler died ({how}) before the run "
                "ended: the handler (or a library it called) crashed or exited it. The pool "
                "starts another process for the next run.\n"
            )
        self._give_back(process, reusable=not run.timed_out)
        return request

    def abandon(self, run) -> None:
        """Kill the process busy with ``run`` (its time limit passed; ``run.timed_out`` is
        set). Called with the runtime's lock held: it only sends a signal."""
        with self._lock:
            for process in self._busy:
                if process.run is run:
                    process.kill()

    def close(self) -> None:
        """End every process: idle ones close their pipe and exit, busy ones are killed."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            for process in self._busy:
                process.kill()
            self._free.notify_all()
        for process in idle:
            process.end()


# ----- Dask ---------------------------------------------------------------------------------


class DaskRunner:
    """Runs jobs on a ``distributed.Client``: one given by ``nw.use_dask``, or one made on
    first use from ``%config NBWorkers.dask_address``."""

    def __init__(self, address: str = ""):
        self.address = address
        self.client = None
        self._own_client = False
        self._lock = threading.Lock()
        self._waits: dict[int, tuple] = {}  # id(run) -> (run, future, woken)
        self._closed = False

    def use(self, client) -> None:
        with self._lock:
            self.client, self._own_client = client, False

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
        with self._lock:
            if self.client is None:
                self.check()
                from distributed import Client

                self.client, self._own_client = Client(self.address), True
            return self.client

    def run(self, job: bytes, run, name: str) -> dict | None:
        try:
            client = self._get_client()
            key = f"nbworkers-{name}-{uuid.uuid4().hex[:12]}"  # a task name the dashboard shows
            future = client.submit(child.run_on_dask, job, pure=False, key=key)
        except Exception as exc:  # noqa: BLE001 - reported in the run's trace
            return _failed(f"nbworkers: the Dask cluster could not take the run: {exc!r}\n")
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
            hint = ""
            if isinstance(exc, ImportError) or "No module named" in str(exc):
                hint = "; every Dask worker needs nbworkers and the modules the handler uses"
            return _failed(
                f"nbworkers: the Dask cluster could not run it ({type(exc).__name__}: {exc})"
                f"{hint}\n"
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


class Executors:
    """The process pool and the Dask runner of one runtime (both started only when used)."""

    def __init__(self, max_processes: int = 0, dask_address: str = ""):
        self.pool = ProcessPool(max_processes or os.cpu_count() or 1)
        self.dask = DaskRunner(dask_address)

    def prepare(self, handler, executor: str, concurrency: int) -> None:
        """Check, when a worker is defined, that its executor can run it (NBWorkersError
        saying why not); warm up the processes it will use."""
        if executor == "threads":
            return
        if executor == "dask":
            self.dask.check()
        check_sendable(handler, executor)
        if executor == "processes":
            self.pool.warm(concurrency)

    def run(self, handler, event, run, executor: str, on_emit) -> dict | None:
        """Run ``handler`` on ``event`` with ``executor``; the outcome (``stdout``,
        ``error``, ``result_data``, ``result_repr``), or None if the run was abandoned."""
        try:
            job = _job(handler, event, run.message, executor)
        except NBWorkersError as exc:
            return _failed(f"{exc}\n")
        if executor == "processes":
            return self.pool.run(job, run, on_emit)
        outcome = self.dask.run(job, run, run.message.worker)
        if outcome is not None:
            for kind, request in outcome.pop("emits", ()):
                status, answer = on_emit(kind, _decode(kind, request))
                if status == "error":
                    outcome["stdout"] += f"nbworkers: an emit of this run failed: {answer}\n"
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
