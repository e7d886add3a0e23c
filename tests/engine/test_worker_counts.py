"""One worker's state beyond its queue in memory: counts with expiry, batches and rates, the
traces it keeps, its messages spilled to the file (a stand-in for ``engine/spill.py``: what the
state asks of it, and what it does with the answers), removal from every structure, and what a
new worker and a new run start from. Fast unit tests that mutation testing runs against
``engine/worker.py`` (docs/testing.md, "Mutation testing")."""

from __future__ import annotations

import threading
from collections import deque

from nbworkers.engine.dead import letter
from nbworkers.engine.policy import Policy
from nbworkers.engine.worker import Run, WorkerState
from nbworkers.message import Message
from nbworkers.progress import Progress


def state(traces_kept: int = 10) -> WorkerState:
    return WorkerState("w", threading.Lock(), traces_kept)


def msg(seq: int, enqueued_at_s: float = 100.0, due_at_s=None, priority: int = 0) -> Message:
    return Message(seq, "w", enqueued_at_s, 1, b"", due_at_s, None, priority)


class Paging:
    def __init__(self, spill, low: int, reads: list[Message], chunk: int | None = None):
        self.spill, self.low, self.reads, self.asked = spill, low, reads, []
        self.chunk = chunk  # read at most this many at a time (None: all)

    def page_in(self, w) -> bool:
        """Read spilled messages back into ``w``'s queue; True if it read any."""
        self.asked.append(w)
        cut = len(self.reads) if self.chunk is None else self.chunk
        read, self.reads = self.reads[:cut], self.reads[cut:]
        w.queue.extend(read)
        self.spill.count -= len(read)
        self.spill.first = self.reads[0] if self.reads else None
        return bool(read)


class Spill:
    """What ``WorkerState`` asks of its spill: spilled messages are priority ``priority`` from
    seq ``first``; they run before a queued message of lower priority, or of the same and a
    higher seq."""

    def __init__(self, messages: list[Message], low: int = 0, late: list[Message] = (), chunk=None):
        self.count = len(messages)
        self.first = messages[0] if messages else None
        self.paging = Paging(self, low, list(messages), chunk)
        self.late = list(late)
        self.messages = messages

    def above(self, first: Message | None) -> bool:
        if self.first is None:
            return False
        if first is None:
            return True
        return (self.first.priority, -self.first.seq) > (first.priority, -first.seq)

    def by_priority(self) -> dict[int, int]:
        found: dict[int, int] = {}
        for m in self.paging.reads:
            found[m.priority] = found.get(m.priority, 0) + 1
        return found

    def held(self) -> list[Message]:
        return list(self.paging.reads)

    def oldest_s(self) -> float | None:
        return min((m.enqueued_at_s for m in self.paging.reads), default=None)

    def drop_late(self, drop) -> list[Message]:
        dropped = [m for m in self.late if drop(m)]
        self.late = [m for m in self.late if not drop(m)]
        return dropped


# ----- counts ------------------------------------------------------------------------------


def test_counts_say_how_many_expired_only_once_some_did():
    w = state()
    assert "expired" not in w.counts(1000.0)
    w.dead.add(letter(msg(1), "too old", 990.0, reason="expired"))
    w.dead.add(letter(msg(2), "boom", 991.0))
    counts = w.counts(1000.0)
    assert (counts["expired"], counts["dead"]) == (1, 2)


def test_counts_of_a_batch_going_are_its_messages_not_its_runs():
    w = state()
    w.running = 2
    assert w.counts(0.0)["running"] == 2
    w.batch_extra = 9  # two runs of 5 and 6 messages
    assert w.counts(0.0)["running"] == 11
    assert w.running == 2


def test_a_rate_limited_worker_counts_how_long_until_its_next_start():
    w = state()
    assert "rate_wait_s" not in w.counts(10.0)
    w.policy = Policy(rate="2/s")
    w.rate_log = deque([9.5, 9.75])  # both tokens taken
    assert w.counts(10.0)["rate_wait_s"] is None  # but nothing queued: nothing waits
    w.rate_log = deque()
    w.queue.extend([msg(1), msg(2)])
    assert w.counts(10.0)["rate_wait_s"] is None  # a token is free
    w.rate_log = deque([9.5, 9.75])  # both tokens taken: the first is back at 10.5
    assert w.counts(10.0)["rate_wait_s"] == 0.5
    assert list(w.rate_log) == [9.5, 9.75]


def test_queued_leaves_out_delayed_messages_that_expired_meanwhile():
    w = state()
    w.delay(msg(1, due_at_s=50.0))
    w.delay(msg(2, due_at_s=60.0))
    w.parked.append((msg(3), "class missing"))
    assert w.queued() == 3
    w.delayed_gone.add(1)
    assert w.queued() == 2


