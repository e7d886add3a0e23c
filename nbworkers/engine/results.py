"""Results by id: ``nw.result(message_id)``.

Every message that ends (done, a dead letter, a cron run, or removed before it ran) leaves
one row for the writer: its result pickled (made by its run's thread: see ``trace.by_id``; NULL
for None) or its traceback. The row goes in the same batch as the message's acknowledgement,
so the file never has a message gone without how it ended. Rows are kept
``results_kept_s`` (the writer prunes older ones), beyond the last traces, across restarts.

``result`` waits in memory: a waiter is registered under the lock before anything is read,
and ``ended`` (called under the lock when a message is settled) wakes it. A message that
ended before is read from the database once, after a flush; nothing polls.
"""

from __future__ import annotations

import threading
import time

from ..errors import ArgumentTypeError, ArgumentValueError, MessageFailed, NBWorkersError
from ..message import ClassNotDefined, Message, load_event, parse_id
from ..message import message_id as id_of
from .policy import _number
from .registry import Registry
from .worker import WorkerState

# What a waiter holds when the runtime stopped before its message ended.
_STOPPED = "stopped"
# The error a message removed before it ran ends with (nw.cancel, nw.purge).
REMOVED = "Cancelled: the message was removed from its queue before it ran (nw.cancel or nw.purge)"


class _Waiter:
    """One ``nw.result`` call waiting: ``outcome`` is set (a result row) before ``event``."""

    __slots__ = ("event", "outcome")

    def __init__(self):
        self.event = threading.Event()
        self.outcome = None


