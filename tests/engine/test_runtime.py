"""The runtime through its Python API: delivery, concurrency, pause, traces, replay, restart."""

from __future__ import annotations

import threading
import time

import pytest

from nbworkers import handlers
from nbworkers.engine import Runtime
from nbworkers.engine import dispatch as runtime
from nbworkers.errors import NBWorkersError
from nbworkers.handlers import from_function
from nbworkers.store import MemoryStore
from tests.conftest import open_runtime
from tests.ondisk import rows
from tests.waiting import wait_until


@pytest.fixture
def make_runtime(tmp_path):
    made = []

    def make(path=None, **kw):
        rt = open_runtime(str(path or tmp_path / "q.duckdb"), **kw)
        made.append(rt)
        return rt

    yield make
    for rt in made:
        rt.stop()


def define(rt, name, fn, **kw):
    rt.define(name, from_function(name, fn), **kw)


def test_every_message_is_handled_once_with_its_own_copy(make_runtime):
    rt = make_runtime()
    seen = []
    define(rt, "w", lambda e: seen.append(e) or e["n"])
    value = {"n": 0}
    ids = []
    for i in range(100):
        value["n"] = i  # the snapshot is taken at emit time
        ids.append(rt.emit(value, "w"))
    assert rt.wait("w", 10)
    assert sorted(e["n"] for e in seen) == list(range(100))
    assert len(set(ids)) == 100 and all(i.startswith("m") for i in ids)
    assert rt.counts("w") == {
        "queued": 0,
        "running": 0,
        "done": 100,
        "failed": 0,
        "dead": 0,
        "retried": 0,
        "oldest_age_s": None,
    }


def test_unpicklable_events_raise_type_error_naming_the_type_and_enqueue_nothing(make_runtime):
    rt = make_runtime()
    rt.pause("w")
    with pytest.raises(TypeError, match=r"_thread\.lock") as info:
        rt.emit(threading.Lock(), "w")
    assert "Nothing was enqueued" in str(info.value)
    with pytest.raises(TypeError):
        rt.emit_many([1, 2, threading.Lock()], "w")
    assert rt.counts("w")["queued"] == 0


def test_bad_names_are_refused(make_runtime):
    rt = make_runtime()
    with pytest.raises(ValueError, match="1 to 64"):
        rt.emit(1, "no spaces")


def test_concurrency_is_never_exceeded_and_workers_run_in_parallel(make_runtime):
    rt = make_runtime()
    lock = threading.Lock()
    now = {"a": 0, "b": 0}
    peak = {"a": 0, "b": 0}

    def handler(name):
        def run(event):
            with lock:
                now[name] += 1
                peak[name] = max(peak[name], now[name])
            time.sleep(0.01)
            with lock:
                now[name] -= 1

        return run

    define(rt, "a", handler("a"), concurrency=3)
    define(rt, "b", handler("b"), concurrency=1)
    rt.emit_many(range(40), "a")
    rt.emit_many(range(10), "b")
    assert rt.wait(timeout=20)
    assert peak == {"a": 3, "b": 1}


def test_order_is_fifo_with_concurrency_one(make_runtime):
    rt = make_runtime()
    seen = []
    rt.pause("w")
    rt.emit_many(range(50), "w")
    define(rt, "w", seen.append, concurrency=1)
    rt.resume("w")
    assert rt.wait("w", 10)
    assert seen == list(range(50))


def test_set_concurrency_changes_the_limit_while_running(make_runtime):
    rt = make_runtime()
    gate = threading.Event()
    define(rt, "w", lambda e: gate.wait(10), concurrency=1)
    rt.emit_many(range(6), "w")
    deadline = time.monotonic() + 5
    while rt.counts("w")["running"] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    rt.set_concurrency("w", 4)
    while rt.counts("w")["running"] < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert rt.counts("w")["running"] == 4
    gate.set()
    assert rt.wait("w", 10)


def test_a_failing_run_is_recorded_and_the_next_message_goes_on(make_runtime):
    rt = make_runtime()

    def handler(event):
        print("about to look at", event)
        if event == 2:
            raise ValueError("two is bad")
        return event * 10

    define(rt, "w", handler, concurrency=1)
    rt.emit_many([1, 2, 3], "w")
    assert rt.wait("w", 10)
    assert rt.counts("w") == {
        "queued": 0,
        "running": 0,
        "done": 2,
        "failed": 1,
        "dead": 1,
        "retried": 0,
        "oldest_age_s": None,
    }
    newest, failed, first = rt.traces("w")
    assert (newest.input, newest.result, newest.error) == (3, 30, None)
    assert failed.input == 2 and failed.result is None
    assert "ValueError: two is bad" in failed.error and "handler" in failed.error
    assert failed.stdout == "about to look at 2\n"
    assert first.duration >= 0 and first.started_at.tzinfo is not None


