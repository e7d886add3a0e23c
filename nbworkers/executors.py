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
import pickle
import socket
import subprocess
import sys
import threading
import types
import uuid
from multiprocessing.connection import Connection
from typing import NamedTuple

import cloudpickle

from . import child, handlers
from .errors import NBWorkersError

EXECUTORS = ("threads", "processes", "dask")

# How a pool process starts: the child module's loop on the socket given by number.
_BOOT = "import sys; from nbworkers.child import main; main(int(sys.argv[1]), int(sys.argv[2]))"


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
    try:
        cwd = os.getcwd()
    except OSError:  # the kernel's folder was deleted: the run keeps the process's own
        cwd = None
    env = {
        "filename": handler.filename,
        "lines": lines,
        "path": list(sys.path),
        "cwd": cwd,
        "kernel_pid": os.getpid(),
        "modules": _own_modules(handler.call),
    }
    try:
        inner = cloudpickle.dumps((handler.call, event, meta))
    except Exception as exc:
        raise NBWorkersError(_why_unsendable(handler.call, exc, executor)) from exc
    # The far side reads env first: it imports changed modules again before unpickling the
    # handler, whose globals may name them.
    return pickle.dumps((env, inner), protocol=pickle.HIGHEST_PROTOCOL)


def _own_modules(call) -> dict[str, float]:
    """The modules of the user's own (not installed in Python's folders) that the handler's
    globals come from, with when each file last changed: a pool process imports a module
    again when it changed, as ``importlib.reload`` or ``%autoreload`` do in the notebook."""
    found = {}
    for value in _used_globals(call).values():
        name = value.__name__ if isinstance(value, types.ModuleType) else None
        if name is None:
            name = getattr(value, "__module__", None)
        if not isinstance(name, str) or name.partition(".")[0] in ("nbworkers", "__main__"):
            continue
        path = getattr(sys.modules.get(name), "__file__", None)
        if path and not path.startswith(_PYTHON_FOLDERS):
            try:
                found[name] = os.stat(path).st_mtime
            except OSError:
                pass  # a module whose file is gone: nothing to import again
    return found


