"""Rows written column by column, a column whose values are all equal passed once
(``rows.unnested``): what DuckDB holds afterwards is exactly the rows given, whichever columns
happened to be constant (one row, one worker, no keys, the same event every time...)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbworkers.store import Batch, DuckDBStore, MessageRow
from nbworkers.store.rows import DeadRow, UpdateRow, columns, unnested

# Small pools, so that a column is often the same in every row, and often not
_floats = st.sampled_from([1.5, 2.25, 1e9])
_maybe_float = st.one_of(st.none(), _floats)
_ints = st.sampled_from([0, 1, 7])
_text = st.sampled_from(["a", "b", "é\u2603"])
_maybe_text = st.one_of(st.none(), _text)
_data = st.sampled_from([b"x", b"", b"\x00\xff"])


@st.composite
def message_rows(draw):
    n = draw(st.integers(1, 6))
    return [
        MessageRow(
            seq,
            draw(_text),
            draw(_floats),
            draw(_ints),
            draw(_data),
            draw(st.booleans()),
            draw(_maybe_float),
            draw(_maybe_text),
            draw(_ints),
            draw(_maybe_float),
        )
        for seq in range(1, n + 1)
    ]


@given(message_rows(), st.data())
@settings(max_examples=60, deadline=None)
def test_messages_and_their_updates_are_stored_as_given(rows, data):
    store = DuckDBStore(":memory:")
    try:
        store.apply(Batch(inserts=rows, next_seq=len(rows) + 1))
        changed = data.draw(st.lists(st.sampled_from(rows), unique=True, min_size=1))
        updates = [
            UpdateRow(m.seq, data.draw(_ints), data.draw(st.booleans()), data.draw(_maybe_float))
            for m in changed
        ]
        store.apply(Batch(updates=updates))
        by_seq = {u.seq: u for u in updates}
        expected = [
            m._replace(attempt=u.attempt, started=u.started, due_at=u.due_at)
            if (u := by_seq.get(m.seq))
            else m
            for m in rows
        ]
        loaded = store.load().messages
        assert sorted(map(tuple, loaded)) == sorted(map(tuple, expected))
    finally:
        store.close()


@given(st.integers(1, 5), st.data())
@settings(max_examples=40, deadline=None)
def test_dead_letters_are_stored_as_given(n, data):
    rows = [
        DeadRow(
            seq,
            "w",
            data.draw(_floats),
            data.draw(_ints),
            data.draw(_data),
            data.draw(_maybe_text),
            data.draw(st.sampled_from(["KeyError: 'a'", "ValueError: 2"])),
            data.draw(_floats),
            data.draw(st.sampled_from(["failed", "expired"])),
            data.draw(_ints),
            data.draw(_maybe_float),
            data.draw(st.sampled_from(["0123456789ab", "ba9876543210"])),
            data.draw(st.sampled_from(["KeyError: 'a' at line 2", "ValueError: <n>"])),
        )
        for seq in range(1, n + 1)
    ]
    store = DuckDBStore(":memory:")
    try:
        # Each letter's own line given (as a thread run knows it) or None (cut from its error)
        letters = [(*row, data.draw(st.sampled_from([None, row.error]))) for row in rows]
        store.apply(Batch(dead_inserts=letters))
        stored = [row for chunk in store.dead_rows("w") for row in chunk]
        assert sorted(stored) == sorted(rows)
    finally:
        store.close()


def test_a_column_of_equal_values_is_passed_once_and_the_first_always_unnested():
    select, params = unnested("- VARCHAR DOUBLE", columns([(1, "w", None), (2, "w", None)]))
    assert select == "unnest($1), $2::VARCHAR, $3::DOUBLE"
    assert params == [[1, 2], "w", None]
    # One row: every column is "constant", yet the first stays a list (one row, not zero)
    select, params = unnested("- -", columns([(5, "x")]), "seq name")
    assert select == "unnest($1) AS seq, $2 AS name"
    assert params == [[5], "x"]


def test_the_types_must_name_every_column():
    with pytest.raises(ValueError):
        unnested("- -", columns([(1, "w", None)]))
