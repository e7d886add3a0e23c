"""Batches (--batch N --batch-wait S): one run takes up to N ready messages, its handler gets the
lists of their events and messages, and the batch ends as a unit (done, retried, dead); one
trace a batch. The batch wait is timed by a fake clock moved by hand."""

from __future__ import annotations

import pytest

from nbworkers import api
from nbworkers.engine.policy import DEFAULT_BATCH_WAIT_S, Policy
from nbworkers.errors import ArgumentValueError
from nbworkers.handlers import from_cell, from_function
from nbworkers.message import Message
from tests.conftest import Clock
from tests.executors.test_executors import dask_client  # noqa: F401 - a fixture
from tests.waiting import wait_until

T0 = 1_000_000.0


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"batch": 0}, "batch must be a whole number of messages from 1 to 100,000"),
        ({"batch": 1.5}, "batch must be a whole number"),
        ({"batch": 100_001}, "batch must be a whole number"),
        ({"batch_wait_s": 0.2}, "batch_wait needs batch"),
        ({"batch": 5, "batch_wait_s": -1}, "batch_wait must be a number of seconds from 0"),
        ({"batch": 5, "batch_wait_s": float("inf")}, "batch_wait must be a number of seconds"),
    ],
)
def test_bad_batch_options_say_what_is_wrong(kw, words):
    with pytest.raises(ArgumentValueError, match=words):
        Policy(**kw)


def test_the_batch_wait_defaults_to_one_second():
    assert Policy(batch=500).batch_wait_s == DEFAULT_BATCH_WAIT_S == 1.0
    assert Policy(batch=500, batch_wait_s=0).batch_wait_s == 0


def _recorder(runs, fail=lambda events, messages: False):
    def handler(events, messages):
        runs.append((list(events), list(messages), [m.attempt for m in messages]))
        if fail(events, messages):
            raise ValueError(f"bad batch {events}")
        return sum(events)

    return handler


def _idle(rt, name):
    counts = rt.counts(name)
    return counts["running"] == 0


def test_full_batches_run_at_once_and_a_partial_one_after_its_wait(make_runtime):
    # Given a worker taking batches of 5 that wait at most 2 s
    clock = Clock(T0)
    rt = make_runtime(clock=clock)
    runs = []
    rt.define(
        "load", from_function("load", _recorder(runs)), 4, policy=Policy(batch=5, batch_wait_s=2)
    )
    # When 12 messages are emitted at once
    ids = rt.emit_many(range(12), "load")
    assert wait_until(lambda: len(runs) == 2 and _idle(rt, "load"))
    # Then two full batches ran, each with its events and Message objects in queue order (two
    # slots: either may have started first)
    runs.sort(key=lambda run: run[0][0])
    assert [events for events, *_ in runs] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert all(isinstance(m, Message) for _, ms, _ in runs for m in ms)
    assert [m.id for _, ms, _ in runs for m in ms] == ids[:10]
    counts = rt.counts("load")
    assert (counts["queued"], counts["running"], counts["done"]) == (2, 0, 10)
    # and the two left wait for more, until their wait is over
    clock.now = T0 + 1.9
    rt.run_timers(clock.now)
    assert rt.wait("load", 0.2) is False
    clock.now = T0 + 2.0
    rt.run_timers(clock.now)
    assert rt.wait("load", 10)
    assert runs[2][0] == [10, 11]
    assert rt.counts("load")["done"] == 12


def test_a_partial_batch_fills_up_when_more_messages_come(make_runtime):
    clock = Clock(T0)
    rt = make_runtime(clock=clock)
    runs = []
    rt.define("load", from_function("load", _recorder(runs)), policy=Policy(batch=4))
    rt.emit_many([1, 2], "load")
    assert rt.wait("load", 0.2) is False and runs == []  # waiting: neither run nor running
    assert rt.counts("load")["running"] == 0
    rt.emit_many([3, 4, 5], "load")
    assert wait_until(lambda: len(runs) == 1)
    assert runs[0][0] == [1, 2, 3, 4]
    # The one left stays in the collection begun at T0: it runs a batch wait after that
    clock.now = T0 + DEFAULT_BATCH_WAIT_S - 0.01
    rt.run_timers(clock.now)
    assert rt.wait("load", 0.2) is False
    clock.now = T0 + DEFAULT_BATCH_WAIT_S
    rt.run_timers(clock.now)
    assert rt.wait("load", 10)
    assert [events for events, *_ in runs] == [[1, 2, 3, 4], [5]]


