"""Results by id: nw.result(message_id), kept in the database for results_kept_s."""

from __future__ import annotations

import threading

import duckdb
import pytest

import nbworkers as nw
from nbworkers.engine.policy import Policy
from nbworkers.errors import ArgumentValueError, MessageFailed, NBWorkersError
from nbworkers.handlers import from_function
from nbworkers.store import SCHEMA_VERSION, MemoryStore
from tests.conftest import Clock, open_runtime
from tests.waiting import wait_until


def define(rt, name, fn, **policy):
    concurrency = policy.pop("concurrency", None)
    rt.define(name, from_function(name, fn), concurrency, policy=Policy(**policy))


class Thing:
    """A result that is not a plain value (pickled through the bounded buffer)."""

    def __init__(self, n):
        self.n = n

    def __eq__(self, other):
        return isinstance(other, Thing) and other.n == self.n


def test_result_of_a_done_message_is_a_fresh_copy(make_runtime):
    rt = make_runtime()
    kept = []

    def handler(event):
        value = {"doubled": event * 2}
        kept.append(value)
        return value

    define(rt, "double", handler)
    mid = rt.emit(21, "double")
    got = rt.result(mid, timeout=10)
    assert got == {"doubled": 42}
    assert got is not kept[0]  # unpickled: changing it changes nothing kept
    got["doubled"] = 0
    assert rt.result(mid) == {"doubled": 42}


def test_result_none_and_objects_and_a_result_that_cannot_be_kept(make_runtime):
    rt = make_runtime(result_max_bytes=1000)
    define(rt, "w", lambda e: None if e == "none" else Thing(1) if e == "thing" else b"x" * 5000)
    none, thing, big = (rt.emit(e, "w") for e in ("none", "thing", "big"))
    assert rt.result(none, timeout=10) is None
    assert rt.result(thing, timeout=10) == Thing(1)
    with pytest.raises(NBWorkersError, match=r"is done, but its result was not kept.*b'xxx"):
        rt.result(big, timeout=10)


def test_result_of_a_failed_message_raises_message_failed_once_it_is_dead(make_runtime):
    rt = make_runtime()

    def handler(event):
        raise ValueError(f"bad {event}")

    define(rt, "w", handler)
    mid = rt.emit(7, "w")
    with pytest.raises(MessageFailed) as info:
        rt.result(mid, timeout=10)
    err = info.value
    assert isinstance(err, NBWorkersError) and nw.MessageFailed is MessageFailed
    assert (err.message_id, err.worker) == (mid, "w")
    assert "ValueError: bad 7" in str(err) and "Traceback" in err.traceback
    # The dead letter keeps its own error line; its group the whole traceback (#22).
    letter = rt.dead_letters("w")[0]
    assert err.traceback.rstrip().endswith("\n" + letter["error"])
    assert rt.failures("w")[0].fingerprint == letter["fingerprint"]


def test_result_waits_through_retries_and_returns_the_retry_s_result(make_runtime):
    rt = make_runtime()
    gate = threading.Event()
    attempts = []

    def handler(event, message):
        attempts.append(message.attempt)
        if message.attempt == 1:
            gate.wait(10)  # nw.result is waiting by now
            raise ValueError("first attempt fails")
        return f"ok on attempt {message.attempt}"

    define(rt, "w", handler, retries=2, backoff_s=0)
    mid = rt.emit("x", "w")
    answer = {}
    waiter = threading.Thread(target=lambda: answer.setdefault("r", rt.result(mid, timeout=10)))
    waiter.start()
    # The waiter registered before the failure: it is woken only by the retry's end.
    assert wait_until(lambda: rt.results.waiters)
    gate.set()
    waiter.join(10)
    assert answer == {"r": "ok on attempt 2"} and attempts == [1, 2]


def test_result_of_a_message_still_queued_times_out_and_waits_in_memory(make_runtime):
    rt = make_runtime()
    define(rt, "w", lambda e: e + 1)
    rt.pause("w")
    mid = rt.emit(1, "w")
    with pytest.raises(TimeoutError, match=rf"{mid} has not ended within 0.05 s.*queued.*'w'"):
        rt.result(mid, timeout=0.05)
    assert rt.results.waiters == {}  # the waiter went with the call

    # A waiter is woken by the run's end, not by reading the database again
    reads = []
    store_read = rt.store.result_of
    rt.store.result_of = lambda seq: reads.append(seq) or store_read(seq)
    got = {}
    waiter = threading.Thread(target=lambda: got.setdefault("r", rt.result(mid, timeout=None)))
    waiter.start()
    assert wait_until(lambda: rt.results.waiters)
    rt.resume("w")
    waiter.join(10)
    assert got == {"r": 2} and len(reads) == 1


