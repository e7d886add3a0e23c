"""Batches (``--batch N``): one run takes up to N ready messages, its handler receives the list
of their events as ``event`` and the list of their messages as ``message``, and the batch ends
as a unit: done together, or each message's attempt failed together (retried, then each a
dead letter with the batch's error). It leaves one trace, whose input is the list of events
and whose ``message_ids`` say which messages it covered.

When a batch starts is the gate's business (``gate.py``); here is what happens to one once it
has: ``take`` (dispatch, lock held), ``load_events`` and ``handler_of`` (its run thread),
``settle`` and ``park`` (outcomes, lock held).
"""

from __future__ import annotations

import copy
import pickle

from .. import handlers
from ..message import Message, load_event
from ..trace import Trace
from .dead import letter as dead_letter
from .worker import Run, WorkerState


def take(w: WorkerState, run: Run, writer) -> None:
    """Make ``run``, which took the first message, a batch: up to ``policy.batch`` messages in
    all, taken with ``WorkerState.take`` (the lock is held; the gate said a batch may start)."""
    messages = [run.message]
    size = run.policy.batch
    while len(messages) < size and w.has_ready():
        message = w.take()
        message.started = True
        writer.update(message)
        messages.append(message)
    run.messages = messages
    w.batch_extra += len(messages) - 1
    if w.gate is not None:
        w.gate.batch_taken(w)


def load_events(run: Run) -> list:
    """The events of a batch, unpickled (user code: in the run's thread), and their list
    pickled for the trace."""
    events = [load_event(m.data) for m in run.messages]
    try:
        run.input_data = pickle.dumps(events, protocol=pickle.HIGHEST_PROTOCOL)
    # A __reduce__ that fails now though it worked at emit time: the trace shows no input.
    except Exception:  # noqa: BLE001
        run.input_data = None
    return events


def handler_of(handler: handlers.Handler, run: Run, remote: bool) -> handlers.Handler:
    """The handler of one batch run: the worker's code called with the list of messages. A
    run in another process gets copies without their pickled events (as one message does)."""
    messages = run.messages
    if remote:
        messages = [
            Message(m.seq, m.worker, m.enqueued_at_s, m.attempt, b"", None, m.key) for m in messages
        ]
    return handlers.from_batch(handler, messages)


def _batch_trace(run: Run, trace: Trace) -> None:
    """Make ``trace`` (made for the batch's first message) the batch's."""
    messages = run.messages
    trace.input_data = run.input_data
    trace.message_seqs = [m.seq for m in messages]
    trace.attempt = max(m.attempt for m in messages)


def _ended(w: WorkerState, run: Run) -> None:
    w.batch_extra -= len(run.messages) - 1
    for m in run.messages:
        w.parked_traced.discard(m.seq)


def settle(outcomes, w: WorkerState, run: Run, trace: Trace) -> None:
    """A batch run ended (the lock is held): every message done, or every attempt failed."""
    _ended(w, run)
    _batch_trace(run, trace)
    messages = run.messages
    writer = outcomes.writer
    if trace.error is None:
        w.done += len(messages)
        w.failing = 0
        for m in messages:
            w.forget_key(m)
            outcomes.results.ended(w, m, trace)  # each message's result: the batch's
        writer.ack([m.seq for m in messages])
    else:
        w.failing += 1
        dead = []
        # Backwards: retries with no backoff go to the front of the queue, one by one, so
        # that they end up there in the batch's order.
        for index in range(len(messages) - 1, -1, -1):
            m = messages[index]
            member = copy.copy(run)
            member.message, member.messages, member.batch_index = m, None, index
            if not outcomes.hooks.after_failure_took(w, member, trace):
                dead.append(m)
        now = outcomes.registry.clock()
        for m in reversed(dead):
            w.failed += 1
            w.forget_key(m)
            reason = "failed" if run.stop is None else "stopped"
            letter = dead_letter(m, trace.error, now, reason, trace.failure)
            w.dead.add(letter)
            writer.dead(letter)
            outcomes.results.ended(w, m, trace)
    writer.worker_changed(w)
    outcomes.record(w, trace)
    outcomes.events.after_change(w)


def park(outcomes, w: WorkerState, run: Run, reason: str, trace: Trace) -> None:
    """A batch whose events cannot all be unpickled yet is parked whole, with one trace."""
    first_time = any(m.seq not in w.parked_traced for m in run.messages)
    w.batch_extra -= len(run.messages) - 1
    _batch_trace(run, trace)
    for m in run.messages:
        m.started = False  # it never really ran
        outcomes.writer.update(m)
        w.parked.append((m, reason))
        w.parked_traced.add(m.seq)
    if first_time:
        outcomes.record(w, trace)
    outcomes.events.after_change(w)


def messages_of(trace: Trace, name: str):
    """What ``message`` was for the run of ``trace``, as a replay gives it: the list of the
    batch's messages for a batch, else its one message."""
    if trace.message_seqs is None:
        return Message(trace.message_seq, name, trace.started_at_s, trace.attempt, b"")
    at, attempt = trace.started_at_s, trace.attempt
    return [Message(seq, name, at, attempt, b"") for seq in trace.message_seqs]
