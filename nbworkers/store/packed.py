"""Results by id, packed: one ``results`` row per worker per batch, not one per message.

A drain ends tens of thousands of messages a second; a row each (six columns) cost the writer
several microseconds a message and slowed the drain by a fifth or more (measured with
``benchmarks/core.py``). Packed, a batch's results for one worker are one row: the messages'
numbers (8 bytes each), where each one's pickled result ends (8 bytes each: an empty
slice is a None result) and the pickles, compressed together (``body``: DuckDB keeps the
rows of a table in memory, and an hour of a drain's results is millions), and the rare failures
and notes as JSON. Finding one message's result reads the rows whose ``first_seq``/``last_seq``
range holds it, decompresses and scans.
"""

from __future__ import annotations

import json
import zlib
from array import array
from bisect import bisect_left
from itertools import accumulate
from operator import itemgetter

from .rows import ResultRow

_INT64 = "q"
_SEQ, _WORKER, _ERROR, _DATA, _NOTE = map(itemgetter, (0, 1, 3, 4, 5))


def pack(rows: list[tuple], ended_at: float) -> list[tuple]:
    """``ResultRow``-shaped tuples as packed rows: (first_seq, last_seq, worker, ended_at,
    count, body, failures), one per worker. Column by column, in C where it can (``map``,
    ``itemgetter``, ``array``): the writer packs every message of a drain."""
    workers = list(map(_WORKER, rows))
    if workers.count(workers[0]) == len(workers):  # usually: one worker a batch
        groups = {workers[0]: rows}
    else:
        groups = {}
        for row, worker in zip(rows, workers, strict=True):
            groups.setdefault(worker, []).append(row)
    return [_pack(worker, some, ended_at) for worker, some in groups.items()]


def _pack(worker: str, rows: list[tuple], ended_at: float) -> tuple:
    seqs = array(_INT64, map(_SEQ, rows))
    datas = [d or b"" for d in map(_DATA, rows)]
    errors, notes = list(map(_ERROR, rows)), list(map(_NOTE, rows))
    failures = None
    if errors.count(None) != len(errors) or notes.count(None) != len(notes):
        failures = _failures(errors, notes)
    body = seqs.tobytes() + array(_INT64, accumulate(map(len, datas))).tobytes()
    return (
        min(seqs),
        max(seqs),
        worker,
        ended_at,
        len(seqs),
        zlib.compress(body + b"".join(datas), 1),  # level 1: the writer's time is the drain's
        failures,
    )


def _failures(errors: list[str | None], notes: list[str | None]) -> str:
    """The failures and notes of a packed row as JSON (ASCII: lone surrogates escaped): the
    tracebacks' frames (``heads``) once each, then column by column for each message that
    failed or has a note: its index (``at``, ascending), its head's index (-1: none), the rest
    of its traceback (its own exception line) and its note. A drain of failures of one cause
    writes one traceback's frames a batch, not one a message; and no object a message (the
    columns are lists of strings and numbers, which ``json`` encodes in C)."""
    heads: dict[str, int] = {}
    at, head, rest, note_of = [], [], [], []
    for i, (error, note) in enumerate(zip(errors, notes, strict=True)):
        if error:
            cut = _head_end(error)
            at.append(i)
            head.append(heads.setdefault(error[:cut], len(heads)))
            rest.append(error[cut:])
            note_of.append(note)
        elif note:
            at.append(i)
            head.append(-1)
            rest.append(None)
            note_of.append(note)
    return json.dumps({"heads": list(heads), "at": at, "head": head, "rest": rest, "note": note_of})


def _head_end(error: str) -> int:
    """Where a traceback's frames end: after its last frame's line (0 for a text without)."""
    last = error.rfind('\n  File "')
    if last < 0:
        return 0
    end = error.find("\n", last + 1)
    return len(error) if end < 0 else end + 1


def _failure(failures: str, i: int) -> tuple[str | None, str | None]:
    """The error and note of message ``i`` of a packed row's failures (any format)."""
    found = json.loads(failures)
    if "at" in found:
        k = bisect_left(found["at"], i)
        if k == len(found["at"]) or found["at"][k] != i:
            return None, None
        head, rest = found["head"][k], found["rest"][k]
        return (None if rest is None else found["heads"][head] + rest), found["note"][k]
    if "failed" in found:  # as written before the columns: {i: [head, rest, note]}
        entry = found["failed"].get(str(i))
        if entry is None:
            return None, None
        head, rest, note = entry
        return (None if rest is None else found["heads"][head] + rest), note
    # as written before the heads were shared: {i: [error, note]}
    return tuple(found.get(str(i), (None, None)))


def _unpacked(count: int, body: bytes) -> tuple[array, array, bytes]:
    """The numbers, end offsets and pickles of a packed row."""
    raw = zlib.decompress(body)
    numbers, offsets = array(_INT64), array(_INT64)
    numbers.frombytes(raw[: 8 * count])
    offsets.frombytes(raw[8 * count : 16 * count])
    return numbers, offsets, raw[16 * count :]


def _row(numbers, offsets, i, worker, ended_at, data, failures) -> ResultRow:
    start = offsets[i - 1] if i else 0
    chunk = data[start : offsets[i]] or None
    error = note = None
    if failures is not None:
        error, note = _failure(failures, i)
    return ResultRow(numbers[i], worker, ended_at, error, chunk, note)


def find(packed_rows: list[tuple], seq: int) -> ResultRow | None:
    """The result of message ``seq`` in packed rows (worker, ended_at, count, body,
    failures) that may hold it."""
    for worker, ended_at, count, body, failures in packed_rows:
        numbers, offsets, data = _unpacked(count, body)
        try:
            i = numbers.index(seq)  # a scan in C: the numbers are in the order they ended
        except ValueError:
            continue
        return _row(numbers, offsets, i, worker, ended_at, data, failures)
    return None


def unpack_range(packed_rows: list[tuple], first: int, last: int) -> list[ResultRow]:
    """The results of messages ``first`` to ``last`` in packed rows (as for ``find``)."""
    found = []
    for worker, ended_at, count, body, failures in packed_rows:
        numbers, offsets, data = _unpacked(count, body)
        for i, seq in enumerate(numbers):
            if first <= seq <= last:
                found.append(_row(numbers, offsets, i, worker, ended_at, data, failures))
    return found
