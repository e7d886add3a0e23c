"""The writer and the runtime on the in-memory store: group commit, a failing disk, and what
runs, retries, delays and cron ticks hand to the store. No file, no DuckDB."""

from __future__ import annotations

import pickle
import random
import threading
import time

import pytest

from nbworkers.engine import Runtime
from nbworkers.engine.dead import letter
from nbworkers.engine.policy import Policy
from nbworkers.engine.worker import WorkerState
from nbworkers.errors import NBWorkersError
from nbworkers.handlers import from_function
from nbworkers.message import Message
from nbworkers.schedule import parse
from nbworkers.store import MemoryStore, MessageRow, UpdateRow, WorkerRow, batching, pace
from nbworkers.store.batching import PENDING_TRIM, cancelled
from nbworkers.store.writer import Writer
from nbworkers.trace import Trace
from tests.conftest import Clock, open_runtime
from tests.waiting import wait_until

T0 = 1_800_000_000.0
FULL = "No space left on device"


@pytest.fixture
def make_writer():
    """Writers on a MemoryStore (``make(**options)``), each with its loop in a thread of the
    test's own (in nbworkers only the runtime starts threads); stopped and joined afterwards."""
    made = []

    def make(traces_kept=10, next_seq=1):
        store = MemoryStore(traces_kept=traces_kept)
        writer = Writer(
            store,
            threading.Lock(),
            next_seq,
            traces_kept=traces_kept,
            flush_interval_s=0.005,
        )
        thread = threading.Thread(target=writer.loop, name="test-writer", daemon=True)
        thread.start()
        made.append((writer, thread))
        return writer, store

    def stop(writer: Writer) -> None:
        with writer.lock:
            writer.stop()
        [thread] = [t for w, t in made if w is writer]
        thread.join(10)
        assert not thread.is_alive()

    make.stop = stop
    yield make
    for writer, _ in made:
        stop(writer)


def messages(writer: Writer, count: int, worker="w") -> list[Message]:
    """``count`` new messages, numbered by the writer (the lock is held)."""
    first = writer.number(count)
    return [Message(seq, worker, T0 + seq, 1, b"x") for seq in range(first, first + count)]


def trace(seq: int, worker: str) -> Trace:
    return Trace(seq, seq, worker, b"in", T0, 0.1, "", None, result_data=None, result_repr="1")


def counting(cls: type) -> type:
    """``cls`` whose instances count themselves as they are freed (``Counted.freed``)."""

    class Counted(cls):
        __slots__ = ()
        freed = 0

        def __del__(self):
            type(self).freed += 1

    return Counted


def stored(store: MemoryStore) -> list[int]:
    return [m.seq for m in store.load().messages]


# ----- the writer -------------------------------------------------------------------------------


def test_everything_recorded_between_two_writes_is_one_batch(make_writer):
    writer, store = make_writer()
    w = WorkerState("w", writer.lock, 10)
    # Given ten emits, an ack, a worker's change and a trace recorded while the writer waits
    with writer.lock:
        emitted = []
        for _ in range(10):
            batch = messages(writer, 100)
            writer.insert(batch)
            emitted += batch
        writer.ack([emitted[0].seq])
        w.done = 1
        writer.worker_changed(w)
        writer.trace(trace(writer.number(), "w"))
    writer.flush()
    # Then the store got them all in one batch of rows
    [batch] = store.applied
    # (the ack of a message emitted in it cancels its insert: neither is written)
    assert len(batch.inserts) == 999 and batch.acks == []
    assert MessageRow._make(batch.inserts[0]) == MessageRow(
        2, "w", T0 + 2, 1, b"x", False, None, None
    )
    assert batch.workers == [WorkerRow("w", False, 1, 0, kind=None)]
    assert [t.seq for t in batch.traces] == [1001] and batch.next_seq == 1002
    assert stored(store) == list(range(2, 1001))


def costly_commits(store: MemoryStore) -> list[float]:
    """Make each of ``store``'s commits cost 10 ms of the writer's CPU (as a DuckDB commit of 8
    statements); when each began, filled in as they are made."""
    starts: list[float] = []

    def costly(batch):
        starts.append(time.perf_counter())
        end = time.thread_time() + 0.01
        while time.thread_time() < end:
            pass

    store.on_apply = costly
    return starts


