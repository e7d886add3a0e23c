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
