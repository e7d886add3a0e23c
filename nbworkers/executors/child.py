"""The far side of ``--executor processes`` and ``--executor dask``: run one job, report back.

A job is what ``jobs.make`` builds in the kernel: the handler, the event and the notebook
globals the handler uses (pickled with cloudpickle), the message's details, and the cell's
source for tracebacks. Running it gives an outcome: what it printed, its traceback or its result
(pickled here), and for Dask the messages it emitted.

In a child process, ``emit`` goes back to the kernel through the pipe and returns the real
message id; on Dask the emitted messages travel with the outcome and are queued when the run
ends (``emit`` returns None there). Nothing else of ``nbworkers`` works on this side: the
queues live in the kernel.
"""

from __future__ import annotations

import importlib
import linecache
import os
import pickle
import sys
import threading
import types

import cloudpickle

from .. import handlers, output, progress
from ..errors import NBWorkersError
from ..message import Message
from ..trace import PLAIN, preview

_local = threading.local()  # .emitter: where emit goes on a Dask task's thread
_process_emitter = None  # where emit goes in a child process, on any of its threads
# Set once this process runs jobs (a pool process or a Dask worker): until then, as in every
# kernel, emit goes straight to the runtime without looking further.
active = False


def emitter():
    """Where ``emit`` goes on this thread when it runs a job here, else None (the kernel)."""
    if not active:
        return None
    return getattr(_local, "emitter", None) or _process_emitter


def pickle_event(event) -> bytes:
    try:
        return cloudpickle.dumps(event)
    except Exception as exc:
        raise TypeError(
            f"emit: a value of type {type(event).__module__}.{type(event).__qualname__} cannot "
            f"be sent to the notebook ({type(exc).__name__}: {exc}); emit data that pickles. "
            "Nothing was enqueued."
        ) from exc


class _PipeEmitter:
    """``emit`` in a child process: ask the kernel on the pipe, wait for the message id."""

    def __init__(self, conn):
        self.conn = conn
        self.lock = threading.Lock()  # one request and its answer at a time

    def emit(self, event, name, *, key=None, delay=None, at=None, **options):
        return self._ask("emit", (pickle_event(event), name, key, delay, at, options))

    def emit_many(self, events, name, **options):
        return self._ask("emit_many", ([pickle_event(e) for e in events], name, options))

    def _ask(self, kind, request):
        with self.lock:
            self.conn.send((kind, request))
            status, answer = self.conn.recv()
        if status == "error":
            raise answer
        return answer


class _Refuser:
    """``emit`` on a Dask worker from a thread the handler started: it cannot reach the
    kernel (the messages would travel with no run's outcome), so it says so."""

    def emit(self, *args, **kwargs):
        raise NBWorkersError(
            "emit from a thread the handler started cannot reach the notebook on Dask: emit "
            "from the handler's own thread (its messages are queued when its run ends)"
        )

    emit_many = emit


class _Streamed(output.Capture):
    """A pool process's capture: each write goes to the kernel at once, so that a run
    killed at its time limit, or crashing, keeps what it printed."""

    __slots__ = ("send",)

    def __init__(self, send):
        super().__init__()
        self.send = send

    def write(self, text: str) -> None:
        self.send(text)


class _ListEmitter:
    """``emit`` on Dask: keep the messages; the kernel queues them when the run ends."""

    def __init__(self):
        self.emits: list[tuple] = []

    def emit(self, event, name, *, key=None, delay=None, at=None, **options):
        handlers.check_name(name)
        self.emits.append(("emit", (pickle_event(event), name, key, delay, at, options)))

    def emit_many(self, events, name, **options):
        handlers.check_name(name)
        self.emits.append(("emit_many", ([pickle_event(e) for e in events], name, options)))


