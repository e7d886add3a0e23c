"""Dead letters live on disk (issue #22, point 1): the engine keeps only their counts by group,
reads them back a page or a chunk at a time, and a requeue is one transaction with its new
messages."""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
import time

import pytest

from nbworkers.engine import Runtime, Settings
from nbworkers.errors import NBWorkersError
from nbworkers.handlers import from_function
from nbworkers.store import MemoryStore
from nbworkers.store.rows import DeadRow


def fail(event):
    if isinstance(event, int) and event % 2:
        raise KeyError("text")
    raise ValueError(f"bad row {event}")


@pytest.fixture
def failed():
    """``failed(events, fail_first=None, **settings)`` -> (runtime, its MemoryStore): worker "w"
    failed on each of ``events`` (its store failing with ``fail_first`` from the emit on), then
    paused; each runtime is stopped, its store mended, afterwards."""
    made = []

    def make(events, fail_first=None, **settings):
        store = MemoryStore()
        rt = Runtime(":memory:", store=store, settings=Settings(**settings))
        made.append((rt, store))
        rt.define("w", from_function("w", fail), 1)
        store.fail_with = fail_first
        rt.emit_many(list(events), "w")
        assert rt.wait("w", timeout=30)
        rt.pause("w")
        return rt, store

    yield make
    for rt, store in made:
        store.fail_with = store.on_apply = None
        rt.stop()


def blocks() -> int:
    """Python objects allocated now (a dead letter is a plain tuple, which the collector does
    not track once it is old enough: gc.get_objects() would not see one left behind)."""
    gc.collect()
    return sys.getallocatedblocks()


def test_written_dead_letters_leave_no_object_in_memory_and_read_back_whole(rt):
    # Given 3,000 messages that all fail, for two causes
    rt.define("w", from_function("w", fail), 2)
    rt.emit_many(range(100), "w")  # (the caches of tracebacks and fingerprints fill up)
    assert rt.wait("w", timeout=120)
    rt.flush()
    before = blocks()
    rt.emit_many(range(100, 3000), "w")
    assert rt.wait("w", timeout=120)
    rt.flush()
    # Then none of the 2,900 new dead letters is in memory any more: one left would hold
    # three objects or more (its tuple, its error, its event), 8,700 in all
    grown = blocks() - before
    assert grown < 2000, f"{grown:,} more objects after 2,900 dead letters"
    # and the counts and groups are exact, read from what the engine counted
    assert rt.counts("w")["dead"] == 3000
    groups = rt.failures("w")
    assert [f.count for f in groups] == [1500, 1500]
    assert sorted(f.title.split(":")[0] for f in groups) == ["KeyError", "ValueError"]
    # and the letters come back from the file, oldest first, with their own line and group
    everything = rt.dead_letters("w", limit=None)
    assert len(everything) == 3000 and len({d["id"] for d in everything}) == 3000
    died = [d["died_at"] for d in everything]
    assert died == sorted(died)
    by_group = {f.fingerprint for f in rt.failures("w")}
    assert {d["fingerprint"] for d in everything} == by_group
    assert all("\n" not in d["error"] for d in everything)


def test_groups_and_counts_survive_a_restart_without_reading_the_letters(make_runtime):
    rt = make_runtime()
    rt.define("w", from_function("w", fail), 2)
    rt.emit_many(range(40), "w")
    assert rt.wait("w", timeout=30)
    rt.pause("w")
    rt.emit("late", "w", ttl=0.05)  # expires while the worker is paused
    deadline = time.monotonic() + 30
    while rt.counts("w").get("expired") != 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert rt.counts("w")["dead"] == 41
    before = rt.failures("w")
    counts = rt.counts("w")
    rt.stop()
    # When the file is opened again
    again = make_runtime()
    # Then the groups are the same: counts, times, example ids and a whole traceback
    after = again.failures("w")
    assert [(f.fingerprint, f.count, f.first_seen, f.last_seen, f.example_ids) for f in after] == [
        (f.fingerprint, f.count, f.first_seen, f.last_seen, f.example_ids) for f in before
    ]
    assert all("Traceback" in f.traceback for f in after if "expired" not in f.title.lower())
    assert again.counts("w")["dead"] == counts["dead"]
    assert again.counts("w").get("expired") == counts.get("expired")
    # and nothing but those counts was read: no dead letter's row exists
    gc.collect()
    assert not any(isinstance(o, DeadRow) for o in gc.get_objects())