def test_one_trace_per_batch_saying_which_messages_it_covered(make_runtime):
    rt = make_runtime()
    runs = []
    rt.define(
        "load", from_function("load", _recorder(runs)), 1, policy=Policy(batch=3, batch_wait_s=0)
    )
    rt.pause("load")
    ids = rt.emit_many([1, 2, 3, 4, 5, 6], "load")
    rt.resume("load")
    assert rt.wait("load", 10)
    traces = rt.traces("load")
    assert len(traces) == 2
    newest, oldest = traces
    assert oldest.input == [1, 2, 3] and oldest.result == 6
    assert oldest.message_ids == ids[:3] and oldest.batch_size == 3
    assert newest.message_ids == ids[3:] and newest.message_id == ids[3]
    assert "batch of 3" in repr(newest)
    # Kept in the file: a new runtime has the same
    rt.stop()
    rt2 = make_runtime()
    assert [(t.input, t.message_ids, t.batch_size) for t in rt2.traces("load")] == [
        ([4, 5, 6], ids[3:], 3),
        ([1, 2, 3], ids[:3], 3),
    ]


def test_a_batch_takes_one_slot(make_runtime):
    # Given one slot and batches of 2: the batches run one after the other
    rt = make_runtime()
    runs = []
    active = []

    def handler(events, messages):
        active.append(len(active))
        runs.append(events)
        assert len(active) == 1
        active.pop()

    rt.define("load", from_function("load", handler), 1, policy=Policy(batch=2, batch_wait_s=0))
    rt.pause("load")
    rt.emit_many(range(6), "load")
    rt.resume("load")
    assert rt.wait("load", 10)
    assert runs == [[0, 1], [2, 3], [4, 5]]
    assert all(t.ok for t in rt.traces("load"))


def test_a_failed_batch_retries_each_message_then_each_is_a_dead_letter(make_runtime):
    # Given batches of 3 that always fail, with one retry and no backoff
    rt = make_runtime()
    runs, told = [], []
    rt.on_failure(lambda worker, trace: told.append(trace.id))
    handler = _recorder(runs, fail=lambda events, messages: True)
    rt.define(
        "load",
        from_function("load", handler),
        1,
        policy=Policy(batch=3, batch_wait_s=0, retries=1, backoff_s=0),
    )
    rt.pause("load")
    ids = rt.emit_many(["a", "b", "c"], "load")
    rt.resume("load")
    assert rt.wait("load", 10)
    # Then the batch ran twice as a unit (attempts 1 then 2, in order), and then every
    # message is a dead letter with the batch's error
    assert [(events, attempts) for events, _, attempts in runs] == [
        (["a", "b", "c"], [1, 1, 1]),
        (["a", "b", "c"], [2, 2, 2]),
    ]
    counts = rt.counts("load")
    assert (counts["done"], counts["failed"], counts["dead"], counts["retried"]) == (0, 3, 3, 3)
    letters = rt.dead_letters("load")
    assert [d["id"] for d in letters] == ids
    assert all("ValueError: bad batch" in d["error"] for d in letters)
    assert [t.attempt for t in rt.traces("load")] == [2, 1]
    # and on_failure heard of each failed run once, not once a message
    assert wait_until(lambda: len(told) == 2)


def test_a_batch_past_its_time_limit_fails_as_a_unit(make_runtime):
    clock = Clock(T0)
    rt = make_runtime(clock=clock)
    import threading

    release = threading.Event()

    def handler(events, messages):
        release.wait(10)

    rt.define(
        "load",
        from_function("load", handler),
        policy=Policy(batch=2, batch_wait_s=0, timeout_s=5),
    )
    rt.emit_many(["a", "b"], "load")
    assert wait_until(lambda: rt.counts("load")["running"] == 2)
    clock.now = T0 + 6
    rt.run_timers(clock.now)
    release.set()
    assert rt.wait("load", 10)
    assert rt.counts("load")["dead"] == 2
    [trace] = rt.traces("load")
    assert trace.timed_out and trace.batch_size == 2


def test_a_rate_limited_batch_takes_one_token(make_runtime):
    clock = Clock(T0)
    rt = make_runtime(clock=clock)
    runs = []
    rt.define(
        "load",
        from_function("load", _recorder(runs)),
        policy=Policy(batch=10, batch_wait_s=0, rate="2/s"),
    )
    rt.pause("load")
    rt.emit_many(range(50), "load")
    rt.resume("load")
    assert wait_until(lambda: len(runs) == 2 and rt.counts("load")["running"] == 0)
    assert rt.wait("load", 0.2) is False
    assert [len(events) for events, *_ in runs] == [10, 10]
    assert rt.counts("load")["queued"] == 30


def test_a_cell_handler_gets_lists(make_runtime):
    rt = make_runtime()
    handler = from_cell("load", "len(event), [m.id for m in message]", {})
    rt.define("load", handler, policy=Policy(batch=2, batch_wait_s=0))
    rt.pause("load")
    ids = rt.emit_many([{"x": 1}, {"x": 2}], "load")
    rt.resume("load")
    assert rt.wait("load", 10)
    assert rt.traces("load")[0].result == (2, ids)
    # A replay of that trace gives the handler the batch's lists again, as does --try
    assert rt.replay("load") == (2, ids)
    from nbworkers.develop.tryout import run_on

    trace = next(t for t in rt.traces("load") if not t.replay)
    row = run_on(from_cell("load", "[m.id for m in message]", {}), trace, "load")
    assert row.new == repr(ids) and not row.new_error