def test_system_exit_and_keyboard_interrupt_fail_the_run_not_the_runtime(make_runtime):
    rt = make_runtime()

    def handler(event):
        raise event()

    define(rt, "w", handler, concurrency=1)
    rt.emit_many([SystemExit, KeyboardInterrupt], "w")
    assert rt.wait("w", 10)
    assert rt.counts("w")["failed"] == 2
    define(rt, "w", lambda e: "alive")
    rt.emit(1, "w")
    assert rt.wait("w", 10)
    assert rt.traces("w")[0].result == "alive"


def test_only_the_last_traces_are_kept(make_runtime):
    rt = make_runtime(traces_kept=3)
    define(rt, "w", lambda e: e, concurrency=1)
    rt.emit_many(range(10), "w")
    assert rt.wait("w", 10)
    assert [t.input for t in rt.traces("w")] == [9, 8, 7]


def test_unhandled_messages_wait_for_their_worker(make_runtime):
    rt = make_runtime()
    rt.emit_many(["a", "b"], "later")
    assert rt.unhandled() == {"later": 2}
    seen = []
    define(rt, "later", seen.append)
    assert rt.wait("later", 5)
    assert sorted(seen) == ["a", "b"] and rt.unhandled() == {}


def test_pause_holds_messages_until_resume(make_runtime):
    rt = make_runtime()
    seen = []
    define(rt, "w", seen.append, paused=True)
    rt.emit_many(range(5), "w")
    assert not rt.wait("w", 0.3)
    assert seen == [] and rt.counts("w")["queued"] == 5 and rt.is_paused("w")
    rt.resume("w")
    assert rt.wait("w", 5) and len(seen) == 5 and not rt.is_paused("w")


def test_wait_without_a_name_ignores_paused_and_unhandled(make_runtime):
    rt = make_runtime()
    define(rt, "p", print, paused=True)
    rt.emit(1, "p")
    rt.emit(1, "nobody")
    assert rt.wait(timeout=1)


def test_replay_runs_in_the_caller_and_raises(make_runtime, capsys):
    rt = make_runtime()
    calls = []

    def handler(event):
        calls.append(threading.current_thread().name)
        print("handling", event)
        if event == "bad":
            raise KeyError(event)
        return event.upper()

    define(rt, "w", handler)
    rt.emit("ok", "w")
    assert rt.wait("w", 5)
    assert rt.replay("w") == "OK"
    assert calls[-1] == threading.current_thread().name
    assert "handling ok" in capsys.readouterr().out
    rt.emit("bad", "w")
    assert rt.wait("w", 5)
    failed = rt.traces("w")[0]
    with pytest.raises(KeyError):
        rt.replay("w", failed.id)
    newest = rt.traces("w")[0]
    assert newest.replay and newest.input == "bad" and "KeyError" in newest.error
    with pytest.raises(NBWorkersError, match="no trace"):
        rt.replay("w", "t999999")


def test_a_failed_trace_shows_the_handler_frames_not_the_runtime(make_runtime):
    rt = make_runtime()

    def one_arg(event):
        raise ValueError(f"bad {event}")

    def two_args(event, message):
        raise ValueError(f"bad {event}")

    define(rt, "one", one_arg)
    define(rt, "two", two_args)
    rt.emit(1, "one")
    rt.emit(2, "two")
    assert rt.wait("one", 5) and rt.wait("two", 5)
    for name, fn, event in (("one", "one_arg", 1), ("two", "two_args", 2)):
        error = rt.traces(name)[0].error
        frames = [line for line in error.splitlines() if line.lstrip().startswith("File ")]
        # The reader's first frame is their own code: nbworkers' frames are noise there.
        assert len(frames) == 1 and fn in frames[0], error
        assert runtime.__file__ not in error and handlers.__file__ not in error
        assert error.startswith("Traceback (most recent call last):")
        assert error.rstrip().endswith(f"ValueError: bad {event}")


def test_a_replay_trace_says_so_in_its_repr(make_runtime):
    rt = make_runtime()
    define(rt, "w", lambda e: e)
    rt.emit("x", "w")
    assert rt.wait("w", 5)
    rt.replay("w")
    replayed, original = rt.traces("w")
    assert "replay" in repr(replayed) and "replay" not in repr(original)


def test_restart_delivers_queued_messages_and_keeps_state(make_runtime, tmp_path):
    rt = make_runtime()
    define(rt, "w", lambda e: e)
    rt.emit_many(range(3), "w")
    assert rt.wait("w", 5)
    rt.pause("w")
    ids = rt.emit_many(range(3, 8), "w")
    rt.emit("x", "nobody")
    rt.stop()

    # Given a new runtime on the same file
    rt2 = make_runtime()
    assert rt2.is_paused("w")
    counts = rt2.counts("w")
    assert 0 <= counts.pop("oldest_age_s") < 60
    assert counts == {"queued": 5, "running": 0, "done": 3, "failed": 0, "dead": 0, "retried": 0}
    assert rt2.unhandled() == {"nobody": 1, "w": 5}
    assert sorted(t.input for t in rt2.traces("w")) == [0, 1, 2]
    assert all(t.ok for t in rt2.traces("w"))
    seen = []
    define(rt2, "w", seen.append)
    rt2.resume("w")
    assert rt2.wait("w", 5)
    assert sorted(seen) == list(range(3, 8))
    new_id = rt2.emit(0, "w")
    assert new_id not in ids and int(new_id[1:]) > max(int(i[1:]) for i in ids)