class RecordedPace(pace.Pace):
    """The writer's pace, with each gap it chose and the size of the batch it followed, so
    that tests assert the writer's decisions, not wall-clock counts a busy machine changes."""

    def __init__(self, flush_interval_s: float):
        super().__init__(flush_interval_s)
        self.chosen: list[tuple[int, float]] = []

    def gap_s(self, taken, cpu_s):
        gap = super().gap_s(taken, cpu_s)
        self.chosen.append((pace.size(taken), gap))
        return gap


def recorded_pace(writer: Writer) -> list[tuple[int, float]]:
    writer.pace = RecordedPace(writer.pace.flush_interval_s)
    return writer.pace.chosen


def test_after_a_costly_commit_the_writer_rests_in_proportion_but_flush_does_not_wait(
    make_writer, monkeypatch
):
    # A slow trickle of runs (a CPU-heavy handler in a pool process) made a commit of each
    # run's end, about 8 ms of CPU each: the writer took a sixth of two cores from the pool.
    writer, store = make_writer()
    with writer.lock:
        queued = messages(writer, 1000)
        writer.insert(queued)
    writer.flush()
    starts = costly_commits(store)
    chosen = recorded_pace(writer)
    began = time.perf_counter()
    until = began + 1.0
    # A run ends every 2 ms, for a second and at least four of the writer's batches
    while time.perf_counter() < until or (len(chosen) < 4 and time.perf_counter() < until + 10):
        with writer.lock:
            writer.ack([queued.pop().seq])
        time.sleep(0.002)
    elapsed = time.perf_counter() - began
    writer.flush()
    # The first small batch is not rested after (it may start a drain); every later one is,
    # nine times its 10 ms of CPU (pace.py's REST_PER_CPU), not flush_interval_s's 5 ms
    batches = [(size, gap) for size, gap in chosen if size]  # (flush() may take nothing)
    assert len(batches) >= 3 and all(size < pace.REST_BELOW for size, _ in batches), chosen
    assert batches[0][1] == 0.005
    assert all(0.09 <= gap <= pace.REST_MAX_S for _, gap in batches[1:]), chosen
    # so about ten commits a second, not a hundred (a stall of the machine only makes fewer)
    assert len(starts) <= elapsed / 0.09 + 3, (len(starts), elapsed)
    assert len(stored(store)) == len(queued)  # every ack written
    # flush() does not wait for the rest: it wakes the writer. (Rests of 5 s from here on, so
    # that a busy machine cannot pass for a rest.)
    monkeypatch.setattr(pace, "REST_PER_CPU", 500.0)
    monkeypatch.setattr(pace, "REST_MAX_S", 5.0)
    for _ in range(2):
        with writer.lock:
            writer.ack([queued.pop().seq])
        t0 = time.perf_counter()
        writer.flush()
        assert time.perf_counter() - t0 < 2.5
        # the writer did choose a rest of 5 s after that ack (flush() may add an empty batch)
        assert [gap for size, gap in chosen if size][-1] == 5.0, chosen
    assert len(stored(store)) == len(queued)


def test_a_trickle_of_emits_is_written_within_milliseconds_not_rested(make_writer):
    # Emits from a handler or a thread after its cell ended: on disk a few milliseconds later,
    # as the README promises, however costly the commits.
    writer, store = make_writer()
    costly_commits(store)
    chosen = recorded_pace(writer)
    for done in range(12):  # an emit, then the next once the writer has written it
        with writer.lock:
            writer.insert(messages(writer, 1))
        assert wait_until(lambda done=done: len(chosen) > done, 10)
    writer.flush()
    # twelve small batches in a row, each written without a rest
    assert len([size for size, _ in chosen if size]) == 12, chosen
    assert {gap for _, gap in chosen} == {0.005}, chosen
    assert len(stored(store)) == 12