# ----- traces kept -------------------------------------------------------------------------


def test_keep_keeps_the_newest_traces_and_remembers_what_was_asked():
    w = state(traces_kept=10)
    w.traces.extend(["t1", "t2", "t3", "t4"])  # newest first
    w.keep(2, default=10)
    assert (list(w.traces), w.traces.maxlen, w.keep_traces) == (["t1", "t2"], 2, 2)
    w.traces.appendleft("t0")
    assert list(w.traces) == ["t0", "t1"]
    w.keep(None, default=5)  # back to the runtime's number, not remembered as the worker's
    assert (list(w.traces), w.traces.maxlen, w.keep_traces) == (["t0", "t1"], 5, None)
    same = w.traces
    w.keep(5, default=10)  # the same length: the same list
    assert (w.traces is same, w.keep_traces) == (True, 5)


# ----- spilled messages ------------------------------------------------------------------------


def test_spilled_messages_count_as_ready_and_by_priority_highest_first():
    w = state()
    w.queue.extend([msg(1, priority=1), msg(2)])
    assert w.by_priority() == {1: 1, 0: 1}
    w.spill = Spill([msg(10, priority=5), msg(11), msg(12)])
    assert (w.ready_count(), w.queued()) == (5, 5)
    assert list(w.by_priority().items()) == [(5, 1), (1, 1), (0, 3)]


def test_a_worker_with_spilled_messages_that_run_first_reads_them_back_before_saying_ready():
    w = state()
    w.queue.extend([msg(20)])
    w.spill = Spill([msg(10), msg(11)])  # older than what is in memory: they run first
    assert w.has_ready() is True
    assert w.spill.paging.asked == [w]
    assert [m.seq for m in w.queue] == [20, 10, 11]  # (the stand-in appends)


def test_spilled_messages_that_run_first_and_cannot_be_read_yet_are_not_ready():
    w = state()
    w.queue.extend([msg(20)])
    w.spill = Spill([msg(10)])
    w.spill.paging.reads = []  # not in the file yet (the writer is behind)
    assert w.has_ready() is False


def test_a_part_read_back_is_ready_only_if_what_is_still_spilled_runs_after_the_queue():
    w = state()
    w.queue.extend([msg(20)])
    w.spill = Spill([msg(10), msg(11)], chunk=1)  # 11, still spilled, runs before 20
    assert w.has_ready() is False
    w = state()
    w.queue.extend([msg(20)])
    w.spill = Spill([msg(10), msg(30)], chunk=1)  # 30, still spilled, runs after 20
    assert w.has_ready() is True


def test_spilled_messages_that_run_after_the_queue_are_read_only_once_it_is_empty():
    w = state()
    w.spill = Spill([msg(10)])
    w.queue.extend([msg(5)])  # older: runs first
    assert w.has_ready() is True and w.spill.paging.asked == []
    w.queue.popleft()
    assert w.has_ready() is True and w.spill.paging.asked == [w]
    assert [m.seq for m in w.queue] == [10]
    w.queue.popleft()
    w.spill = Spill([])
    assert w.has_ready() is False


def test_take_reads_spilled_messages_back_when_the_queue_runs_low_or_they_come_first():
    w = state()
    w.handler = object()
    w.queue.extend([msg(1), msg(2), msg(3)])
    w.spill = Spill([msg(10)], low=3)
    assert w.take().seq == 1  # 3 in memory: not low yet
    assert w.spill.paging.asked == []
    assert w.take().seq == 2  # 2 < 3: read back
    assert w.spill.paging.asked == [w]
    w = state()
    w.queue.extend([msg(20)])
    w.spill = Spill([msg(10)], low=0)
    assert w.take().seq == 20  # (the stand-in appends what it read)
    assert w.spill.paging.asked == [w] and [m.seq for m in w.queue] == [10]


def test_waiting_lists_what_the_spill_holds_after_the_queue_and_before_delayed_ones():
    w = state()
    w.queue.extend([msg(1)])
    w.delay(msg(3, due_at_s=9.0))
    w.spill = Spill([msg(2)])
    assert [m.seq for m in w.waiting()] == [1, 2, 3]
    assert [m.seq for m in w.waiting(spilled=[msg(7)])] == [1, 7, 3]


def test_the_oldest_waiting_message_may_be_a_spilled_one():
    w = state()
    w.queue.extend([msg(20, enqueued_at_s=500.0)])
    w.spill = Spill([msg(10, enqueued_at_s=300.0)])
    assert w.oldest_s() == 300.0
    w.spill = Spill([])
    assert w.oldest_s() == 500.0