def test_results_survive_a_restart(make_runtime):
    rt = make_runtime()
    define(rt, "w", lambda e: [e, e])
    define(rt, "bad", lambda e: 1 / 0)
    done, dead = rt.emit("a", "w"), rt.emit(0, "bad")
    assert rt.wait(None, 10)
    rt.pause("w")
    queued = rt.emit("b", "w")
    rt.stop()

    rt2 = make_runtime()  # no worker defined yet
    assert rt2.result(done) == ["a", "a"]
    with pytest.raises(MessageFailed, match="ZeroDivisionError"):
        rt2.result(dead)
    with pytest.raises(TimeoutError):
        rt2.result(queued, timeout=0.01)
    define(rt2, "w", lambda e: [e, e])
    rt2.resume("w")
    assert rt2.result(queued, timeout=10) == ["b", "b"]


def test_unknown_ids_say_which_and_why(make_runtime):
    rt = make_runtime()
    define(rt, "w", lambda e: e)
    mid = rt.emit(1, "w")
    rt.result(mid, timeout=10)
    with pytest.raises(NBWorkersError, match=r"no message m999 was ever emitted"):
        rt.result("m999")
    [trace] = rt.traces("w")
    with pytest.raises(NBWorkersError, match=r"no result is kept for m\d+.*results_kept_s"):
        rt.result(f"m{trace.seq}")  # a trace's number, never a message's
    with pytest.raises(ArgumentValueError, match="not an nbworkers id"):
        rt.result("t1")
    with pytest.raises(TypeError, match="give a message id"):
        rt.result(1)
    with pytest.raises(ArgumentValueError, match="timeout must be seconds"):
        rt.result(mid, timeout=-1)


def test_cancelled_and_purged_messages_end_as_failed(make_runtime):
    rt = make_runtime()
    rt.pause("w")
    a, b = rt.emit(1, "w"), rt.emit(2, "w")
    assert rt.cancel(a)
    assert rt.purge("w") == 1
    for mid in (a, b):
        with pytest.raises(MessageFailed, match="removed from its queue before it ran"):
            rt.result(mid)


def test_expired_results_are_pruned_and_say_so(tmp_path):
    clock = Clock(1_000_000.0)
    store = MemoryStore()
    rt = open_runtime(str(tmp_path / "q"), store=store, clock=clock, results_kept_s=100.0)
    define(rt, "w", lambda e: e)
    old = rt.emit("old", "w")
    assert rt.result(old, timeout=10) == "old"
    rt.flush()  # its row is written, then time passes
    clock.now += 101  # now over results_kept_s ago
    with pytest.raises(NBWorkersError, match=r"no longer kept.*results_kept_s \(100 s\)"):
        rt.result(old)
    # The next batch with results prunes it (at most every half results_kept_s)
    new = rt.emit("new", "w")
    assert rt.result(new, timeout=10) == "new"
    rt.flush()
    assert int(old[1:]) not in store.results and int(new[1:]) in store.results
    with pytest.raises(NBWorkersError, match="no result is kept"):
        rt.result(old)
    rt.stop()


def test_a_drain_s_superseded_traces_still_keep_results_by_id(make_runtime):
    rt = make_runtime()
    define(rt, "w", lambda e: e * 10)
    rt.pause("w")
    ids = rt.emit_many(list(range(50)), "w")
    rt.resume("w")
    assert rt.wait("w", 10)
    assert [rt.result(i) for i in ids] == [i * 10 for i in range(50)]


def test_stopping_wakes_a_waiting_result(make_runtime):
    rt = make_runtime()
    rt.pause("w")
    mid = rt.emit(1, "w")
    errors = []

    def wait():
        try:
            rt.result(mid, timeout=30)
        except NBWorkersError as exc:
            errors.append(str(exc))

    waiter = threading.Thread(target=wait)
    waiter.start()
    assert wait_until(lambda: rt.results.waiters)
    rt.stop()
    waiter.join(10)
    assert len(errors) == 1 and "stopped while waiting" in errors[0]


