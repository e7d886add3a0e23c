"""``--executor threads`` (the default): the handler runs on the run thread itself, in the
kernel, where it sees the notebook's globals as they are now."""

from __future__ import annotations

from ..handlers import format_error
from ..trace import RunResult, result_pickle, run_result
from .interrupt import this_thread, thread_local
from .protocol import Outcome, Settings


class ThreadExecutor:
    """Calls the handler on the run thread; nothing to prepare, nothing to close."""

    name = "threads"
    remote = False

    def __init__(self, settings: Settings):
        self.settings = settings

    def prepare(self, handler, concurrency: int) -> None:
        pass  # anything a cell can run, a thread of the kernel can

    def run(self, handler, event, run, on_emit) -> Outcome:
        interrupt = thread_local.interrupt or this_thread()  # (made on a thread's first run)
        try:
            # nw.stop may raise RunStopped in this thread while it is armed: from ``arm`` to
            # ``disarm``, all inside this ``try`` (executors/interrupt.py).
            try:
                interrupt.arm(run)
                value = handler.call(event, run.message)
            finally:
                interrupt.disarm()
        # A handler may raise anything, SystemExit and KeyboardInterrupt included: the run
        # fails and is recorded; the runtime goes on. Its traceback starts at the handler.
        except BaseException as exc:  # noqa: BLE001
            return Outcome(None, format_error(exc, __file__))
        if run.keep_result:
            return Outcome(run_result(value, self.settings.result_max_bytes), None)
        # No repr for a trace that will be replaced (see Run.keep_result); the pickle alone,
        # for nw.result (the writer stores it by id, not in the trace).
        data = result_pickle(value, self.settings.result_max_bytes)
        return Outcome(RunResult(value, data, None), None)

    def abandon(self, run) -> None:
        pass  # a Python thread cannot be stopped

    def stop(self, run) -> None:
        """``nw.stop``: RunStopped in the run's thread at its next bytecode, if its handler
        runs now (else when the handler starts, or when its nbworkers call returns)."""
        interrupt = run.interrupt
        if interrupt is not None:
            interrupt.fire(run)

    def timeout_note(self) -> str:
        return (
            "A Python thread cannot be stopped: the handler goes on in the background until it "
            "returns, and what it does from now on is not recorded."
        )

    def close(self) -> None:
        pass