def test_removing_dead_letters_by_id_counts_their_group_again_from_the_file(rt):
    rt.define("w", from_function("w", fail), 1)
    rt.emit_many([1, 3, 5, 7, 9, 11, 13], "w")  # all KeyError: one group
    assert rt.wait("w", timeout=30)
    [group] = rt.failures("w")
    first_two = list(group.example_ids[:2])
    # When the two smallest ids are discarded and the next one requeued
    assert rt.discard("w", first_two) == 2
    [new] = rt.requeue("w", [group.example_ids[2]])
    assert new not in group.example_ids
    # Then the group shows the smallest ids it still has, and the counts agree
    assert rt.wait("w", timeout=30)  # the requeued one failed again: a new dead letter
    [after] = rt.failures("w")
    kept = sorted((d["id"] for d in rt.dead_letters("w", limit=None)), key=lambda i: int(i[1:]))
    assert after.count == len(kept) == 5 == rt.counts("w")["dead"]
    assert list(after.example_ids) == kept[:5]
    assert set(first_two).isdisjoint(kept)


def test_a_requeue_is_written_in_one_batch_with_its_new_messages(failed):
    rt, store = failed([1, 3, 5, 2])
    key_group = next(f for f in rt.failures("w") if "KeyError" in f.title)
    new = rt.requeue("w", group=key_group.fingerprint)
    # The batch that dropped the group's dead letters also queued their new messages
    batch = store.applied[-1]
    assert batch.dead_discards == [("w", [key_group.fingerprint])]
    assert sorted(f"m{m[0]}" for m in batch.inserts) == sorted(new) and len(new) == 3
    # and the dead letter of the other group stays, in the file and in the counts
    assert [d.seq for d in store.dead_page("w", None, 0)] == [4]
    assert rt.counts("w")["dead"] == 1 and rt.counts("w")["queued"] == 3


def test_a_requeue_or_discard_that_cannot_read_the_file_changes_nothing_and_says_why(failed):
    # Given dead letters not written yet because the disk is full
    rt, store = failed([1, 3], fail_first=OSError("No space left on device"))
    # When they are listed, requeued or discarded
    for act in (rt.requeue, rt.discard, rt.dead_letters):
        with pytest.raises(NBWorkersError, match=r"No space left on device.*free disk"):
            act("w")
        # Then nothing changed
        assert (rt.counts("w")["dead"], rt.counts("w")["queued"]) == (2, 0)
    # and once the disk has room, they are all there
    store.fail_with = None
    assert len(rt.dead_letters("w")) == 2 and len(rt.requeue("w")) == 2


def test_a_requeue_whose_own_write_fails_is_done_and_written_once_the_disk_has_room(failed):
    rt, store = failed([1, 3])
    rt.flush()
    # When the disk fills between the read of the dead letters and the requeue's write
    real_rows = store.dead_rows

    def then_full(*args):
        yield from real_rows(*args)
        store.fail_with = OSError("No space left on device")

    store.dead_rows = then_full
    new = rt.requeue("w")
    # Then the requeue is done (in memory, as an emit on a full disk is)
    assert len(new) == 2 and rt.counts("w")["queued"] == 2 and rt.counts("w")["dead"] == 0
    # and written, in one batch, once the disk has room
    store.fail_with = None
    rt.flush()
    assert store.dead_page("w", None, 0) == []
    assert sorted(f"m{seq}" for seq in store.messages) == sorted(new)