class Results:
    """Results kept by id, and the calls of ``nw.result`` waiting, for one engine."""

    def __init__(self, registry: Registry, writer, store):
        self.registry = registry
        self.writer = writer
        self.store = store
        self.waiters: dict[int, list[_Waiter]] = {}  # by message seq
        self.fan_in = None  # FanIn, told of every end (set by the runtime)

    # ----- messages ending (the lock is held) ------------------------------------------------

    def ended(self, w: WorkerState, message: Message, trace) -> None:
        """``message`` of ``w`` ended for good, as ``trace`` says (done, or failed for good)."""
        data, note = trace.by_id()  # plain values made by the run: no user code here
        # ended_at: the writer stamps its batch (a clock read a message costs a drain)
        row = (message.seq, w.name, None, trace.error, data, note)
        self.writer.result(row)
        if self.waiters or self.fan_in.groups:  # (_ended, one call less: a drain's hot path)
            self._tell(row)

    def removed(self, w: WorkerState, messages: list[Message], error: str = REMOVED) -> None:
        """``messages`` of ``w`` ended without a run that settles them (cancel and purge; any
        other way a message leaves its queue for good must call this too, with why as
        ``error``, such as an expiry): ``nw.result`` raises ``MessageFailed`` with ``error``,
        and a fan-in group counts them as failed."""
        self.removed_seqs(w, [m.seq for m in messages], error)

    def removed_seqs(self, w: WorkerState, seqs: list[int], error: str = REMOVED) -> None:
        """``removed`` for the messages numbered ``seqs`` (spilled ones: engine/paging.py)."""
        for seq in seqs:
            self._ended((seq, w.name, None, error, None, None))

    def _ended(self, row: tuple) -> None:
        self.writer.result(row)
        self._tell(row)

    def _tell(self, row: tuple) -> None:
        """The ``nw.result`` calls waiting for the message of ``row`` and its fan-in group."""
        if self.waiters:
            for waiter in self.waiters.pop(row[0], ()):
                waiter.outcome = row
                waiter.event.set()
        if self.fan_in.groups:
            self.fan_in.ended(row)

    def stop(self) -> None:
        """The runtime stops: every ``nw.result`` still waiting returns (and says so)."""
        for waiters in self.waiters.values():
            for waiter in waiters:
                waiter.outcome = _STOPPED
                waiter.event.set()
        self.waiters.clear()

    # ----- nw.result ---------------------------------------------------------------------------

    def result(self, message_id: str, timeout: float | None = 30):
        """Wait for message ``message_id`` to end; its result (a fresh copy), or
        ``MessageFailed`` (a dead letter), or ``TimeoutError``."""
        if not isinstance(message_id, str):
            raise ArgumentTypeError(
                f"nw.result: give a message id such as 'm12' (what emit returned), not "
                f"{type(message_id).__name__}"
            )
        seq = parse_id(message_id, "m")
        if timeout is not None and (not _number(timeout) or timeout < 0):
            raise ArgumentValueError(
                f"nw.result: timeout must be seconds, 0 or more (or None: wait for ever), "
                f"not {timeout!r}"
            )
        deadline = None if timeout is None else time.monotonic() + timeout
        reg = self.registry
        waiter = _Waiter()
        with reg.lock:
            reg.check_running()
            if seq >= self.writer.next_seq:
                raise NBWorkersError(
                    f"nw.result: no message {message_id} was ever emitted to this database "
                    f"({self.store.path!r}; the ids issued so far are below "
                    f"{id_of(self.writer.next_seq)}). Check the id, or "
                    "%config NBWorkers.db_path if it was emitted to another file."
                )
            self.waiters.setdefault(seq, []).append(waiter)
        try:
            outcome = waiter.outcome
            if outcome is None:
                # Everything recorded until now reaches the file: what ended before the waiter
                # was registered is there; what ends from now on wakes it.
                self.writer.flush()
                outcome = waiter.outcome
            if outcome is None:
                row, queued_for = self.store.result_of(seq)
                outcome = waiter.outcome  # it may have ended meanwhile
            if outcome is None:
                if row is not None:
                    outcome = self._unexpired(message_id, row)
                elif queued_for is None:
                    raise NBWorkersError(self._unknown(message_id))
                else:
                    left = None if deadline is None else max(0.0, deadline - time.monotonic())
                    if not waiter.event.wait(left):
                        raise TimeoutError(
                            f"nw.result: {message_id} has not ended within {timeout:g} s: it is "
                            f"still queued or running for {queued_for!r}. Wait longer "
                            f"(timeout=None waits for ever), or look at "
                            f"nw.messages({queued_for!r}) and nw.counts({queued_for!r})."
                        )
                    outcome = waiter.outcome
        finally:
            with reg.lock:
                waiters = self.waiters.get(seq)
                if waiters is not None and waiter in waiters:
                    waiters.remove(waiter)
                    if not waiters:
                        del self.waiters[seq]
        return _answer(message_id, outcome)

    def _unexpired(self, message_id: str, row: tuple) -> tuple:
        kept = self.registry.settings.results_kept_s
        ended_at = row[2]  # None: a dead letter from before results were kept
        if ended_at is not None and ended_at < self.registry.clock() - kept:
            raise NBWorkersError(
                f"nw.result: the result of {message_id} is no longer kept: it ended "
                f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(ended_at))}, more than "
                f"NBWorkers.results_kept_s ({kept:g} s) ago. Raise that option to keep "
                "results longer."
            )
        return row

    def _unknown(self, message_id: str) -> str:
        kept = self.registry.settings.results_kept_s
        return (
            f"nw.result: no result is kept for {message_id}, and it is not queued or running: "
            f"it ended more than NBWorkers.results_kept_s ({kept:g} s) ago and its result was "
            "pruned, or it ended before this database kept results (an older nbworkers), or "
            f"{message_id} is not a message's id (traces are numbered in the same sequence). "
            "Results are kept by id for results_kept_s after their message ends."
        )


def _answer(message_id: str, outcome):
    """What ``nw.result`` returns or raises for how the message ended."""
    if outcome is _STOPPED:
        raise NBWorkersError(
            f"nw.result: nbworkers stopped while waiting for {message_id} (nw.shutdown, "
            "%unload_ext or a new db_path); the message is kept and runs after the next start: "
            "call nw.result again then"
        )
    _seq, worker, _ended_at, error, data, note = outcome
    if error is not None:
        raise MessageFailed(message_id, worker, error)
    if note is not None:
        raise NBWorkersError(f"nw.result: {message_id} (to {worker!r}) is done, but {note}")
    if data is None:
        return None
    try:
        return load_event(data)
    except ClassNotDefined as exc:
        raise NBWorkersError(
            f"nw.result: the result of {message_id} cannot be unpickled yet: {exc}"
        ) from exc
    except Exception as exc:
        raise NBWorkersError(
            f"nw.result: the result of {message_id} cannot be unpickled "
            f"({type(exc).__name__}: {exc})"
        ) from exc