def run_job(job: bytes, local: bool, capture: output.Capture) -> dict:
    """Run one job, its output going to ``capture``; the outcome as a dict of plain values
    (it always returns).

    ``local``: the job comes from a kernel on this machine, whose import path and working
    folder the run takes on (a Dask worker may be elsewhere: it keeps its own).
    """
    outcome = {"stdout": "", "error": None, "result_data": None, "result_repr": None}
    with capture:
        try:
            env, call, event, meta = pickle.loads(job)  # (plain values and bytes: never fails)
            env = _env(env)
            meta = pickle.loads(meta)
            _take_env(env, local)
            _far_from(env["kernel_pid"])
            if local:
                _import_changed(env["modules"])
            call, event = cloudpickle.loads(call), cloudpickle.loads(event)
        except BaseException as exc:  # noqa: BLE001 - a missing module, say: reported
            outcome["error"] = (
                "the handler could not be loaded on this side (every module it uses must be "
                "installed there too, and import without errors):\n"
                + handlers.format_error(exc, __file__)
            )
            return outcome
        _refile(call, env["filename"])
        message = Message(*meta)
        # Loaded with the handler's globals when they hold a @nw.recorded function: its calls
        # are recorded here and travel back with the outcome.
        recorded = sys.modules.get("nbworkers.develop.recorded")
        calls = None if recorded is None else recorded.far_run()
        try:
            result = call(event, message)
        # A handler may raise anything, SystemExit and KeyboardInterrupt included: the run
        # fails and is recorded; this process goes on.
        except BaseException as exc:  # noqa: BLE001
            outcome["error"] = handlers.format_error(exc, __file__)
        else:
            outcome["result_repr"] = preview(result)
            if result is not None:
                try:
                    # (a plain value needs none of cloudpickle's setup, a few µs a run)
                    if type(result) in PLAIN:
                        data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
                    else:
                        data = cloudpickle.dumps(result)
                    outcome["result_data"] = data
                except BaseException:  # noqa: BLE001 - an unpicklable result keeps its repr
                    outcome["result_data"] = None
        finally:
            if calls is not None:
                outcome["calls"] = recorded.far_run_ended(calls)
            shown = getattr(message, "progress_now", None)
            if shown is not None:  # the last, told or not: the trace keeps it
                outcome["progress"] = tuple(shown)
    outcome["stdout"] = capture.text()
    return outcome


_last_env: dict | None = None  # the environment of the last job that carried one


def _env(env: dict | None) -> dict:
    """A job's environment: None means the same as the last job's (a pool process is sent
    it only when it changed, ``jobs.make``)."""
    global _last_env
    if env is None:
        if _last_env is None:
            raise RuntimeError("nbworkers: a job came without its environment")
        return _last_env
    _last_env = env
    return env


def _refile(call, filename: str | None) -> None:
    """Give the handler's code back the file name cloudpickle left behind ("<dynamic-code>"),
    so its tracebacks name the cell and show its lines."""
    for fn in [call, *(getattr(call, "__defaults__", None) or ())]:
        code = getattr(fn, "__code__", None)
        if not isinstance(code, types.CodeType) or code.co_filename != "<dynamic-code>":
            continue
        if ".<locals>." in fn.__qualname__ and fn.__qualname__.startswith("from_"):
            # The wrappers of handlers.py: named so, their frames stay out of tracebacks.
            fn.__code__ = _renamed(code, handlers.__file__)
        elif filename:
            fn.__code__ = _renamed(code, filename)


def _renamed(code: types.CodeType, filename: str) -> types.CodeType:
    """``code`` (and the code inside it) named after ``filename``: made once for each code and
    file (every run of a handler unpickles an equal code, which compares equal)."""
    key = (code, code.co_qualname, filename)  # (code compares without its qualname)
    found = _renamed_codes.get(key)
    if found is None:
        consts = tuple(
            _renamed(c, filename) if isinstance(c, types.CodeType) else c for c in code.co_consts
        )
        found = code.replace(co_filename=filename, co_consts=consts)
        if len(_renamed_codes) >= _RENAMED_MAX:
            _renamed_codes.clear()
        _renamed_codes[key] = found
    return found


# Code objects are immutable and compare by value: one renamed copy serves every run.
_renamed_codes: dict[tuple[types.CodeType, str, str], types.CodeType] = {}
_RENAMED_MAX = 256
# The lines of each cell this process was sent, as last sent (at most _LINES_MAX cells).
_lines_taken: dict[str, list[str]] = {}
_LINES_MAX = 4096


_module_times: dict[str, float] = {}  # when each module's file had changed, as last seen


def _import_changed(modules: dict[str, float]) -> None:
    """Import again the user's modules whose files changed since this process last ran a
    job naming them (the kernel sends when each file last changed)."""
    for name, changed_at in modules.items():
        seen = _module_times.get(name)
        module = sys.modules.get(name)
        if module is not None and seen is not None and seen != changed_at:
            importlib.reload(module)  # if it raises, the next run tries again
        _module_times[name] = changed_at


