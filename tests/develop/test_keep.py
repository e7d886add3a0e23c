"""--keep N / keep=N: how many traces a worker keeps, in memory and on disk, across restarts."""

from __future__ import annotations

import pytest

from nbworkers import handlers
from nbworkers.engine.policy import Policy
from nbworkers.errors import ArgumentValueError
from nbworkers.store import Batch, DuckDBStore, MemoryStore, TraceRow, WorkerRow
from nbworkers.trace import NOT_COPIED
from tests.conftest import open_runtime


def wait_for(kernel, expr: str, timeout: float = 10) -> None:
    """Wait until ``expr`` is true in the kernel (no fixed sleeps)."""
    kernel.ok(
        f"import time as _t\n_d = _t.time() + {timeout}\n"
        f"while not ({expr}) and _t.time() < _d: _t.sleep(0.02)\n"
        f"assert {expr}, {expr!r}"
    )


def define(rt, name="w", keep=None):
    rt.define(name, handlers.from_function(name, lambda event: event), 1, policy=Policy(keep=keep))


def drain(rt, name, count):
    rt.emit_many(list(range(count)), name)
    assert rt.wait(name, 30)


def on_disk(rt, name="w") -> int:
    """The traces of ``name`` in the file, after a flush."""
    rt.flush()
    return rt.store.sql("select count(*) from traces where worker = $1", [name]).fetchall()[0][0]


@pytest.mark.parametrize("keep", [0, -1, 1.5, "50", True, 10_001])
def test_keep_is_a_whole_number_from_1(keep):
    with pytest.raises(ArgumentValueError, match="keep must be a whole number of traces"):
        Policy(keep=keep)


def test_a_worker_keeps_its_own_number_of_traces_in_memory_and_on_disk(tmp_path):
    path = str(tmp_path / "q.duckdb")
    rt = open_runtime(path)
    try:
        define(rt, "w", keep=50)
        define(rt, "other")
        drain(rt, "w", 60)
        drain(rt, "other", 20)
        traces = rt.traces("w")
        assert len(traces) == 50 and [t.input for t in traces] == list(range(59, 9, -1))
        assert len(rt.traces("other")) == 10
        rt.flush()
        assert (on_disk(rt, "w"), on_disk(rt, "other")) == (50, 10)
    finally:
        rt.stop()


def test_a_drain_copies_the_results_of_every_trace_it_keeps(make_runtime):
    # Given a paused worker keeping 30 traces with 40 messages queued
    rt = make_runtime()
    define(rt, "w", keep=30)
    rt.pause("w")
    rt.emit_many(list(range(40)), "w")
    # When it drains, the results of the 30 traces kept are copied (not "superseded" at 10)
    rt.resume("w")
    assert rt.wait("w", 30)
    assert [t.result_repr for t in rt.traces("w")] == [repr(n) for n in range(39, 9, -1)]
    assert NOT_COPIED not in {t.result_repr for t in rt.traces("w")}


def test_after_a_restart_the_traces_wait_for_the_cell_then_follow_its_keep(tmp_path):
    path = str(tmp_path / "q.duckdb")
    rt = open_runtime(path)
    try:
        define(rt, "w", keep=50)
        drain(rt, "w", 60)
    finally:
        rt.stop()
    # After a restart, before the worker is defined again: 50 in memory, and other workers'
    # writes do not prune them
    rt = open_runtime(path)
    try:
        assert len(rt.traces("w")) == 50
        define(rt, "other")
        drain(rt, "other", 3)
        rt.flush()
        assert on_disk(rt, "w") == 50
        # Defined again with the same --keep: still 50, the newest kept
        define(rt, "w", keep=50)
        drain(rt, "w", 1)
        rt.flush()
        assert len(rt.traces("w")) == 50 and on_disk(rt, "w") == 50
        # Defined without it: the default, at once in memory and with the next write on disk
        define(rt, "w")
        assert len(rt.traces("w")) == 10
        drain(rt, "w", 1)
        rt.flush()
        assert on_disk(rt, "w") == 10
    finally:
        rt.stop()
    rt = open_runtime(path)
    try:
        assert len(rt.traces("w")) == 10
    finally:
        rt.stop()