def test_a_drains_big_batches_do_not_rest(make_writer):
    # Resting after big batches only let a drain's changes pile up: 5 to 20 % slower.
    writer, store = make_writer()
    with writer.lock:
        queued = messages(writer, 60_000)
        writer.insert(queued)
    writer.flush()
    costly_commits(store)
    chosen = recorded_pace(writer)
    for done in range(6):  # 300 runs' ends at a time (past REST_BELOW), each batch written
        with writer.lock:
            writer.ack([queued.pop().seq for _ in range(300)])
        assert wait_until(lambda done=done: len(chosen) > done, 10)
    writer.flush()
    sizes = [size for size, _ in chosen if size]  # (flush() with nothing left takes nothing)
    assert sizes == [300] * 6, chosen
    assert {gap for _, gap in chosen} == {0.005}, chosen
    assert len(stored(store)) == len(queued)  # every ack written


def test_a_failed_write_is_put_back_whole_and_written_with_what_came_after(make_writer, logged):
    writer, store = make_writer()
    w = WorkerState("w", writer.lock, 10)
    with writer.lock:
        [kept, dying, changing] = messages(writer, 3)
        writer.insert([kept, dying, changing])
    writer.flush()
    # Given a full disk, and one change of every kind
    store.fail_with = OSError(FULL)
    with writer.lock:
        [new] = messages(writer, 1)
        writer.insert([new])
        changing.attempt, changing.due_at_s = 2, T0 + 60
        writer.update(changing)
        writer.dead(letter(dying, "ValueError: bad", T0 + 5))
        w.failed = 1
        writer.worker_changed(w)
        writer.trace(trace(writer.number(), "w"))
    with pytest.raises(NBWorkersError, match=FULL):
        writer.flush()
    assert len(store.applied) == 1  # nothing of the failed batch reached the store
    # When the disk has room again, after one more emit
    store.fail_with = None
    with writer.lock:
        [later] = messages(writer, 1)
        writer.insert([later])
    writer.flush()
    # Then the failed batch's changes are all written, before the later emit
    batch = store.applied[-1]
    assert [m[0] for m in batch.inserts] == [new.seq, later.seq]
    assert [UpdateRow._make(u) for u in batch.updates] == [UpdateRow(3, 2, False, T0 + 60)]
    assert batch.acks == [dying.seq]
    assert [(d[0], d[6]) for d in batch.dead_inserts] == [(2, "ValueError: bad")]
    assert [r.failed for r in batch.workers] == [1] and len(batch.traces) == 1
    assert batch.next_seq == writer.next_seq
    loaded = store.load()
    assert [m.seq for m in loaded.messages] == [kept.seq, changing.seq, new.seq, later.seq]
    assert loaded.messages[1].attempt == 2
    assert [d.seq for d in store.dead_page("w", None, 0)] == [dying.seq]


def test_flush_raises_while_the_disk_is_full_says_it_once_and_recovers(make_writer, logged):
    writer, store = make_writer()
    store.fail_with = OSError(FULL)
    with writer.lock:
        writer.insert(messages(writer, 3))
    for _ in range(2):  # the writer tries again at every flush
        with pytest.raises(NBWorkersError, match=f"{FULL}.*kept in memory"):
            writer.flush()
    assert writer.has_unwritten and store.load().messages == []
    store.fail_with = None
    writer.flush()
    assert not writer.has_unwritten and stored(store) == [1, 2, 3]
    errors = [r.getMessage() for r in logged.records if "could not write" in r.getMessage()]
    assert len(errors) == 1 and FULL in errors[0], errors
    assert any("works again; nothing was lost" in r.getMessage() for r in logged.records)


def test_a_write_committed_but_not_checkpointed_is_a_warning_and_not_written_again(
    make_writer, logged
):
    writer, store = make_writer()
    store.committed_warning = "the changes are on disk, but DuckDB could not checkpoint"
    with writer.lock:
        writer.insert(messages(writer, 2))
    writer.flush()
    store.committed_warning = None
    with writer.lock:
        writer.insert(messages(writer, 1))
    writer.flush()
    assert [len(b.inserts) for b in store.applied] == [2, 1]
    assert any("could not checkpoint" in r.getMessage() for r in logged.records)


def test_stopping_with_unwritten_changes_says_they_are_lost(make_writer, logged):
    writer, store = make_writer()
    store.fail_with = OSError(FULL)
    with writer.lock:
        writer.insert(messages(writer, 3))
    with pytest.raises(NBWorkersError, match=FULL):
        writer.flush()
    make_writer.stop(writer)  # the runtime stops (%unload_ext, kernel shutdown)
    lost = [r for r in logged.records if "stopping with unwritten changes" in r.getMessage()]
    assert lost and "messages emitted since the last successful write are lost" in (
        lost[0].getMessage()
    )
    assert store.load().messages == []


