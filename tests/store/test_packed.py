"""Results by id packed one row per worker per batch (store/packed.py)."""

from __future__ import annotations

import pickle

from nbworkers.store import packed
from nbworkers.store.rows import ResultRow


def rows_of(packed_rows):
    """Packed rows as the store reads them back (worker, ended_at, count, body, failures)."""
    return [(p[2], p[3], p[4], p[5], p[6]) for p in packed_rows]


def test_pack_and_find_every_kind_of_end():
    rows = [
        (9, "a", 5.0, None, pickle.dumps("nine"), None),
        (3, "a", 4.0, None, None, None),  # a None result
        (4, "b", 6.0, "Traceback...\nKeyError: '\udcff'", None, None),  # lone surrogate
        (7, "a", 7.0, None, None, "its result was not kept"),
    ]
    chunks = packed.pack(rows, 7.0)
    assert [(c[0], c[1], c[2], c[3]) for c in chunks] == [(3, 9, "a", 7.0), (4, 4, "b", 7.0)]
    back = rows_of(chunks)
    assert packed.find(back, 9) == ResultRow(9, "a", 7.0, None, pickle.dumps("nine"), None)
    assert packed.find(back, 3) == ResultRow(3, "a", 7.0, None, None, None)
    assert packed.find(back, 4).error == "Traceback...\nKeyError: '\udcff'"
    assert packed.find(back, 7).note == "its result was not kept"
    assert packed.find(back, 5) is None and packed.find(back, 10) is None
    assert sorted(r.seq for r in packed.unpack_range(back, 4, 9)) == [4, 7, 9]


def test_failures_of_one_cause_keep_their_frames_once_and_come_back_whole():
    head = 'Traceback (most recent call last):\n  File "<worker w #2>", line 2, in worker_w\n'
    tail = "    row[row['k']]\n    ~~~^^^^^^^^^^\n"
    errors = [f"{head}{tail}KeyError: 'key{i}'\n" for i in range(100)]
    rows = [(i, "w", 1.0, e, None, None) for i, e in enumerate(errors)]
    rows.append((100, "w", 1.0, "TimeoutError: took longer than 2 s\n", None, "a note"))
    rows.append((101, "w", 1.0, None, None, "only a note"))
    (chunk,) = packed.pack(rows, 2.0)
    failures = chunk[6]
    assert failures.count("worker_w") == 1  # the frames once, not once a message
    back = rows_of([chunk])
    for i, error in enumerate(errors):
        assert packed.find(back, i).error == error
    assert packed.find(back, 100)[3:] == ("TimeoutError: took longer than 2 s\n", None, "a note")
    assert packed.find(back, 101)[3:] == (None, None, "only a note")


def test_a_row_written_before_the_frames_were_shared_still_reads():
    import json
    import zlib
    from array import array

    body = array("q", [5]).tobytes() + array("q", [0]).tobytes()
    old = json.dumps({"0": ["Traceback...\nValueError: old\n", None]})
    back = [("w", 3.0, 1, zlib.compress(body, 1), old)]
    assert packed.find(back, 5) == ResultRow(
        5, "w", 3.0, "Traceback...\nValueError: old\n", None, None
    )


def test_a_row_written_with_the_heads_shared_by_message_still_reads():
    import json
    import zlib
    from array import array

    body = array("q", [5, 6]).tobytes() + array("q", [0, 0]).tobytes()
    head = 'Traceback (most recent call last):\n  File "<worker w #1>", line 1, in worker_w\n'
    old = json.dumps(
        {"heads": [head], "failed": {"0": [0, "KeyError: 'a'\n", None], "1": [-1, None, "n"]}}
    )
    back = [("w", 3.0, 2, zlib.compress(body, 1), old)]
    assert packed.find(back, 5).error == head + "KeyError: 'a'\n"
    assert packed.find(back, 6)[3:] == (None, None, "n")