def test_letters_dying_while_a_group_is_requeued_again_and_again_are_never_lost(rt):
    # Given a worker failing for one cause while a thread keeps emitting to it
    broken = threading.Event()
    broken.set()

    def handler(event):
        if broken.is_set():
            raise KeyError("text")
        return event

    rt.define("w", from_function("w", handler), 4)
    total = 6000

    first_requeue = threading.Event()

    def emitter():
        for start in range(0, total, 200):
            if start == total // 2:  # (the second half once a requeue has happened)
                first_requeue.wait(60)
            rt.emit_many(range(start, start + 200), "w")
            time.sleep(0.005)

    thread = threading.Thread(target=emitter)
    thread.start()
    # When the group is requeued over and over while letters keep dying into it
    requeued = 0
    while thread.is_alive():
        groups = rt.failures("w")
        if groups:
            done = len(rt.requeue("w", group=groups[0].fingerprint))
            requeued += done
            if done:
                first_requeue.set()
        time.sleep(0.01)
    thread.join()
    assert requeued > 0 and first_requeue.is_set()
    # and then the cell is fixed and what is left requeued
    broken.clear()
    assert rt.wait("w", timeout=120)
    rt.requeue("w")
    assert rt.wait("w", timeout=120)
    # Then every message ran to the end exactly once: none lost, none doubled
    counts = rt.counts("w")
    assert (counts["done"], counts["dead"], counts["queued"]) == (total, 0, 0)


def test_an_interrupt_while_dead_letters_are_read_loses_nothing_pending(failed):
    # Given a dead letter, and messages emitted to a paused worker, not written yet
    rt, store = failed([1], flush_interval_s=60)
    rt.pause("other")
    rt.emit_many(["a", "b", "c"], "other")

    # When the write that nw.dead_letters makes first is interrupted
    def interrupted(batch):
        store.on_apply = None
        raise KeyboardInterrupt

    store.on_apply = interrupted
    with pytest.raises(KeyboardInterrupt):
        rt.dead_letters("w")
    # Then nothing pending was dropped: the next write has it all
    rt.flush()
    assert sorted(row.worker for row in store.messages.values()) == ["other"] * 3
    assert [d.seq for d in store.dead_page("w", None, 0)] == [1]


def test_ctrl_c_during_a_requeue_waits_until_it_is_done_then_interrupts(failed):
    # Given dead letters, and a Ctrl-C (SIGINT) that comes while the requeue writes
    rt, store = failed([1, 3, 5])
    rt.flush()

    def ctrl_c(batch):
        if batch.dead_discards:
            os.kill(os.getpid(), signal.SIGINT)

    store.on_apply = ctrl_c
    # When the group is requeued, the interrupt comes once it is done
    with pytest.raises(KeyboardInterrupt):
        rt.requeue("w")
    store.on_apply = None
    # Then the requeue is whole: three new messages, no dead letter, in memory and on disk
    assert (rt.counts("w")["queued"], rt.counts("w")["dead"]) == (3, 0)
    rt.flush()
    assert store.dead_page("w", None, 0) == [] and len(store.messages) == 3


def test_a_read_that_fails_half_way_keeps_what_it_requeued_and_the_rest_dead(failed):
    rt, store = failed([1, 3, 5, 7, 9])
    real_rows = store.dead_rows

    def breaks(*args):
        chunks = real_rows(*args)
        yield next(chunks)  # MemoryStore reads 2 at a time
        raise OSError("Input/output error")

    store.dead_rows = breaks
    with pytest.raises(OSError):
        rt.requeue("w")
    store.dead_rows = real_rows
    # The first two are queued and no longer dead; the other three are still dead letters
    assert (rt.counts("w")["queued"], rt.counts("w")["dead"]) == (2, 3)
    rt.flush()
    assert [d.seq for d in store.dead_page("w", None, 0)] == [3, 4, 5]
    assert len(rt.requeue("w")) == 3 and rt.counts("w")["dead"] == 0


def test_after_a_stop_dead_letters_say_so_and_leave_the_file_closed(make_runtime):
    rt = make_runtime()
    rt.define("w", from_function("w", fail), 1)
    rt.emit(1, "w")
    assert rt.wait("w", timeout=30)
    rt.stop()
    for act in (rt.dead_letters, rt.requeue, rt.discard):
        with pytest.raises(NBWorkersError, match="stopped; run %load_ext nbworkers again"):
            act("w")
    assert rt.store.con is None
