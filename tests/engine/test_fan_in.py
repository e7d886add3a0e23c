"""Fan-in: nw.emit_many(events, name, then="tally") sends tally one event once all ended."""

from __future__ import annotations

import threading

import pytest

from nbworkers.engine.policy import Policy
from nbworkers.errors import ArgumentValueError
from nbworkers.handlers import from_function
from nbworkers.store import MemoryStore
from tests.conftest import open_runtime
from tests.waiting import wait_until


def define(rt, name, fn, **policy):
    concurrency = policy.pop("concurrency", None)
    rt.define(name, from_function(name, fn), concurrency, policy=Policy(**policy))


def collector(rt, name="tally"):
    got = []
    define(rt, name, got.append)
    return got


def test_then_gets_one_event_with_every_result_in_the_group_s_order(make_runtime):
    rt = make_runtime()
    got = collector(rt)
    define(rt, "sq", lambda e: e * e, concurrency=4)
    ids = rt.emit_many([3, 1, 2, 5], "sq", then="tally")
    assert rt.wait(None, 10)
    assert got == [{"results": [9, 1, 4, 25], "errors": [None] * 4, "ids": ids}]
    assert rt.counts("tally")["done"] == 1


def test_failed_members_count_once_dead_with_their_error(make_runtime):
    rt = make_runtime()
    got = collector(rt)

    def handler(event, message):
        if event == "bad" or (event == "flaky" and message.attempt == 1):
            raise ValueError(f"{event} on attempt {message.attempt}")
        return event.upper()

    define(rt, "w", handler, retries=1, backoff_s=0)
    ids = rt.emit_many(["a", "bad", "flaky"], "w", then="tally")
    assert rt.wait(None, 10)
    [event] = got
    assert event["ids"] == ids
    assert event["results"] == ["A", None, "FLAKY"]
    assert event["errors"][0] is None and event["errors"][2] is None
    assert "ValueError: bad on attempt 2" in event["errors"][1]  # its last attempt's
    assert rt.dead_letters("w")[0]["id"] == ids[1]


def test_then_waits_for_dead_letters_not_for_pending_retries(make_runtime):
    rt = make_runtime()
    got = collector(rt)
    gate = threading.Event()

    def handler(event, message):
        if message.attempt == 1:
            raise ValueError("first")
        gate.wait(10)
        return event

    define(rt, "w", handler, retries=1, backoff_s=0)
    rt.emit_many([1, 2], "w", then="tally")
    assert wait_until(lambda: rt.counts("w")["retried"] == 2)
    assert got == []  # both failed once, both retry: not ended
    gate.set()
    assert rt.wait(None, 10) and got[0]["results"] == [1, 2]


def test_cancelled_members_end_the_group_too(make_runtime):
    rt = make_runtime()
    got = collector(rt)
    rt.pause("w")
    ids = rt.emit_many(["a", "b"], "w", then="tally")
    define(rt, "w", lambda e: e)
    assert rt.cancel(ids[0])
    rt.resume("w")
    assert rt.wait(None, 10)
    assert got[0]["results"] == [None, "b"]
    assert "removed from its queue" in got[0]["errors"][0]


def test_an_empty_group_sends_then_at_once(make_runtime):
    rt = make_runtime()
    got = collector(rt)
    assert rt.emit_many([], "w", then="tally") == []
    assert rt.wait(None, 10)
    assert got == [{"results": [], "errors": [], "ids": []}]


@pytest.mark.parametrize("then", ["bad name", "", 3, "t\n"])
def test_then_is_checked_like_a_worker_name_and_nothing_is_queued(make_runtime, then):
    rt = make_runtime()
    with pytest.raises(ArgumentValueError, match="emit_many: then="):
        rt.emit_many([1], "w", then=then)
    assert rt.counts("w")["queued"] == 0


def test_then_results_that_are_objects_are_unpickled_by_the_then_run(make_runtime):
    rt = make_runtime()
    got = collector(rt)
    define(rt, "w", lambda e: {"n": e, "items": list(range(e))})
    rt.emit_many([1, 2], "w", then="tally")
    assert rt.wait(None, 10)
    assert got[0]["results"] == [{"n": 1, "items": [0]}, {"n": 2, "items": [0, 1]}]


def test_a_group_open_at_a_restart_ends_once_with_every_result(make_runtime):
    rt = make_runtime()
    gate = threading.Event()

    def handler(event):
        if event >= 2:
            gate.wait(10)  # still running at the "crash" (their runs end after the stop)
        return event * 10

    define(rt, "w", handler, concurrency=4)
    ids = rt.emit_many([0, 1, 2, 3], "w", then="tally")
    assert wait_until(lambda: rt.counts("w")["done"] == 2 and rt.counts("w")["running"] == 2)
    rt.stop(timeout_s=0.1)  # m2, m3 still running: they stay queued in the file
    gate.set()

    rt2 = make_runtime()
    got = collector(rt2)
    assert rt2.counts("tally")["queued"] == 0  # nothing sent yet: two members to go
    define(rt2, "w", lambda e: e * 10)
    assert rt2.wait(None, 10)
    assert got == [{"results": [0, 10, 20, 30], "errors": [None] * 4, "ids": ids}]
    rt2.stop()

    rt3 = make_runtime()  # nothing more comes: the group ended with its then message
    got3 = collector(rt3)
    assert rt3.wait(None, 10) and got3 == [] and rt3.fan_in.groups == {}