def test_the_update_of_a_message_acked_before_the_write_is_dropped(make_writer):
    writer, store = make_writer()
    with writer.lock:
        [m, unwritten] = messages(writer, 2)
        writer.insert([m])
    writer.flush()
    with writer.lock:
        m.attempt = 2
        writer.update(m)
        writer.ack([m.seq])
        unwritten.attempt = 2
        writer.update(unwritten)  # its insert, still to come, carries it
    writer.flush()
    batch = store.applied[-1]
    assert batch.updates == [] and batch.acks == [m.seq]


def test_only_the_newest_traces_kept_of_each_worker_are_written(make_writer):
    writer, store = make_writer(traces_kept=2)
    with writer.lock:
        for worker in ["a", "a", "b", "a", "a"]:
            writer.trace(trace(writer.number(), worker))
    writer.flush()
    [batch] = store.applied
    assert sorted((t.worker, t.seq) for t in batch.traces) == [("a", 4), ("a", 5), ("b", 3)]


def test_traces_waiting_for_the_writer_past_the_newest_kept_go_before_the_write(make_writer):
    writer, store = make_writer(traces_kept=2)
    writer.kept["a"] = 3  # --keep 3
    Counted = counting(Trace)

    # Given far more runs of two workers than they keep, all recorded while the writer waits
    # (runs outpacing it)
    count = 5 * PENDING_TRIM
    with writer.lock:
        for i in range(count):
            seq = writer.number()
            writer.trace(Counted(seq, seq, "ab"[i % 2], b"in", T0, 0.1, "", None, None, "1"))
        # Then most are gone already, not held until the batch
        assert Counted.freed >= count - PENDING_TRIM
    writer.flush()
    # And the batch has the newest each worker keeps, as without the early drop (its --keep
    # unchanged meanwhile)
    [batch] = store.applied
    assert sorted((t.worker, t.seq) for t in batch.traces) == [
        ("a", count - 5),
        ("a", count - 3),
        ("a", count - 1),
        ("b", count - 2),
        ("b", count),
    ]


def test_messages_inserted_and_acked_before_the_write_are_neither_written_nor_deleted(
    make_writer,
):
    writer, store = make_writer()
    with writer.lock:
        [old] = messages(writer, 1)
        writer.insert([old])
    writer.flush()
    # Given three messages emitted and two of them done before the writer took them, with an
    # older, written one
    with writer.lock:
        emitted = messages(writer, 3)
        writer.insert(emitted)
        writer.ack([emitted[0].seq, old.seq, emitted[2].seq])
    writer.flush()
    # Then the batch inserts the one left and deletes only the written one
    batch = store.applied[-1]
    assert [row[0] for row in batch.inserts] == [emitted[1].seq]
    assert batch.acks == [old.seq]
    assert stored(store) == [emitted[1].seq]


def test_messages_done_before_the_write_go_before_it_when_runs_outpace_the_writer(make_writer):
    writer, store = make_writer()
    Counted = counting(Message)

    # Given a drain's messages emitted and all but the last done while the writer waits
    count = 5 * PENDING_TRIM
    with writer.lock:
        first = writer.number(count)
        writer.insert([Counted(seq, "w", T0, 1, b"x") for seq in range(first, first + count)])
        for seq in range(first, first + count - 1):
            writer.ack([seq])
        # Then most of them are gone already, not held until the batch
        assert Counted.freed >= count - PENDING_TRIM
    writer.flush()
    # And the batch writes the one left, as without the early drop
    [batch] = store.applied
    assert [row[0] for row in batch.inserts] == [first + count - 1] and batch.acks == []
    assert stored(store) == [first + count - 1]


