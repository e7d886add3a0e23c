"""``--executor processes``: the run thread sends the job (``jobs.py``) to a process of a pool
and waits for its outcome; for CPU-heavy handlers, off the kernel's GIL.

The pool's processes are started with ``subprocess`` (never forked from a kernel full of
threads), each talking to the kernel over a socket pair, so that nothing listens on a port.
``child.main`` is the other end. A run past its time limit has its process killed."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

from .. import handlers, progress
from ..errors import NBWorkersError
from ..log import log
from . import jobs
from .channel import Channel
from .jobs import decode, failed
from .protocol import Outcome, Settings

# A process idle for longer than this is checked for life before it takes a job.
IDLE_CHECK_S = 0.05
# How many processes a run's job may find dead when sent to them before the run fails.
SEND_TRIES = 3


def pool_size(max_processes: int) -> int:
    """How many processes the pool may run: ``NBWorkers.max_processes``, 0 being one per CPU."""
    return max_processes or os.cpu_count() or 1


# How a pool process starts: the child module's loop on the socket and the lifeline pipe
# given by number.
_BOOT = (
    "import sys; from nbworkers.executors.child import main; "
    "main(int(sys.argv[1]), int(sys.argv[2]))"
)


class _Process:
    """One pool process and the kernel's end of its socket."""

    def __init__(self, lifeline: int):
        ours, theirs = socket.socketpair()
        # (blocking, whatever socket.setdefaulttimeout says: the process inherits the mode)
        theirs.setblocking(True)
        try:
            self.popen = subprocess.Popen(
                [sys.executable, "-c", _BOOT, str(theirs.fileno()), str(lifeline)],
                pass_fds=(theirs.fileno(), lifeline),
                stdin=subprocess.DEVNULL,
                # A process group of its own: Jupyter signals the kernel's whole group (the
                # interrupt button's SIGINT, SIGTERM at shutdown), which must not end a run
                # midway; the kernel ends these processes itself, and the lifeline when it dies.
                process_group=0,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.conn = Channel(ours)
        self.run = None  # the run it is busy with
        self.idle_at = time.monotonic()  # when it last became idle
        self.killed = False  # by a time limit: never to be reused
        self.env: dict | None = None  # the environment its last job carried (jobs.make)

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


def _ended_while_idle(process: _Process) -> None:
    """Say that ``process``, ended (``end``), had died while idle (killed from outside: the OOM
    killer, a ``kill``); no run is lost: the pool starts another."""
    code = process.popen.returncode
    how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
    log.warning(
        "nbworkers: pool process %d had ended while idle (%s); the next run goes to another",
        process.popen.pid,
        how,
    )


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

    def resize(self, size: int) -> None:
        """Let at most ``size`` processes be: idle ones past it end now, busy ones past it
        after their run (``%config NBWorkers.max_processes`` while running)."""
        with self._lock:
            self.size = size
            surplus = max(0, len(self._idle) + len(self._busy) - size)
            ended, self._idle = self._idle[:surplus], self._idle[surplus:]
            self._free.notify_all()
        for process in ended:
            process.end()

    def _start(self, lifeline: int) -> _Process:
        """A new process (the lock is not held: starting one takes milliseconds)."""
        try:
            return _Process(lifeline)
        finally:
            with self._lock:
                self._starting -= 1
                self._free.notify()

    def _reserve(self) -> int:
        """Count a process about to start (the lock is held); the lifeline it gets."""
        if self._lifeline is None:
            self._lifeline = os.pipe()  # not inheritable: only the pool's processes get it
        self._starting += 1
        return self._lifeline[0]

    def warm(self, count: int) -> None:
        """Start processes until ``count`` (at most the pool's size) are there, ready."""
        while True:
            with self._lock:
                if self._closed or len(self._idle) + len(self._busy) + self._starting >= min(
                    count, self.size
                ):
                    return
                lifeline = self._reserve()
            if not self._keep(self._start(lifeline)):
                return

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
                    # A pool made smaller while its processes ran: no more runs at once than
                    # its size, even with idle processes left (ended as they are given back).
                    while self._idle and process is None and len(self._busy) < self.size:
                        process = self._idle.pop()
                        # One idle for a while may have been killed from outside meanwhile (a
                        # drain's processes are idle for microseconds: no system call for them).
                        if (
                            time.monotonic() - process.idle_at > IDLE_CHECK_S
                            and process.popen.poll() is not None
                        ):
                            process.end()
                            _ended_while_idle(process)
                            process = None
                    if process is None:
                        if self._room():
                            lifeline = self._reserve()
                            break
                        self._free.wait()
                if process is not None:
                    process.run = run
                    self._busy.append(process)
                    return process
            if not self._keep(self._start(lifeline)):
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
            kept = len(self._idle) + len(self._busy) < self.size  # not past a smaller size
            if reusable and kept and not process.killed and not self._closed:
                process.idle_at = time.monotonic()
                self._idle.append(process)
                process = None
            self._free.notify()
        if process is not None:
            process.end()

    def run(self, make, run, on_emit) -> dict | None:
        """The outcome of the job ``make(sent)`` gives (with the environment it carries;
        ``sent``: what the process has from its last job); None if the run was abandoned
        (time limit or stop)."""
        for tries in range(SEND_TRIES):
            try:
                process = self._take(run)
            except BaseException:
                if self._closed:
                    return None  # the pool closed while a process started: the run stays queued
                raise
            if process is None:
                return None
            try:
                job, env = make(process.env)
            except NBWorkersError as exc:
                self._give_back(process, reusable=True)
                return failed(f"{exc}\n")
            except BaseException:
                self._give_back(process, reusable=True)
                raise
            try:
                process.conn.send_bytes(job)
                process.env = env
                break
            except OSError:
                self._give_back(process, reusable=False)
                if run.timed_out or self._closed:
                    # The time limit (or nw.stop, or the pool's close) killed it while the job
                    # was made. (Not ``process.killed``: restart() marks busy processes so
                    # too, without killing them or abandoning their runs.)
                    return None
                # It died while idle (killed from outside) since it was last checked: the job
                # never reached it, and goes to another.
                _ended_while_idle(process)
                if tries == SEND_TRIES - 1:
                    return failed(
                        f"nbworkers: {SEND_TRIES} pool processes in a row were dead before this "
                        "run could be sent to one (something kills them as they start?); the "
                        "pool starts others for the next run.\n"
                    )
            except BaseException:
                # (a job past what memory holds, say: the process may have part of it)
                self._give_back(process, reusable=False)
                raise
        try:
            outcome = self._talk(process, run, on_emit)
        except (EOFError, OSError):
            abandoned = run.timed_out or self._closed
            self._give_back(process, reusable=False)
            if abandoned:
                return None
            code = process.popen.returncode
            how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            return failed(
                f"nbworkers: the process running this handler died ({how}) before the run "
                "ended: the handler (or a library it called) crashed or exited it. The pool "
                "starts another process for the next run.\n"
            )
        except BaseException as exc:  # noqa: BLE001 - the run fails; the run thread goes on
            self._give_back(process, reusable=False)
            return failed(
                "nbworkers: talking to the pool process failed:\n" + handlers.format_error(exc)
            )
        self._give_back(process, reusable=True)
        return outcome

    @staticmethod
    def _talk(process: _Process, run, on_emit) -> dict:
        conn = process.conn
        while True:
            # (a process that dies closes its socket: children it forks close their copy,
            # child.main, so that recv() ends then, even with a helper left running)
            kind, request = conn.recv()
            if kind == "done":
                return request
            if kind == "out":
                run.capture.write(request)  # as it is printed: a run cut short keeps it
                continue
            if kind == "progress":  # message.progress there: shown here
                progress.reported(run.message, progress.Progress(*request))
                continue
            try:
                answer = on_emit(kind, decode(kind, request))
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


class ProcessExecutor:
    """Runs each run in a process of its ``ProcessPool``, shared by every worker with
    ``--executor processes``."""

    name = "processes"
    remote = True

    def __init__(self, settings: Settings):
        self.settings = settings
        self.pool = ProcessPool(pool_size(settings.max_processes))

    def prepare(self, handler, concurrency: int) -> None:
        jobs.check_sendable(handler, self.name)
        self.pool.warm(concurrency)

    def run(self, handler, event, run, on_emit) -> Outcome | None:
        # The event as it was stored, when it alone is the run's (not a batch's)
        stored = run.message.data if run.messages is None else None

        def make(sent: dict | None) -> tuple[bytes, dict]:
            return jobs.make(handler, event, run.message, self.name, stored=stored, sent=sent)

        try:
            done = self.pool.run(make, run, on_emit)
        except BaseException as exc:  # noqa: BLE001 - the run fails; its run thread goes on
            done = jobs.crashed(self.name, exc)
        return jobs.outcome(done, run, self.settings.result_max_bytes)

    def stop(self, run) -> None:
        """``nw.stop`` (``run.timed_out`` is set, the engine lock held): as a time limit."""
        self.abandon(run)

    def abandon(self, run) -> None:
        self.pool.abandon(run)

    def timeout_note(self) -> str:
        return "Its process was killed (the pool starts another)."

    def close(self) -> None:
        self.pool.close()