def test_a_schema_3_file_opens_and_gains_results_and_fan_ins(tmp_path):
    path = str(tmp_path / "old.duckdb")
    con = duckdb.connect(path)
    con.execute(
        """CREATE TABLE meta (key VARCHAR, value VARCHAR);
           INSERT INTO meta VALUES ('schema_version', '3'), ('next_seq', '5');
           CREATE TABLE messages (seq BIGINT, worker VARCHAR, enqueued_at DOUBLE,
               attempt INTEGER, data BLOB, started BOOLEAN DEFAULT false, due_at DOUBLE,
               key VARCHAR);
           CREATE TABLE dead_letters (seq BIGINT, worker VARCHAR, enqueued_at DOUBLE,
               attempt INTEGER, data BLOB, key VARCHAR, error VARCHAR, died_at DOUBLE);
           INSERT INTO dead_letters VALUES (3, 'w', 1.0, 1, NULL, NULL,
               'Traceback...\nKeyError: 3', 2.0);"""
    )
    con.close()
    from nbworkers.engine import Runtime

    rt = Runtime(path)
    try:
        tables = {r[0] for r in rt.store.con.execute("SHOW TABLES").fetchall()}
        assert {"results", "fan_ins"} <= tables
        version = rt.store.con.execute(
            "SELECT value FROM meta WHERE key = 'schema_version'"
        ).fetchone()[0]
        assert version == str(SCHEMA_VERSION) and SCHEMA_VERSION >= 4
        # A dead letter written before results were kept still answers, however old
        with pytest.raises(MessageFailed, match="KeyError: 3"):
            rt.result("m3")
        define(rt, "w", lambda e: e)
        mid = rt.emit(5, "w")
        assert rt.result(mid, timeout=10) == 5
    finally:
        rt.stop()


# ----- in a kernel ------------------------------------------------------------------------------


def test_kernel_result_of_done_dead_retried_and_queued_messages(kernel):
    kernel.ok("%%worker square\nevent * event")
    kernel.ok("%%worker broken\nraise KeyError(event)")
    kernel.ok(
        "%%worker flaky --retries 2 --backoff 0\n"
        "if message.attempt < 3:\n    raise RuntimeError(f'attempt {message.attempt}')\n"
        "{'attempts': message.attempt}"
    )
    kernel.ok("%%worker later --paused\nevent")
    kernel.ok(
        "done, dead = emit(7, 'square'), emit('k', 'broken')\n"
        "retried, queued = emit(1, 'flaky'), emit(2, 'later')"
    )
    assert kernel.eval("nw.result(done)") == 49
    assert kernel.eval("nw.result(retried, timeout=30)") == {"attempts": 3}
    reply = kernel.run("nw.result(dead)")
    assert reply.ename == "MessageFailed"
    assert "failed: KeyError: 'k'" in reply.evalue
    kernel.ok(
        "try:\n    nw.result(dead)\nexcept nw.MessageFailed as exc:\n    failure = exc\n"
        "assert failure.message_id == dead and failure.worker == 'broken'\n"
        "assert failure.traceback.rstrip().endswith(\"KeyError: 'k'\")"
    )
    reply = kernel.run("nw.result(queued, timeout=0.1)")
    assert reply.ename == "TimeoutError" and "still queued or running for 'later'" in reply.evalue


def test_kernel_results_answer_after_the_kernel_is_killed(kernel):
    kernel.ok("%%worker upper\nevent.upper()")
    kernel.ok("%%worker broken\n1 / 0")
    kernel.ok("a, b = emit('x', 'upper'), emit(0, 'broken')\nnw.wait(timeout=30)")
    ids = kernel.eval("(a, b)")
    kernel.ok("nw.flush()")
    kernel.kill()
    kernel.ok("%load_ext nbworkers\nimport nbworkers as nw")
    assert kernel.eval(f"nw.result({ids[0]!r})") == "X"
    reply = kernel.run(f"nw.result({ids[1]!r})")
    assert reply.ename == "MessageFailed" and "ZeroDivisionError" in reply.evalue