def test_the_then_message_and_the_group_s_end_are_in_one_batch():
    store = MemoryStore()
    rt = open_runtime(":memory:", store=store)
    define(rt, "w", lambda e: e)
    ids = rt.emit_many([1, 2], "w", then="tally")
    assert rt.wait("w", 10)
    rt.flush()
    [ended] = [b for b in store.applied if b.fan_in_deletes]
    assert ended.fan_in_deletes == [int(ids[0][1:])]
    ended_here = {row[0] for row in ended.results}
    assert any(int(i[1:]) in ended_here for i in ids)  # the last member's end
    assert "tally" in [row[1] for row in ended.inserts]  # the then message, same batch
    assert store.fan_ins == {}
    rt.stop()


def test_fan_in_from_a_handler_on_a_thread(make_runtime):
    rt = make_runtime()
    got = collector(rt)
    define(rt, "part", lambda e: e + 100)

    def split(event):
        from nbworkers.engine.dispatch import run_owner

        return run_owner().emit_many(list(range(event)), "part", then="tally")

    define(rt, "split", split)
    rt.emit(3, "split")
    assert wait_until(lambda: got)
    assert got[0]["results"] == [100, 101, 102]


# ----- in a kernel ------------------------------------------------------------------------------

TALLY = (
    "%%worker tally\n"
    "import json\n"
    "with open('tally.jsonl', 'a') as f:\n"
    "    f.write(json.dumps(event) + '\\n')"
)


def tallied(tmp_path) -> list[dict]:
    import json

    path = tmp_path / "tally.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_kernel_fan_in_with_failures(kernel, tmp_path):
    kernel.ok(TALLY)
    kernel.ok(
        "%%worker part --concurrency 3\n"
        "if event == 'bad':\n    raise ValueError('no good')\n"
        "event * 2"
    )
    ids = kernel.eval("nw.emit_many(['a', 'bad', 'c'], 'part', then='tally')")
    kernel.ok("assert nw.wait(timeout=30)")
    [event] = tallied(tmp_path)
    assert event["ids"] == ids and event["results"] == ["aa", None, "cc"]
    assert event["errors"][0] is None and event["errors"][2] is None
    assert event["errors"][1].rstrip().endswith("ValueError: no good")
    reply = kernel.run("nw.emit_many([1], 'part', then='no such')")
    assert reply.ename == "ArgumentValueError" and "emit_many: then=" in reply.evalue


def test_kernel_fan_in_from_a_pool_process(kernel, tmp_path):
    kernel.ok(TALLY)
    kernel.ok("%%worker part\nevent + 1")
    kernel.ok(
        "%%worker split --executor processes\n"
        "import os\n"
        "ids = nw.emit_many(list(range(event)), 'part', then='tally')\n"
        "(ids, os.getpid())"
    )
    kernel.ok("import os\nmid = emit(3, 'split')\nids, pid = nw.result(mid, timeout=60)")
    assert kernel.eval("pid != os.getpid()")
    kernel.ok("assert nw.wait(timeout=30)")
    [event] = tallied(tmp_path)
    assert event["results"] == [1, 2, 3] and event["ids"] == kernel.eval("ids")


def test_kernel_killed_in_the_middle_of_a_fan_in_sends_then_exactly_once(kernel, tmp_path):
    # Members 0 and 1 end at once; 2 and 3 wait for a file that appears after the kill.
    release = tmp_path / "release"
    part = (
        "%%worker part --concurrency 4\n"
        "import os, time\n"
        f"while event >= 2 and not os.path.exists({str(release)!r}):\n"
        "    time.sleep(0.02)\n"
        "event * 10"
    )
    kernel.ok(TALLY)
    kernel.ok(part)
    kernel.ok("ids = nw.emit_many([0, 1, 2, 3], 'part', then='tally')")
    ids = kernel.eval("ids")
    kernel.ok(
        "import time\n_d = time.time() + 30\n"
        "while nw.counts('part')['done'] < 2 or nw.counts('part')['running'] < 2:\n"
        "    assert time.time() < _d\n    time.sleep(0.02)\n"
        "nw.flush()"
    )
    kernel.kill()  # members 2 and 3 are running; 0 and 1 have ended, on disk
    assert tallied(tmp_path) == []
    release.touch()
    # A new kernel, and the worker cells run again (not the emitting one: a new group)
    kernel.ok("%load_ext nbworkers\nimport nbworkers as nw")
    kernel.ok(TALLY)
    kernel.ok(part)
    kernel.ok("assert nw.wait(timeout=30)")
    assert tallied(tmp_path) == [{"results": [0, 10, 20, 30], "errors": [None] * 4, "ids": ids}]
    # A restart after it (a clean one) sends nothing more
    kernel.restart()
    kernel.ok("%load_ext nbworkers\nimport nbworkers as nw")
    kernel.ok(TALLY)
    kernel.ok(part)
    kernel.ok("assert nw.wait(timeout=30)")
    assert len(tallied(tmp_path)) == 1


def test_fan_in_requests_from_dask_and_pool_processes_keep_then(make_runtime):
    from nbworkers.executors import child, jobs

    rt = make_runtime()
    got = collector(rt)
    define(rt, "part", lambda e: -e)
    far = child._ListEmitter()  # a Dask task's emits, queued when its run ends
    far.emit_many([1, 2], "part", then="tally")
    far.emit_many([3], "part")
    answers = [rt.dispatch.remote_emit(kind, jobs.decode(kind, req)) for kind, req in far.emits]
    assert [status for status, _ in answers] == ["ok", "ok"]
    assert rt.wait(None, 10)
    assert got == [{"results": [-1, -2], "errors": [None, None], "ids": answers[0][1]}]
    # A request from an older far side (no options) still works
    assert rt.dispatch.remote_emit("emit_many", ([4], "part"))[0] == "ok"