def test_the_memory_store_keeps_as_many(make_runtime):
    store = MemoryStore()
    rt = make_runtime(store=store)
    define(rt, "w", keep=15)
    define(rt, "other")
    drain(rt, "w", 20)
    drain(rt, "other", 20)
    rt.flush()
    kept = [t.worker for t in store.traces.values()]
    assert (kept.count("w"), kept.count("other")) == (15, 10)
    assert store.workers["w"].keep == 15


def test_keep_in_a_kernel_the_panel_and_the_file_after_a_restart(kernel):
    kernel.ok("%%worker w --keep 50\nevent")
    kernel.ok("nw.emit_many(range(60), 'w')\nnw.wait()")
    assert kernel.eval("len(nw.traces('w'))") == 50
    kernel.ok("from nbworkers.widgets import panels\np = panels('w')[0]")
    wait_for(kernel, "len(p.view.traces) == 50")
    assert "keeps 50 traces" in kernel.eval("p.view.header['facts']")
    assert kernel.eval("nw.sql(\"select count(*) from traces where worker = 'w'\").fetchall()") == [
        (50,)
    ]
    # After a restart, before the cell runs again
    kernel.restart()
    kernel.ok("%load_ext nbworkers\nimport nbworkers as nw")
    assert kernel.eval("len(nw.traces('w'))") == 50
    kernel.ok("%%worker other\nevent")
    kernel.ok("nw.emit_many(range(3), 'other')\nnw.wait()")
    assert kernel.eval("nw.sql(\"select count(*) from traces where worker = 'w'\").fetchall()") == [
        (50,)
    ]
    kernel.ok("%%worker w --keep 50\nevent")
    kernel.ok("from nbworkers.widgets import panels\np = panels('w')[-1]")
    wait_for(kernel, "len(p.view.traces) == 50")
    reply = kernel.run("%%worker w --keep 0\nevent")
    assert reply.ename == "UsageError" and "--keep must be a whole number" in reply.evalue


@pytest.mark.parametrize("make_store", [DuckDBStore, MemoryStore], ids=["duckdb", "memory"])
def test_the_store_prunes_each_worker_to_its_own_keep(make_store):
    def trace(seq, worker):
        return TraceRow(seq, worker, seq, 1.0, 0.1, b"in", None, "None", "", None, False)

    store = make_store(":memory:", traces_kept=2)
    try:
        # Given a worker whose row keeps 3, and one with no row (the default, 2)
        store.apply(
            Batch(
                workers=[WorkerRow("kept", False, 0, 0, keep=3)],
                traces=[trace(seq, "kept") for seq in range(1, 6)]
                + [trace(seq, "plain") for seq in range(6, 11)],
            )
        )
        loaded = store.load()
        assert [t.seq for t in loaded.traces if t.worker == "kept"] == [5, 4, 3]
        assert [t.seq for t in loaded.traces if t.worker == "plain"] == [10, 9]
        assert [w.keep for w in loaded.workers] == [3]
        # When the row goes back to the default, the next write prunes to it
        store.apply(Batch(workers=[WorkerRow("kept", False, 0, 0)], traces=[trace(11, "kept")]))
        assert [t.seq for t in store.load().traces if t.worker == "kept"] == [11, 5]
    finally:
        store.close()


def test_decorators_take_keep_too(fresh_runtime):
    nw = fresh_runtime
    nw.worker("w", keep=3)(lambda event: event)
    nw.cron("1h", name="c", keep=2)(lambda: "tick")  # runs once at once
    nw.emit_many(list(range(5)), "w")
    for _ in range(3):
        nw.run_now("c")
        assert nw.wait("c", 30)
    assert nw.wait("w", 30)
    assert (len(nw.traces("w")), len(nw.traces("c"))) == (3, 2)
    with pytest.raises(ArgumentValueError, match="keep must be a whole number"):
        nw.worker("w", keep=0)