@pytest.mark.parametrize("executor", ["processes", "dask"])
def test_batches_run_in_another_process(executor, fresh_runtime, request):
    if executor == "dask":
        api.use_dask(request.getfixturevalue("dask_client"))
    rt = api.runtime()
    source = (
        "import os\n"
        "if 'bad' in event:\n"
        "    raise ValueError('bad batch')\n"
        "(os.getpid(), sum(event), [m.id for m in message], [m.attempt for m in message])\n"
    )
    handler = from_cell("load", source, {"__name__": "__main__"})
    rt.define("load", handler, policy=Policy(batch=3, batch_wait_s=0, executor=executor))
    rt.pause("load")
    ids = rt.emit_many([1, 2, 3, "bad", 5], "load")
    rt.resume("load")
    assert rt.wait("load", 60)
    traces = {t.message_ids[0]: t for t in rt.traces("load")}
    ok = traces[ids[0]]
    pid, total, seen, attempts = ok.result
    assert pid != __import__("os").getpid()
    assert (total, seen, attempts) == (6, ids[:3], [1, 1, 1])
    bad = traces[ids[3]]
    assert not bad.ok and "ValueError: bad batch" in bad.error and bad.message_ids == ids[3:]
    assert 'File "<worker load #' in bad.error  # the cell's own frame, not nbworkers'
    assert "handlers.py" not in bad.error and "child.py" not in bad.error
    counts = rt.counts("load")
    assert (counts["done"], counts["dead"]) == (3, 2)
    if executor == "dask":
        from nbworkers import current

        current._dask_client = None


# ----- in a notebook ----------------------------------------------------------------------------


def test_batch_options_of_the_magic(kernel):
    # Given a cell taking batches of 3 that wait 0.2 s at most
    kernel.ok("%%worker load --batch 3 --batch-wait 0.2\nlen(event), [m.id for m in message]")
    # When 7 messages are emitted
    ids = kernel.eval("nw.emit_many(list(range(7)), 'load')")
    kernel.ok("assert nw.wait('load', timeout=30)")
    # Then the handler got lists: two full batches and the last one after its wait
    traces = kernel.eval("sorted((t.input, t.result, t.message_ids) for t in nw.traces('load'))")
    assert traces == [
        ([0, 1, 2], (3, ids[:3]), ids[:3]),
        ([3, 4, 5], (3, ids[3:6]), ids[3:6]),
        ([6], (1, ids[6:]), ids[6:]),
    ]
    assert kernel.eval("nw.counts('load')['done']") == 7
    # Bad values say which option is wrong
    reply = kernel.run("%%worker load --batch 0\nevent")
    assert reply.ename == "UsageError" and reply.evalue.startswith("--batch must be a whole")
    reply = kernel.run("%%worker load --batch 5 --batch-wait -1\nevent")
    assert reply.ename == "UsageError" and reply.evalue.startswith("--batch-wait must be")
    reply = kernel.run("%%worker load --batch-wait 1\nevent")
    assert reply.ename == "UsageError" and reply.evalue.startswith("--batch-wait needs batch")
    # and the decorator takes the same
    kernel.ok(
        "@nw.worker('sum', batch=2, batch_wait=0)\ndef total(events):\n    return sum(events)\n"
        "nw.emit_many([1, 2], 'sum')\nassert nw.wait('sum', timeout=30)"
    )
    assert kernel.eval("nw.traces('sum')[0].result") == 3


def test_a_batch_with_an_event_that_cannot_be_unpickled_yet_is_parked_whole(make_runtime):
    import pickle

    import __main__
    from tests.engine.test_user_code import _MISSING_CLASS

    rt = make_runtime()
    runs = []
    rt.define("load", from_function("load", runs.append), 1, policy=Policy(batch=3))
    rt.pause("load")
    rt.intake.enqueue("load", [pickle.dumps(1), _MISSING_CLASS, pickle.dumps(3)])
    rt.resume("load")
    # Then the batch is parked whole, with one trace saying why, and nothing ran
    # (one look a try: while the batch runs, before it is parked, none is waiting)
    assert wait_until(lambda: len(m := rt.messages("load")) == 3 and m[0]["parked"])
    assert runs == [] and rt.counts("load")["running"] == 0
    (trace,) = rt.traces("load")
    assert "cannot be unpickled yet" in trace.error and trace.batch_size == 3
    # and once the class is defined it runs, as one batch again
    __main__.NoSuchClassNbw = type("NoSuchClassNbw", (), {})
    try:
        rt.retry_parked()
        assert rt.wait("load", 10)
    finally:
        del __main__.NoSuchClassNbw
    assert [len(events) for events in runs] == [3]
    assert rt.counts("load")["done"] == 3