def test_trimming_acks_costs_each_ack_a_few_steps_however_many_inserts_wait(
    make_writer, monkeypatch
):
    looked_at = []

    def counted(inserts, acks):
        looked_at.append(len(inserts) + len(acks))
        return cancelled(inserts, acks)

    monkeypatch.setattr(batching, "cancelled", counted)
    writer, store = make_writer()
    # Given 100,000 messages waiting to be written (writes failing, or a busy writer) and
    # half of them done, one ack at a time
    count = 100_000
    with writer.lock:
        first = writer.number(count)
        writer.insert([Message(seq, "w", T0, 1, b"x") for seq in range(first, first + count)])
        for seq in range(first, first + count // 2):
            writer.ack([seq])
        # Then the trims looked at a few entries an ack, not every insert every 1,024 acks
        assert looked_at and sum(looked_at) <= 10 * count
    writer.flush()
    assert stored(store) == list(range(first + count // 2, first + count))


# ----- the runtime, on the in-memory store --------------------------------------------------------


@pytest.fixture
def make_runtime(tmp_path):
    """Runtimes on a MemoryStore (``make(**options)``): the file is never created."""
    made = []

    def make(**kw):
        rt = open_runtime(str(tmp_path / "q.duckdb"), store=MemoryStore(), **kw)
        made.append(rt)
        return rt

    yield make
    for rt in made:
        rt.stop()
    assert not (tmp_path / "q.duckdb").exists()


def test_a_run_ends_with_its_ack_and_trace_in_the_store(make_runtime):
    rt = make_runtime()
    gate = threading.Event()
    rt.define("w", from_function("w", lambda e: gate.wait(10) and e * 2), 1)
    [seq] = [int(i[1:]) for i in rt.emit_many([21], "w")]
    assert wait_until(lambda: rt.counts("w")["running"] == 1)
    rt.flush()
    assert [m.seq for m in rt.store.load().messages] == [seq]  # queued, on disk
    gate.set()
    assert rt.wait("w", 5)
    rt.flush()
    loaded = rt.store.load()
    assert loaded.messages == [] and any(seq in b.acks for b in rt.store.applied)
    assert [(t.message_seq, t.result_repr) for t in loaded.traces] == [(seq, "42")]
    assert [(w.name, w.done) for w in loaded.workers] == [("w", 1)]


def test_a_retry_is_an_update_with_its_next_attempt_and_due_time(make_runtime):
    clock = Clock(T0)
    rng = random.Random()
    rng.uniform = lambda a, b: b  # the whole backoff
    rt = make_runtime(clock=clock, rng=rng)
    rt.define("w", from_function("w", lambda e: 1 / 0), 1, policy=Policy(retries=1, backoff_s=60))
    rt.emit("x", "w")
    assert wait_until(lambda: rt.counts("w")["retried"] == 1)
    rt.flush()
    [row] = rt.store.load().messages
    assert (row.attempt, row.due_at, row.started) == (2, T0 + 60, False)


def test_a_delayed_message_is_stored_with_its_due_time(make_runtime):
    rt = make_runtime(clock=Clock(T0))
    rt.emit("later", "w", delay=90)
    rt.flush()
    [row] = rt.store.load().messages
    assert row.due_at == T0 + 90 and pickle.loads(row.data) == "later"


def test_a_cron_tick_inserts_its_message_and_its_run_acks_it(make_runtime):
    clock = Clock(T0)
    rt = make_runtime(clock=clock)
    gate = threading.Event()
    rt.define_cron("c", from_function("c", lambda: gate.wait(10), kind="cron"), parse("hourly"))
    rt.run_timers()
    assert wait_until(lambda: rt.counts("c")["running"] == 1)
    rt.flush()
    [row] = rt.store.load().messages
    assert (row.worker, pickle.loads(row.data)) == ("c", None)
    gate.set()
    assert rt.wait("c", 5)
    rt.flush()
    loaded = rt.store.load()
    assert loaded.messages == []
    assert [(w.name, w.done, w.last_run) for w in loaded.workers] == [("c", 1, T0)]


def test_a_cell_waits_for_a_batch_already_being_written(tmp_path):
    store = MemoryStore()
    rt = Runtime(str(tmp_path / "q.duckdb"), store=store)
    try:
        writing = threading.Event()
        store.on_apply = lambda batch: writing.set() or time.sleep(0.3)
        rt.emit(1, "nobody")
        assert writing.wait(5)  # the writer has taken the batch and is committing it (slowly)
        assert rt.has_unwritten
        rt.flush()
        assert not rt.has_unwritten
        assert len(rt.store.load().messages) == 1
    finally:
        rt.stop()