def test_messages_running_at_a_crash_are_delivered_again(make_runtime, tmp_path):
    # Given four messages, the first two running (and hanging) on two run threads
    rt = make_runtime()
    gate = threading.Event()
    started = []
    define(rt, "w", lambda e: started.append(e) or gate.wait(30), concurrency=2)
    rt.emit_many(range(4), "w")
    assert wait_until(lambda: len(started) == 2)
    rt.flush()
    # When the runtime stops while the two runs hang (as if the kernel died)
    rt.stop(timeout_s=0.2)
    gate.set()
    # Then a new runtime on the file delivers all four again: the two that had started as
    # their second attempt, the two that had not as their first
    rt2 = make_runtime()
    assert rt2.counts("w")["queued"] == 4
    runs = []
    rt2.define(
        "w", handlers.from_function("w", lambda e, message: runs.append((e, message.attempt)))
    )
    assert rt2.wait("w", 10)
    assert sorted(runs) == [(0, 2), (1, 2), (2, 1), (3, 1)]


def test_message_ids_are_never_reused_even_after_a_purge_and_a_restart(make_runtime):
    # Given messages m1.. emitted, then purged: none is left in the file to count from
    rt = make_runtime()
    rt.pause("w")
    ids = rt.emit_many(range(3), "w")
    assert rt.purge("w") == 3
    rt.stop()
    # When the runtime starts again on the same file
    rt2 = make_runtime()
    assert rt2.counts("w")["queued"] == 0
    # Then the next id is a new one, after the purged ones
    new_id = rt2.emit("x", "w")
    assert new_id not in ids and int(new_id[1:]) > max(int(i[1:]) for i in ids), (new_id, ids)


def test_flush_puts_emits_on_disk(make_runtime, tmp_path):
    import duckdb

    rt = make_runtime()
    rt.emit_many(range(7), "nobody")
    rt.flush()
    rt.stop()
    con = duckdb.connect(str(tmp_path / "q.duckdb"), read_only=True)
    assert con.execute("select count(*) from messages").fetchone()[0] == 7


def test_a_write_failure_is_reported_by_flush_and_nothing_is_lost(make_runtime):
    rt = make_runtime(store=MemoryStore())
    rt.store.fail_with = OSError("No space left on device")
    rt.emit_many(range(3), "nobody")
    with pytest.raises(NBWorkersError, match="No space left"):
        rt.flush()
    rt.store.fail_with = None
    rt.flush()
    assert rt.store.load().messages and len(rt.store.load().messages) == 3


def test_stopping_while_writes_fail_says_what_is_lost(make_runtime, capfd):
    # Given a file that cannot be written (a full disk), and messages emitted since
    store = MemoryStore()
    rt = make_runtime(store=store)
    store.fail_with = OSError("No space left on device")
    rt.emit_many(range(3), "nobody")
    with pytest.raises(NBWorkersError, match="No space left"):
        rt.flush()
    # When the runtime stops (%unload_ext, kernel shutdown) with the write still failing
    rt.stop()
    # Then stderr says that what was emitted since the last write is lost, and it is
    err = capfd.readouterr().err
    assert "stopping with unwritten changes" in err, err
    assert "messages emitted since the last successful write are lost" in err, err
    store.fail_with = None
    assert make_runtime(store=store).unhandled() == {}


def test_emit_after_stop_says_how_to_recover(make_runtime):
    rt = make_runtime()
    rt.stop()
    with pytest.raises(NBWorkersError, match=r"Nothing was enqueued.*Emit again once"):
        rt.emit(1, "w")


def test_stop_leaves_no_thread_behind(make_runtime):
    rt = make_runtime()
    define(rt, "a", print)
    define(rt, "b", print, concurrency=8)
    rt.stop()
    rt.stop()
    assert not [t for t in threading.enumerate() if t.name.startswith("nbworkers")]


def test_emit_from_handlers_and_threads(make_runtime):
    rt = make_runtime()
    seen = []

    def fan_out(event):
        for i in range(event):
            rt.emit(i, "leaf")

    define(rt, "fan", fan_out)
    define(rt, "leaf", seen.append)
    threads = [threading.Thread(target=rt.emit, args=(10, "fan")) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deadline = time.monotonic() + 10
    while len(seen) < 40 and time.monotonic() < deadline:
        rt.wait(timeout=1)
    assert len(seen) == 40


def test_stop_writes_the_runs_that_end_while_it_waits(tmp_path):
    rt = Runtime(str(tmp_path / "q.duckdb"))
    started = threading.Event()
    rt.define("w", from_function("w", lambda e: started.set() or time.sleep(0.3)))
    rt.emit(1, "w")
    assert started.wait(5)
    rt.stop(timeout_s=5)
    path = tmp_path / "q.duckdb"
    assert rows(path, "select count(*) from messages") == [(0,)]
    assert rows(path, "select done from workers where name = 'w'") == [(1,)]
    assert rows(path, "select count(*) from traces") == [(1,)]
