"""The queued messages read back (store/queued.py): each worker's window at start-up and its
spilled messages a page at a time, the same from DuckDB and from the MemoryStore, whatever the
priorities, delayed rows and other workers' messages between them."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbworkers.store import Batch, DuckDBStore, MemoryStore, MessageRow


def row(seq, worker="w", priority=0, due_at=None, key=None) -> tuple:
    return tuple(MessageRow(seq, worker, 1.0, 1, b"x", False, due_at, key, priority, None))


@pytest.fixture(params=["duckdb", "memory"])
def store(request, tmp_path):
    s = DuckDBStore(str(tmp_path / "q.duckdb")) if request.param == "duckdb" else MemoryStore()
    yield s
    s.close()


def run_order(rows: list[tuple], worker: str) -> list[int]:
    ready = [r for r in rows if r[1] == worker and r[6] is None]
    return [r[0] for r in sorted(ready, key=lambda r: (-r[8], r[0]))]


def test_a_page_reads_past_other_workers_messages_in_ranges_that_double(store):
    # One message of "w" among every 5,000 of "other": the first range holds none of w's, so
    # the read goes on, range after range, up to the last seq there is.
    rows = [row(seq, "w" if seq % 5000 == 0 else "other") for seq in range(1, 40_001)]
    store.apply(Batch(inserts=rows))
    page = store.queued_page("w", 0, 1, 3)
    assert [r.seq for r in page] == [5000, 10_000, 15_000]
    assert [r.seq for r in store.queued_page("w", 0, 15_001, 100)] == [
        20_000,
        25_000,
        30_000,
        35_000,
        40_000,
    ]
    assert store.queued_page("w", 0, 40_001, 10) == []
    assert [r.seq for r in store.queued_page("w", 0, 1, 2, last=40_000)] == [5000, 10_000]


def test_a_page_leaves_out_delayed_rows_and_other_priorities(store):
    store.apply(
        Batch(
            inserts=[
                row(1),
                row(2, priority=3),
                row(3, due_at=5.0),
                row(4),
                row(5, priority=3),
                row(6),
            ]
        )
    )
    assert [r.seq for r in store.queued_page("w", 0, 1, 10)] == [1, 4, 6]
    assert [r.seq for r in store.queued_page("w", 3, 1, 10)] == [2, 5]
    assert store.queued_seqs("w", 0, 2, 5, 10) == [4]
    assert store.queued_row(3).due_at == 5.0 and store.queued_row(99) is None


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["w", "v"]),
            st.sampled_from([0, 0, 0, 2, -1]),
            st.booleans(),
            st.sampled_from([None, None, None, "k"]),
        ),
        max_size=60,
    ),
    st.integers(1, 12),
)
def test_the_window_loaded_and_the_lines_left_account_for_every_row(tmp_path_factory, made, window):
    rows = [
        row(seq, worker, priority, 9.0 if delayed else None, key and f"{key}{seq}")
        for seq, (worker, priority, delayed, key) in enumerate(made, start=1)
    ]
    random.Random(len(rows)).shuffle(rows)  # the order of inserts does not matter
    folder = tmp_path_factory.mktemp("q")
    for store in (DuckDBStore(str(folder / "q.duckdb")), MemoryStore()):
        try:
            if rows:
                store.apply(Batch(inserts=rows))
            loaded = store.load(window)
            by_seq = {r.seq: r for r in loaded.messages}
            for worker in ("w", "v"):
                order = run_order(rows, worker)
                kept = [seq for seq in order if seq in by_seq]
                assert kept == order[:window]  # the first ones in run order, all of them
                lines = [s for s in loaded.spilled if s.worker == worker]
                rest = order[window:]
                assert sum(s.count for s in lines) == len(rest)
                for line in lines:  # each line is the rest of its priority, from its first
                    mine = [q for q in rest if by_priority(rows, q) == line.priority]
                    assert mine and min(mine) >= line.first and len(mine) == line.count
                    assert [
                        r.seq for r in store.queued_page(worker, line.priority, line.first, 99)
                    ] == mine
            delayed = {r[0] for r in rows if r[6] is not None}
            assert delayed <= set(by_seq)  # delayed rows are always loaded
            keyed = {
                (r[0], r[1], r[7]) for r in rows if r[7] and r[6] is None and r[0] not in by_seq
            }
            assert set(loaded.spilled_keys) == keyed
        finally:
            store.close()


def by_priority(rows, seq) -> int:
    return next(r[8] for r in rows if r[0] == seq)


def test_without_a_window_everything_is_loaded(store):
    store.apply(Batch(inserts=[row(seq) for seq in range(1, 30)]))
    loaded = store.load()
    assert len(loaded.messages) == 29 and loaded.spilled == [] and loaded.spilled_keys == []