def test_remove_waiting_takes_late_messages_held_behind_spilled_ones_too():
    w = state()
    late = [msg(30), msg(31)]
    w.queue.extend([msg(1), msg(2)])
    w.spill = Spill([], late=late)
    removed = w.remove_waiting({1, 31})
    assert [m.seq for m in removed] == [1, 31]
    assert [m.seq for m in w.spill.late] == [30]
    assert [m.seq for m in w.remove_waiting(None)] == [2, 30]


def test_remove_waiting_leaves_the_spilled_messages_in_the_file_to_the_caller():
    w = state()
    w.spill = Spill([msg(10)])  # (held: what the spill read of the file)
    assert w.remove_waiting(None) == []


# ----- removal and expiry ----------------------------------------------------------------------


def test_remove_waiting_forgets_the_expiry_entries_of_what_it_removed():
    w = state()
    a, b = msg(1), msg(2)
    w.queue.extend([a, b])
    w.expiring = [(50.0, 1, a), (60.0, 2, b)]
    w.aging = [(10.0, 2, b), (20.0, 1, a)]
    assert [m.seq for m in w.remove_waiting({2})] == [2]
    assert (w.expiring, w.aging) == ([(50.0, 1, a)], [(20.0, 1, a)])


def test_remove_waiting_keeps_aging_entries_when_only_aging_ones_exist():
    w = state()
    a, b = msg(1), msg(2)
    w.queue.extend([a, b])
    w.aging = [(30.0, 2, b), (10.0, 1, a), (20.0, 3, msg(3))]
    w.remove_waiting({1})
    assert w.aging[0][:2] == (20.0, 3)  # a heap again: the soonest first
    assert sorted(e[1] for e in w.aging) == [2, 3]


def test_remove_waiting_drops_delayed_messages_that_expired_and_starts_their_record_afresh():
    w = state()
    w.delay(msg(1, due_at_s=5.0))
    w.delay(msg(2, due_at_s=6.0))
    w.delay(msg(3, due_at_s=7.0))
    w.delayed_gone = {2}  # expired while delayed: its heap entry is left for later
    assert [m.seq for m in w.remove_waiting({3})] == [3]
    assert ([e[1] for e in w.delayed], w.delayed_gone) == ([1], set())


def test_due_skips_delayed_messages_that_expired_and_forgets_them():
    w = state()
    w.delay(msg(1, due_at_s=5.0))
    w.delay(msg(2, due_at_s=6.0))
    w.delay(msg(3, due_at_s=7.0))
    w.delayed_gone = {2, 99}
    assert [m.seq for m in w.due(10.0)] == [1, 3]
    assert w.delayed_gone == {99}


def test_waiting_with_a_limit_leaves_out_expired_delayed_ones_and_still_fills_the_limit():
    w = state()
    for seq, due in ((1, 5.0), (2, 6.0), (3, 7.0), (4, 8.0)):
        w.delay(msg(seq, due_at_s=due))
    w.delayed_gone = {1, 2}
    assert [m.seq for m in w.waiting(2)] == [3, 4]
    assert [m.seq for m in w.waiting()] == [3, 4]


# ----- a worker's gate, row, and what new objects start from ------------------------------------


def test_ready_asks_the_gate_about_this_worker():
    w = state()
    w.handler = object()
    w.queue.extend([msg(1)])
    asked = []
    w.gate = lambda worker: asked.append(worker) or False
    assert w.ready() is False and asked == [w]
    w.gate = lambda worker: True
    assert w.ready() is True


def test_the_row_keeps_how_many_traces_the_worker_keeps():
    w = state()
    w.keep(25, default=10)
    assert w.row().keep == 25


def test_a_new_worker_has_no_rate_batch_expiry_or_keep_of_its_own():
    w = state()
    assert (w.expiring, w.aging, w.rate_log) == ([], [], deque())
    assert (w.wait_until_s, w.batch_open_s, w.keep_traces, w.batch_extra) == (None, None, None, 0)
    assert w.delayed_gone == set() and w.gate is None


def test_a_new_run_has_nothing_asked_of_it_yet():
    run = Run(msg(1), 0, 5.0, 0.0, None, None, Policy())
    assert (run.stop, run.interrupt, run.calls, run.superseded) == (None, None, None, None)
    assert (run.messages, run.input_data, run.batch_index) == (None, None, 0)


def test_a_new_message_has_no_priority_expiry_or_progress():
    m = Message(1, "w", 0.0, 1, b"")
    assert (m.priority, m.expires_at_s, m.expired) == (0, None, False)
    assert Message(2, "w", 0.0, 1, b"", priority=3, expires_at_s=9.0).expires_at_s == 9.0
    m.progress(3, 10, "rows")
    assert m.progress_now == Progress(3, 10, "rows")
    m.progress(4)
    assert m.progress_now == Progress(4, None, "")