_PYTHON_FOLDERS = tuple({sys.prefix, sys.base_prefix, sys.exec_prefix})


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

    def __init__(self, lifeline: int):
        ours, theirs = socket.socketpair()
        try:
            self.popen = subprocess.Popen(
                [sys.executable, "-c", _BOOT, str(theirs.fileno()), str(lifeline)],
                pass_fds=(theirs.fileno(), lifeline),
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        self.run = None  # the run it is busy with
        self.killed = False  # by a time limit: never to be reused

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
    and takes its output while it runs, and gives the process back. A run that finds every
    process busy waits for one (the wait counts towards its time limit).

    Every process also holds the read end of one pipe whose write end only the kernel
    has: when the kernel dies, however it dies, the pipe closes and the processes exit.
    """

    def __init__(self, size: int):
        self.size = size
        self._lock = threading.Lock()
        self._free = threading.Condition(self._lock)
        self._idle: list[_Process] = []
        self._busy: list[_Process] = []
        self._starting = 0  # processes being started, outside the lock
        self._closed = False
        self._lifeline: tuple[int, int] | None = None

    def _room(self) -> bool:
        return len(self._idle) + len(self._busy) + self._starting < self.size

    def _start(self) -> _Process:
        """A new process (the lock is not held: starting one takes milliseconds)."""
        try:
            return _Process(self._lifeline[0])
        finally:
            with self._lock:
                self._starting -= 1
                self._free.notify()

    def _reserve(self) -> None:
        """Count a process about to start (the lock is held)."""
        if self._lifeline is None:
            self._lifeline = os.pipe()  # not inheritable: only the pool's processes get it
        self._starting += 1

    def warm(self, count: int) -> None:
        """Start processes until ``count`` (at most the pool's size) are there, ready."""
        while True:
            with self._lock:
                if self._closed or len(self._idle) + len(self._busy) + self._starting >= min(
                    count, self.size
                ):
                    return
                self._reserve()
            process = self._start()
            if not self._keep(process):
                return

    def processes(self) -> int:
        with self._lock:
            return len(self._idle) + len(self._busy)

    def pids(self) -> list[int]:
        with self._lock:
            return [p.popen.pid for p in self._idle + self._busy]

    def restart(self) -> None:
        """End the idle processes and mark the busy ones to end after their run, so that
        every next run starts in a fresh process (modules imported anew)."""
        with self._lock:
            idle, self._idle = self._idle, []
            for process in self._busy:
                process.killed = True  # not reused: ended when its run gives it back
        for process in idle:
            process.end()

    def _take(self, run) -> _Process | None:
        while True:
            with self._lock:
                process = None
                while process is None:
                    if self._closed or run.timed_out:
                        self._free.notify()  # pass on a wake-up this run will not use
                        return None
                    while self._idle and process is None:
                        process = self._idle.pop()
                        if process.popen.poll() is not None:
                            process.end()  # it died while idle (killed from outside)
                            process = None
                    if process is None:
                        if self._room():
                            self._reserve()
                            break
                        self._free.wait()
                if process is not None:
                    process.run = run
                    self._busy.append(process)
                    return process
            if not self._keep(self._start()):
                return None  # taken on the next pass, unless timed out

    def _keep(self, process: _Process) -> bool:
        """Make a new process idle; False (and it ends) if the pool closed meanwhile."""
        with self._lock:
            if not self._closed:
                self._idle.append(process)
                self._free.notify()
                return True
        process.end()
        return False

    def _give_back(self, process: _Process, reusable: bool) -> None:
        with self._lock:
            self._busy.remove(process)
            process.run = None
            if reusable and not process.killed and not self._closed:
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
            outcome = self._talk(process, job, run, on_emit)
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
        except BaseException as exc:  # noqa: BLE001 - the run fails; the run thread goes on
            self._give_back(process, reusable=False)
            return _failed(
                "nbworkers: talking to the pool process failed:\n" + handlers.format_error(exc)
            )
        self._give_back(process, reusable=True)
        return outcome

    @staticmethod
    def _talk(process: _Process, job: bytes, run, on_emit) -> dict:
        conn = process.conn
        conn.send_bytes(job)
        while True:
            kind, request = conn.recv()
            if kind == "done":
                return request
            if kind == "out":
                run.capture.write(request)  # as it is printed: a run cut short keeps it
                continue
            try:
                answer = on_emit(kind, _decode(kind, request))
            except Exception as exc:  # noqa: BLE001 - the event would not unpickle here
                answer = ("error", TypeError(f"emit: {exc!r}; nothing was enqueued"))
            try:
                conn.send(answer)
            except (TypeError, AttributeError, ValueError) as exc:  # an unpicklable error
                conn.send(("error", NBWorkersError(f"{answer[1]!r} ({exc})")))

    def abandon(self, run) -> None:
        """Kill the process busy with ``run`` (its time limit passed; ``run.timed_out`` is
        set). Called with the runtime's lock held: it only sends a signal."""
        with self._lock:
            for process in self._busy:
                if process.run is run:
                    process.killed = True
                    process.kill()
            self._free.notify_all()  # a run of it waiting for a process gives up

    def close(self) -> None:
        """End every process: idle ones close their pipe and exit, busy ones are killed."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            for process in self._busy:
                process.killed = True
                process.kill()
            self._free.notify_all()
            lifeline, self._lifeline = self._lifeline, None
        for process in idle:
            process.end()
        if lifeline is not None:
            for fd in lifeline:
                os.close(fd)


# ----- Dask ---------------------------------------------------------------------------------


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
            return _failed(
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
            return self._run(handler, event, run, executor, on_emit)
        except BaseException as exc:  # noqa: BLE001 - the run fails; its run thread goes on
            return _failed(
                f"nbworkers: --executor {executor} failed to run it:\n" + handlers.format_error(exc)
            )

    def _run(self, handler, event, run, executor: str, on_emit) -> dict | None:
        try:
            job = _job(handler, event, run.message, executor)
        except NBWorkersError as exc:
            return _failed(f"{exc}\n")
        if executor == "processes":
            return self.pool.run(job, run, on_emit)
        outcome = self.dask.run(job, run, run.message.worker)
        if outcome is not None:
            failed = []
            for kind, request in outcome.pop("emits", ()):
                try:
                    status, answer = on_emit(kind, _decode(kind, request))
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

    def restart_processes(self) -> None:
        self.pool.restart()

    def close(self) -> None:
        self.pool.close()
        self.dask.close()
