"""Batching: what the writer took from its pending lists (``Taken``: the runtime's objects)
made into the rows of one ``Batch`` for the store. Runs after the lock is released, so runs go
on meanwhile; no user code runs here (events, results and their reprs come ready-made).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from .rows import Batch, FanInRow, TraceRow, WorkerRow, storable

if TYPE_CHECKING:  # the runtime's objects, read here, never imported by the store
    from ..message import Message
    from ..trace import Trace


class Taken(NamedTuple):
    """What one batch took from the pending lists: the runtime's objects, kept to put them
    back if the write fails."""

    inserts: list[Message]
    updates: list[Message]
    acks: list[int]
    dead_inserts: list[tuple]  # DeadRow's fields, in order (engine/dead.py)
    dead_deletes: list[int]
    dead_discards: list[tuple[str, list[str] | None]]
    traces: list[Trace]
    workers: dict  # name -> WorkerState
    worker_rows: list[WorkerRow]  # made under the lock: a worker's counts change together
    next_seq: int | None
    rate_starts: list[tuple]
    results: list[tuple]  # ResultRow's fields (nw.result)
    fan_in_inserts: list[FanInRow]
    fan_in_deletes: list[int]
    prune_results_before: float | None
    results_ended_at: float | None


def make_batch(taken: Taken, kept: dict[str, int], traces_kept: int) -> Batch:
    """The rows of what was taken (the lock is not held: runs go on meanwhile); ``kept`` and
    ``traces_kept`` say how many traces of each worker to keep."""
    inserts, acks = cancelled(taken.inserts, taken.acks)
    return Batch(
        # Plain tuples in MessageRow's and UpdateRow's field order (see rows.py: the
        # garbage collector untracks them, not NamedTuples)
        inserts=[
            (
                m.seq,
                m.worker,
                m.enqueued_at_s,
                m.attempt,
                m.data,
                m.started,
                m.due_at_s,
                None if m.key is None else storable(m.key),
                m.priority,
                m.expires_at_s,
            )
            for m in inserts
        ],
        updates=[(m.seq, m.attempt, m.started, m.due_at_s) for m in taken.updates],
        acks=acks,
        # Made by the engine already, in DeadRow's field order (engine/dead.py); their texts
        # are made storable with their rows' columns (store/dead.py)
        dead_inserts=taken.dead_inserts,
        dead_deletes=taken.dead_deletes,
        dead_discards=taken.dead_discards,
        traces=trace_rows(taken.traces, kept, traces_kept),
        workers=taken.worker_rows,
        next_seq=taken.next_seq,
        rate_starts=taken.rate_starts,
        results=taken.results,  # their texts are stored as JSON (ASCII): no storable()
        fan_in_inserts=taken.fan_in_inserts,
        fan_in_deletes=taken.fan_in_deletes,
        prune_results_before=taken.prune_results_before,
        results_ended_at=taken.results_ended_at,
    )


# Pending traces or acks past which the writer drops what it will never write (``trim_traces``,
# ``trim_acks``): while runs outpace the writer, they would wait for its batch by the thousand
# (a drain at --concurrency 1 took a round of 20,000 messages in one batch, every run's trace
# and every message held until then: the peak stayed in the kernel's memory).
PENDING_TRIM = 1024


def trim_traces(traces: list[Trace], limits: dict[str, int], default: int) -> tuple[list, int]:
    """``traces`` (oldest first) without those no batch will write, older than each worker's
    newest kept (``newest``); and how many may wait before the next trim. (A --keep raised
    meanwhile keeps the newest of the old number, which is what memory keeps too,
    ``WorkerState.keep``.)"""
    kept = newest(traces, limits, default)
    kept.reverse()
    return kept, max(PENDING_TRIM, 2 * len(kept))


def trim_acks(inserts: list[Message], acks: list[int]) -> tuple[list, list, int]:
    """``cancelled``, and how many acks may wait before the next trim: as many more as an
    eighth of what this one left to look at, so that an ack pays a few steps of it however many
    inserts wait (a million queued while writes fail, say)."""
    inserts, acks = cancelled(inserts, acks)
    return inserts, acks, len(acks) + max(PENDING_TRIM, (len(inserts) + len(acks)) // 8)


def cancelled(inserts: list[Message], acks: list[int]) -> tuple[list[Message], list[int]]:
    """``inserts`` and ``acks`` without the messages that are in both: inserted and gone before
    they were written (every message of a drain whose runs outpace the writer), so neither
    their rows nor their deletes are made."""
    if not (inserts and acks):
        return inserts, acks
    acked = set(acks)
    gone = {m.seq for m in inserts if m.seq in acked}
    if not gone:
        return inserts, acks
    return [m for m in inserts if m.seq not in gone], [s for s in acks if s not in gone]


def newest(traces: list[Trace], limits: dict[str, int], default: int) -> list[Trace]:
    """The newest ``traces`` of each worker (``default``, or its ``--keep`` in ``limits``),
    newest first: the only ones that reach the file (older ones would be pruned at once)."""
    kept: dict[str, int] = {}
    found = []
    for t in reversed(traces):
        count = kept.get(t.worker, 0)
        if count < limits.get(t.worker, default):
            kept[t.worker] = count + 1
            found.append(t)
    return found


def trace_rows(traces: list[Trace], limits: dict[str, int], default: int) -> list[TraceRow]:
    """The newest traces of each worker (``newest``), ready for the store."""
    rows = []
    for t in newest(traces, limits, default):
        result, result_repr = t.stored_result()  # made by the run: no user code here
        calls = calls_text = None
        if t.calls is not None:
            calls, calls_text = t.calls.stored()  # plain values: no user code either
        rows.append(
            TraceRow(
                t.seq,
                t.worker,
                t.message_seq,
                t.started_at_s,
                t.duration,
                t.input_data,
                result,
                storable(result_repr),
                storable(t.stdout),
                storable(t.error),
                t.replay,
                t.attempt,
                t.timed_out,
                calls,
                storable(calls_text),
                t.message_seqs,
            )
        )
    return rows
