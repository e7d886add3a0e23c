"""Stopping a run going on (``nw.stop``): a failed attempt whose error starts with "Stopped".

Where the run happens decides how it stops (``Executor.stop``): a pool process is killed and
a Dask task cancelled at once, as at a time limit, and the run is settled here; on a thread,
``RunStopped`` is raised in the handler at its next bytecode (``executors/interrupt.py``) and
the run is settled when it ends in its thread (``Outcomes.end_run`` asks ``StopRequest``).
Either way ``message.stopping`` is True from the call on, for handlers that check.

``retry=True``: the worker's ``--retries`` apply, as for any failure; ``retry=False``: a dead
letter at once. A run that ends (or times out) before the stop takes effect has one outcome:
whichever the engine settles first, under its lock.
"""

from __future__ import annotations

import dataclasses
import time

from ..errors import ArgumentTypeError, NBWorkersError
from ..message import parse_id
from .outcomes import make_trace
from .registry import Registry
from .worker import Run, WorkerState


class StopRequest:
    """``nw.stop`` asked to stop one run: when, and whether its retries apply."""

    __slots__ = ("asked_at_s", "message_id", "retry")

    def __init__(self, message_id: str, retry: bool, asked_at_s: float):
        self.message_id = message_id
        self.retry = retry
        self.asked_at_s = asked_at_s

    def headline(self) -> str:
        when = time.strftime("%H:%M:%S", time.localtime(self.asked_at_s))
        then = (
            "the worker's --retries apply (retry=True)"
            if self.retry
            else "a dead letter at once, whatever --retries says (retry=False)"
        )
        return f"Stopped: nw.stop({self.message_id!r}) stopped this run at {when}; {then}.\n"

    def ended(self, run: Run, error: str | None) -> tuple[None, str, None]:
        """The outcome of ``run``, stopped, which ended in its thread with ``error`` (None: the
        handler returned anyway): (result, error, unpicklable) for ``Outcomes.end_run``."""
        _ask(run, False)  # its next attempt, if any, is not being stopped
        if error is None:
            detail = (
                "The handler returned after the stop was asked (it saw message.stopping, or "
                "caught RunStopped): its result was dropped.\n"
            )
        else:
            detail = "Where the handler was when it stopped:\n" + error
        return None, self.headline() + detail, None


class Stops:
    """``nw.stop`` for one engine."""

    def __init__(self, registry: Registry, executors, outcomes, events, wake):
        self.registry = registry
        self.executors = executors
        self.outcomes = outcomes
        self.events = events
        self.wake = wake  # Dispatch.wake: a remote run's slot is free at once

    def stop_run(self, message_id: str, retry: bool = True, attempt: int | None = None) -> bool:
        """Stop the run of ``message_id`` going on now. True once asked (a thread's run ends
        when the exception lands, see ``message.stopping``); False if that message is not
        running (it ended, or there is no such message), or if ``attempt`` is given and the
        attempt running is another (a retry started since: the panel's Stop passes the attempt
        it showed, so that a second click does not stop the retry). NBWorkersError if it waits
        in a queue (``nw.cancel`` removes it) or nbworkers is stopping."""
        seq = parse_id(message_id, "m")
        if not isinstance(retry, bool):
            raise ArgumentTypeError(f"nw.stop: retry must be True or False, not {retry!r}")
        if attempt is not None and (
            not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 1
        ):
            raise ArgumentTypeError(
                f"nw.stop: attempt must be a whole number from 1 (or None), not {attempt!r}"
            )
        reg = self.registry
        with reg.lock:
            if reg.stopping:
                raise NBWorkersError(
                    f"nbworkers is stopping: nothing was stopped. A run still going when it "
                    f"stops is abandoned and its message ({message_id}) stays queued in the "
                    "file, delivered again at the next start"
                )
            found = self._running(seq)
            if found is None:
                self._refuse_waiting(seq, message_id)
                return False
            w, run = found
            if attempt is not None and run.message.attempt != attempt:
                return False  # the attempt asked about ended; another runs now
            first = run.stop is None
            if first:
                run.stop = StopRequest(message_id, retry, time.time())
            elif not retry:
                run.stop.retry = False
            if not retry:
                run.policy = dataclasses.replace(run.policy, retries=0)
            _ask(run, True)
            executor = self.executors[run.policy.executor]
            if executor.remote:
                self._end_now(w, run, executor)
            elif first:
                executor.stop(run)
            self.events.mark_changed(w.name)
        return True

    def _running(self, seq: int) -> tuple[WorkerState, Run] | None:
        for w in self.registry.workers.values():
            for run in w.runs.values():
                if run.message.seq == seq or (
                    run.messages is not None and any(m.seq == seq for m in run.messages)
                ):
                    return w, run  # a batch (--batch) stops as a unit
        return None

    def _refuse_waiting(self, seq: int, message_id: str) -> None:
        found = self.registry.paging.find(seq)  # only in the file (paging.py)
        for w in self.registry.workers.values():
            if any(m.seq == seq for m in w.waiting()) or (found and found[0] is w):
                raise NBWorkersError(
                    f"{message_id} is queued for {w.name!r}, not running: nw.stop stops a run "
                    f"going on. nw.cancel({message_id!r}) removes it from the queue"
                )

    def _end_now(self, w: WorkerState, run: Run, executor) -> None:
        """Settle ``run`` of a pool process or Dask task as stopped, and end it there (the
        lock is held): its run thread finds it abandoned and ends, and its slot is free."""
        run.timed_out = True  # abandoned: its run thread settles nothing (see Dispatch._loop)
        executor.stop(run)
        del w.runs[run.index]
        w.running -= 1
        w.live.discard(run.index)
        _ask(run, False)
        error = run.stop.headline() + executor.timeout_note() + "\n"
        self.outcomes.settle(w, run, make_trace(run, error, None))
        if not self.registry.stopping:
            self.wake(w, 0)


def _ask(run: Run, asked: bool) -> None:
    """Say to the messages of ``run`` (all of a batch's) whether a stop was asked."""
    for m in run.messages or (run.message,):
        m.stop_asked = asked
