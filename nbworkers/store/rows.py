"""The rows the store reads and writes: named tuples of plain values for the runtime's state as
it is on disk (``MessageRow``, ``UpdateRow``, ``DeadRow``, ``DeadGroupRow``, ``TraceRow``,
``WorkerRow``),
everything loaded at start-up (``Loaded``), the changes of one transaction (``Batch``), and the
helpers that turn them into statement parameters (``storable`` text, ``columns`` and
``unnested`` for ``unnest``).

A store reads rows only, never the runtime's objects: the writer makes the rows (one tuple per
message) and the store turns them into columns. A row is read by position, in its NamedTuple's
field order: the writer makes a message's rows (``MessageRow``, ``UpdateRow``) as plain tuples,
because the garbage collector stops tracking a tuple of plain values and not a NamedTuple; at
200,000 messages a batch, NamedTuples cost two full collections (~200 ms more a batch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import itemgetter
from typing import NamedTuple

from ..fingerprint import error_line


class WorkerRow(NamedTuple):
    name: str
    paused: bool
    done: int
    failed: int
    last_run: float | None = None  # crons: when the schedule last fired (run or skip)
    skipped: int = 0  # crons: ticks skipped because the previous run was still going
    pause_reason: str | None = None  # why it was paused, when nbworkers paused it
    retried: int = 0  # failed runs that were tried again
    kind: str | None = None  # "worker" or "cron": what the name was last defined as
    keep: int | None = None  # how many traces it keeps (--keep N; None: traces_kept)


class TraceRow(NamedTuple):
    seq: int
    worker: str
    message_seq: int
    started_at: float
    duration: float
    input: bytes | None
    result: bytes | None
    result_repr: str
    stdout: str
    error: str | None
    replay: bool
    attempt: int = 1
    timed_out: bool = False
    calls: bytes | None = None  # its @nw.recorded calls, pickled (develop/recorded.py)
    calls_text: str | None = None  # the same without their values, as JSON, for nw.sql
    message_seqs: list[int] | None = None  # a batch's messages (--batch); None for one


class MessageRow(NamedTuple):
    """A queued message, as inserted and as loaded (the columns of ``messages``)."""

    seq: int
    worker: str
    enqueued_at: float
    attempt: int
    data: bytes
    started: bool
    due_at: float | None
    key: str | None
    priority: int = 0  # higher runs first (emit's priority=)
    expires_at: float | None = None  # when its own time to live ends (emit's ttl=)


# The SQL types of each row's columns, for ``unnested`` ("-": what DuckDB infers)
MESSAGE_TYPES = "- - - - - - DOUBLE VARCHAR INTEGER DOUBLE"
UPDATE_TYPES = "- - - DOUBLE"
DEAD_TYPES = "- - - - - VARCHAR - - VARCHAR INTEGER DOUBLE VARCHAR VARCHAR"


class SpillRow(NamedTuple):
    """Ready messages of a worker kept only on disk at start-up (engine/paging.py): the
    ``count`` of ``priority`` from seq ``first``."""

    worker: str
    priority: int
    count: int
    first: int
    oldest: float  # when the first of them was emitted (about: the last one loaded, if any)


class UpdateRow(NamedTuple):
    """A written message whose attempt, start or due time changed."""

    seq: int
    attempt: int
    started: bool
    due_at: float | None


class DeadRow(NamedTuple):
    """A dead letter (the columns of ``dead_letters``)."""

    seq: int
    worker: str
    enqueued_at: float
    attempt: int
    data: bytes
    key: str | None
    error: str
    died_at: float
    reason: str = "failed"  # "failed" (its last attempt failed) or "expired" (it never ran)
    priority: int = 0
    expires_at: float | None = None
    fingerprint: str | None = None  # its failure group (nbworkers/fingerprint.py)
    title: str | None = None  # the group's title


def letter_row(letter: tuple) -> DeadRow:
    """The ``DeadRow`` of a new dead letter (``Batch.dead_inserts``: DeadRow's fields, then its
    own error line or None), its error whole (its group's traceback)."""
    return DeadRow._make(letter[:-1])


def letter_line(letter: tuple) -> str | None:
    """A new dead letter's own error line, if its run thread knew it (``fingerprint.own_line``)."""
    return letter[-1]


def kept_error(error: str, line: str | None) -> str:
    """What a dead letter keeps of its ``error``: its own ``line``, else cut from the text."""
    return error_line(error) if line is None else line


class DeadGroupRow(NamedTuple):
    """One failure group of a worker's dead letters as the file holds them: how many, when
    they died, its title and whole traceback, and its smallest few seqs (nw.failures)."""

    worker: str
    fingerprint: str
    title: str
    traceback: str
    count: int
    expired: int  # of them, those that expired before they ran
    first_died: float
    last_died: float
    example_seqs: list[int]


class ResultRow(NamedTuple):
    """How an ended message ended, kept by id for ``nw.result`` (the columns of ``results``)."""

    seq: int
    worker: str
    ended_at: float
    error: str | None  # its last traceback (a dead letter), None when done
    data: bytes | None  # its result pickled; None for None (or not kept: see note)
    note: str | None  # why a result could not be kept, else None


class FanInRow(NamedTuple):
    """A fan-in group still open (``emit_many(..., then=)``): messages ``first_seq`` to
    ``first_seq + count - 1`` of ``worker``; ``then`` gets one event once all have ended."""

    first_seq: int
    count: int
    worker: str
    then: str
    created_at: float


@dataclass
class Loaded:
    """Everything the runtime needs from disk at start-up."""

    next_seq: int
    workers: list[WorkerRow]
    messages: list[MessageRow]  # oldest first
    traces: list[TraceRow]  # newest first
    dead_groups: list[DeadGroupRow]  # the dead letters, counted by group (not read)
    # The starts of rate-limited runs the file holds: (worker, started_at), oldest first.
    rate_starts: list[tuple[str, float]] = field(default_factory=list)
    fan_ins: list[FanInRow] = field(default_factory=list)  # open groups, oldest first
    fan_in_results: list[ResultRow] = field(default_factory=list)  # their ended members
    # Ready messages beyond each worker's window, left on disk (engine/paging.py).
    spilled: list[SpillRow] = field(default_factory=list)
    spilled_keys: list[tuple[int, str, str]] = field(default_factory=list)  # (seq, worker, key)


@dataclass
class Batch:
    """Changes for one transaction, as rows, applied in this order (a message inserted and
    acked before it was written is in neither: ``batching.make_batch``)."""

    inserts: list[tuple] = field(default_factory=list)  # MessageRow's fields, in order
    updates: list[tuple] = field(default_factory=list)  # UpdateRow's fields, in order
    acks: list[int] = field(default_factory=list)  # seqs of messages that left the queue
    # DeadRow's fields in order, then the own error line if known (None: cut from the error)
    dead_inserts: list[tuple] = field(default_factory=list)
    dead_deletes: list[int] = field(default_factory=list)  # seqs of dead letters to drop
    # Dead letters to drop by group, before this batch's dead_inserts: (worker, the groups'
    # fingerprints, or None for all of the worker's).
    dead_discards: list[tuple[str, list[str] | None]] = field(default_factory=list)
    traces: list[TraceRow] = field(default_factory=list)
    workers: list[WorkerRow] = field(default_factory=list)
    next_seq: int | None = None
    # Starts of rate-limited runs: (worker, started_at, the rate's period in seconds); a
    # store keeps those of the last period (RateStartRow's fields, in order).
    rate_starts: list[tuple] = field(default_factory=list)
    results: list[tuple] = field(default_factory=list)  # ResultRow's fields, in order
    fan_in_inserts: list[FanInRow] = field(default_factory=list)
    fan_in_deletes: list[int] = field(default_factory=list)  # first seqs of ended groups
    prune_results_before: float | None = None  # drop results that ended before (nw.result)
    results_ended_at: float | None = None  # when ``results`` ended (their batch was taken)

    def __bool__(self) -> bool:
        return bool(
            self.inserts
            or self.updates
            or self.acks
            or self.dead_inserts
            or self.dead_deletes
            or self.dead_discards
            or self.traces
            or self.workers
            or self.next_seq is not None
            or bool(self.rate_starts)
            or self.results
            or self.fan_in_inserts
            or self.fan_in_deletes
        )


def storable(value: str | None) -> str | None:
    """``value`` storable as UTF-8: lone surrogates (undecodable file names) are escaped."""
    if value is None:
        return None
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def columns(rows: list[tuple]) -> list[list]:
    """Rows as one list per field, in field order (the ``unnest`` parameters)."""
    # Not zip(*rows): its iterator per row is an object the garbage collector tracks.
    return [list(map(itemgetter(i), rows)) for i in range(len(rows[0]))] if rows else []


def unnested(types: str, cols: list[list], names: str = "") -> tuple[str, list]:
    """The SELECT list that makes ``cols`` (``columns``) rows again in SQL, and its parameters.

    Each column is ``unnest($i)`` of its values, except one whose values are all equal: that
    one is passed once, as ``$i``, and repeated by DuckDB. DuckDB converts every Python value
    it is given (about a microsecond each, with the GIL held, while the runs wait), and a
    drain's batch repeats the same worker name, attempt, fingerprint, title... in every row:
    passing them once halves the cost of a dead letter's row. The first column (the seq) is
    always unnested, so that the SELECT gives one row per row.

    ``types`` names each column's SQL type, space-separated, ``-`` for none (DuckDB infers
    it): ``"- VARCHAR DOUBLE"``. A list of Nones needs one. ``names``, space-separated, name
    the columns (``AS seq``) when given."""
    parts = []
    params = []
    aliases = [f" AS {name}" for name in names.split()] if names else [""] * len(cols)
    for i, (col, sql_type, alias) in enumerate(
        zip(cols, types.split(), aliases, strict=True), start=1
    ):
        cast = "" if sql_type == "-" else f"::{sql_type}"
        first = col[0]
        if i > 1 and col.count(first) == len(col):
            parts.append(f"${i}{cast}{alias}")
            params.append(first)
        else:
            parts.append(f"unnest(${i}{cast}[]){alias}" if cast else f"unnest(${i}){alias}")
            params.append(col)
    return ", ".join(parts), params