def _far_from(kernel_pid: int) -> None:
    """On a Dask worker outside the kernel's process, emits from threads the handler starts
    are refused rather than opening a database here."""
    global _process_emitter
    if _process_emitter is None and os.getpid() != kernel_pid:
        _process_emitter = _Refuser()


def _take_env(env: dict, local: bool) -> None:
    for filename, lines in env["lines"].items():
        known = _lines_taken.get(filename)
        if known is None and len(_lines_taken) >= _LINES_MAX:
            _lines_taken.clear()  # (and what it vouched for: below)
            known = ()
        if known is not None and known != lines:
            # Another cell of the same name and number (another kernel, or the kernel before
            # a restart, on a shared Dask cluster): its code may compare equal to the last
            # one's (cells differing in a comment), so renamed copies are made anew, and with
            # them the tracebacks' shapes (keyed by code object) show the new lines.
            _renamed_codes.clear()
        _lines_taken[filename] = lines
        linecache.cache[filename] = (sum(map(len, lines)), None, lines, filename)
    if local:
        if sys.path != env["path"]:
            sys.path[:] = env["path"]
        if env["cwd"] and os.getcwd() != env["cwd"]:
            os.chdir(env["cwd"])


_dask_ready = threading.Lock()
_routed = False


def run_on_dask(job: bytes) -> dict:
    """The Dask task of one run (Dask workers run tasks on threads: output is kept apart
    per thread by the same router a kernel uses)."""
    global _routed, active
    active = True
    with _dask_ready:
        if not _routed:
            output.install()
            _routed = True
    emits = _local.emitter = _ListEmitter()
    try:
        outcome = run_job(job, local=False, capture=output.Capture())
    finally:
        _local.emitter = None
    outcome["emits"] = emits.emits
    return outcome


def _watch(lifeline: int) -> None:
    """End this process when the kernel dies: the kernel holds the only write end of the
    ``lifeline`` pipe, so reading it returns (empty) just then, even in the middle of a run."""
    while os.read(lifeline, 1):
        pass
    os._exit(0)


def main(fd: int, lifeline: int) -> None:
    """A pool process: run the jobs that come on the socket ``fd`` until it closes."""
    import signal

    from .channel import Channel

    global _process_emitter, active
    active = True
    # Interrupting the kernel (its process group gets SIGINT) must not fail background runs,
    # as it does not in a kernel's own run threads.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(
        target=_watch, args=(lifeline,), name="nbworkers-lifeline", daemon=True
    ).start()
    # The socket is this process's alone: not inherited by programs the handler starts (pass_fds
    # made it inheritable), and closed in a child it forks (os.fork, multiprocessing's "fork"),
    # so that when this process dies the kernel reads the end of it at once, even while such a
    # child runs on, instead of waiting for an answer that never comes.
    os.set_inheritable(fd, False)
    me = os.getpid()

    def forked() -> None:
        if os.getppid() == me:  # not in a child of that child: the number may be another fd
            os.close(fd)

    os.register_at_fork(after_in_child=forked)
    conn = Channel.from_fd(fd)
    output.install()
    _process_emitter = _PipeEmitter(conn)

    def send_output(text: str) -> None:
        with _process_emitter.lock:
            conn.send(("out", text))

    def send_progress(message) -> None:  # message.progress, a few times a second at most
        with _process_emitter.lock:
            conn.send(("progress", tuple(message.progress_now)))

    progress.tell = send_progress

    while True:
        try:
            job = conn.recv_bytes()
        except (EOFError, OSError):
            return  # the kernel closed the pipe (or died): nothing more to run
        outcome = run_job(job, local=True, capture=_Streamed(send_output))
        try:
            with _process_emitter.lock:
                conn.send(("done", outcome))
        except OSError:
            return  # the kernel is gone


def refuse_outside_kernel() -> None:
    """nbworkers' other functions need the kernel's runtime, which is not on this side."""
    if emitter() is not None:
        raise NBWorkersError(
            "this handler runs in another process (--executor processes or dask): there, "
            "emit() reaches the notebook's queues but nothing else of nbworkers does. Call "
            "nw.counts, nw.pause... from a cell, or use --executor threads"
        )
