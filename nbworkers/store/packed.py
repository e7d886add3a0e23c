"""Results by id, packed: one ``results`` row per worker per batch, not one per message.

A drain ends tens of thousands of messages a second; a row each (six columns) cost the writer
several microseconds a message and slowed the drain by a fifth or more (measured with
``benchmarks/core.py``). Packed, a batch's results for one worker are one row: the messages'
numbers (sorted, 8 bytes each), where each one's pickled result ends (8 bytes each: an empty
slice is a None result) and the pickles, compressed together (``body``: DuckDB keeps the
rows of a table in memory, and an hour of a drain's results is millions), and the rare failures
and notes as JSON. Finding one message's result reads the rows whose ``first_seq``/``last_seq``
range holds it, decompresses and bisects.
"""

from __future__ import annotations

import bisect
import json
import zlib
from array import array
from itertools import accumulate
from operator import itemgetter

from .rows import ResultRow

_INT64 = "q"


def pack(rows: list[tuple]) -> list[tuple]:
    """``ResultRow``-shaped tuples as packed rows: (first_seq, last_seq, worker, ended_at,
    count, body, failures), one per worker."""
    by_worker: dict[str, list[tuple]] = {}
    for row in rows:
        by_worker.setdefault(row[1], []).append(row)
    packed = []
    for worker, some in by_worker.items():
        some.sort(key=itemgetter(0))  # by seq: looked up by bisection
        datas = [r[4] or b"" for r in some]
        failures = {i: [r[3], r[5]] for i, r in enumerate(some) if r[3] is not None or r[5]}
        packed.append(
            (
                some[0][0],
                some[-1][0],
                worker,
                max(r[2] for r in some),
                len(some),
                zlib.compress(
                    array(_INT64, [r[0] for r in some]).tobytes()
                    + array(_INT64, accumulate(map(len, datas))).tobytes()
                    + b"".join(datas),
                    1,  # fast: the writer's time is the drain's
                ),
                json.dumps(failures) if failures else None,  # ASCII: lone surrogates escaped
            )
        )
    return packed


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
        error, note = json.loads(failures).get(str(i), (None, None))
    return ResultRow(numbers[i], worker, ended_at, error, chunk, note)


def find(packed_rows: list[tuple], seq: int) -> ResultRow | None:
    """The result of message ``seq`` in packed rows (worker, ended_at, count, body,
    failures) that may hold it."""
    for worker, ended_at, count, body, failures in packed_rows:
        numbers, offsets, data = _unpacked(count, body)
        i = bisect.bisect_left(numbers, seq)
        if i < len(numbers) and numbers[i] == seq:
            return _row(numbers, offsets, i, worker, ended_at, data, failures)
    return None


def unpack_range(packed_rows: list[tuple], first: int, last: int) -> list[ResultRow]:
    """The results of messages ``first`` to ``last`` in packed rows (as for ``find``)."""
    found = []
    for worker, ended_at, count, body, failures in packed_rows:
        numbers, offsets, data = _unpacked(count, body)
        for i in range(bisect.bisect_left(numbers, first), bisect.bisect_right(numbers, last)):
            found.append(_row(numbers, offsets, i, worker, ended_at, data, failures))
    return found
