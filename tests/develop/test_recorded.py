"""@nw.recorded: calls kept in the run's trace (bounded, stored, in the traces view, in the
panel) and given back by a replay (nw.replay(recorded=True|"strict"), ``replaying``)."""

from __future__ import annotations

import json
import threading

import pytest

import nbworkers as nw
from nbworkers import api, current, handlers
from nbworkers.develop import calls as calls_module
from nbworkers.develop.calls import Call, Calls
from nbworkers.develop.recorded import replaying
from nbworkers.engine.policy import Policy
from nbworkers.errors import ArgumentTypeError, ArgumentValueError, NBWorkersError
from nbworkers.widgets import state
from tests.conftest import Clock, open_runtime

# ----- helpers --------------------------------------------------------------------------------


def wait_for(kernel, expr: str, timeout: float = 10) -> None:
    """Wait until ``expr`` is true in the kernel (no fixed sleeps)."""
    kernel.ok(
        f"import time as _t\n_d = _t.time() + {timeout}\n"
        f"while not ({expr}) and _t.time() < _d: _t.sleep(0.02)\n"
        f"assert {expr}, {expr!r}"
    )


class Service:
    """An HTTP-like service: counts the calls that really reach it."""

    def __init__(self):
        self.hits = 0
        self.lock = threading.Lock()

    def get(self, url, timeout=3):
        with self.lock:
            self.hits += 1
            return {"url": url, "hit": self.hits}


@pytest.fixture
def service():
    return Service()


def define(rt, fn, name="w", **policy):
    rt.define(name, handlers.from_function(name, fn), 1, policy=Policy(**policy))


def run_one(rt, event, name="w"):
    rt.emit(event, name)
    assert rt.wait(name, 30)
    return rt.traces(name)[0]


# ----- recording ------------------------------------------------------------------------------


def test_each_call_is_kept_in_the_trace_in_call_order(make_runtime, service):
    @nw.recorded
    def fetch(url, timeout=3):
        return service.get(url, timeout)

    @nw.recorded
    def refuse(code):
        raise PermissionError(f"HTTP {code}")

    def handler(event):
        first = fetch(event, timeout=5)
        try:
            refuse(403)
        except PermissionError:
            pass
        return fetch(event + "/2")["hit"] + first["hit"]

    rt = make_runtime()
    define(rt, handler)
    trace = run_one(rt, "http://a")
    assert trace.ok and trace.result == 3
    assert [c.line() for c in trace.calls] == [
        "fetch('http://a', timeout=5) -> {'hit': 1, 'url': 'http://a'}",
        "refuse(403) raised PermissionError: HTTP 403",
        "fetch('http://a/2') -> {'hit': 2, 'url': 'http://a/2'}",
    ]
    assert all(c.kept and not c.replayed for c in trace.calls)
    assert trace.calls[0].value() == {"url": "http://a", "hit": 1}
    assert isinstance(trace.calls[1].value(), PermissionError)


def test_a_worker_with_no_recorded_call_has_no_calls_and_a_call_outside_a_run_is_plain(
    make_runtime, service
):
    fetch = nw.recorded(service.get)
    rt = make_runtime()
    define(rt, lambda event: event + 1)
    assert run_one(rt, 1).calls is None
    # In a cell (no run going on), the function is called as it is, and nothing is kept
    assert fetch("u") == {"url": "u", "hit": 1}
    assert fetch.__wrapped__ == service.get
    with pytest.raises(ArgumentTypeError, match="marks a function"):
        nw.recorded(42)


def test_a_recorded_call_inside_another_is_part_of_it(make_runtime, service):
    inner = nw.recorded(service.get)

    @nw.recorded
    def outer(url):
        return inner(url)["hit"]

    rt = make_runtime()
    define(rt, lambda event: outer(event))
    trace = run_one(rt, "u")
    assert [c.name for c in trace.calls] == ["outer"]
    assert service.hits == 1


def test_what_cannot_be_kept_says_so(make_runtime):
    @nw.recorded
    def lock():
        return threading.Lock()  # does not pickle

    @nw.recorded
    def big():
        return b"x" * (calls_module.CALL_MAX_BYTES + 1)

    rt = make_runtime()
    define(rt, lambda event: (lock(), big()) and None)
    trace = run_one(rt, None)
    assert [c.kept for c in trace.calls] == [False, False]
    assert "does not pickle, or pickles to more than 65,536 bytes" in trace.calls[0].note
    assert "not kept" in trace.calls[1].line()
    with pytest.raises(NBWorkersError, match="was not kept"):
        trace.calls[0].value()


def test_a_trace_keeps_a_bounded_number_of_calls_and_bytes(make_runtime, monkeypatch):
    monkeypatch.setattr(calls_module, "MAX_CALLS", 3)
    monkeypatch.setattr(calls_module, "TRACE_MAX_BYTES", 100)
    value = nw.recorded(lambda n: "y" * n)
    rt = make_runtime()
    define(rt, lambda event: [value(40) for _ in range(5)] and None)
    calls = run_one(rt, None).calls
    # Given 5 calls of about 55 bytes each: 3 calls kept, the second without its value
    assert len(calls) == 3 and calls.dropped == 2
    assert [c.kept for c in calls] == [True, False, False]
    assert "passed 100 bytes" in calls[1].note
    assert calls.lines()[-1] == "… 2 more calls, not kept (at most 3)"


def test_a_pool_process_records_and_sends_the_calls_back(fresh_runtime):
    # Given a handler running in a pool process, calling a recorded function on its own thread
    # and on a thread it starts
    namespace = {"__name__": "__main__"}
    exec(
        "import threading\nimport nbworkers as nw\n"
        "@nw.recorded\ndef now(n):\n    return 7 * n\n"
        "def elsewhere():\n    t = threading.Thread(target=now, args=(0,))\n"
        "    t.start()\n    t.join()\n",
        namespace,
    )
    rt = api.runtime()
    rt.define(
        "w",
        handlers.from_cell("w", "elsewhere()\nnow(event) * 2", namespace),
        policy=Policy(executor="processes"),
    )
    api.emit(3, "w")
    assert rt.wait("w", 60)
    trace = rt.traces("w")[0]
    # The call on its own thread is in the trace; the other is not (as with threads)
    assert trace.result == 42
    assert [c.line() for c in trace.calls] == ["now(3) -> 21"]
    # And a replay in the kernel takes it from the trace
    exec("@nw.recorded\ndef now(n):\n    return 0\n", namespace)  # were it called: 0
    assert rt.replay("w", recorded="strict") == 42


def test_a_dask_worker_records_and_sends_the_calls_back(fresh_runtime):
    from distributed import Client, LocalCluster

    namespace = {"__name__": "__main__"}
    exec("import nbworkers as nw\n@nw.recorded\ndef now(n):\n    return 7 * n\n", namespace)
    cluster = LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    )
    client = Client(cluster)
    try:
        api.use_dask(client)
        rt = api.runtime()
        handler = handlers.from_cell("w", "now(event) * 2", namespace)
        rt.define("w", handler, policy=Policy(executor="dask"))
        api.emit(3, "w")
        assert rt.wait("w", 120)
        trace = rt.traces("w")[0]
        assert trace.result == 42 and [c.line() for c in trace.calls] == ["now(3) -> 21"]
    finally:
        api.shutdown()
        current._dask_client = None
        client.close()
        cluster.close()


def test_a_drain_copies_the_calls_of_the_traces_it_keeps_only(make_runtime, service):
    fetch = nw.recorded(service.get)
    rt = make_runtime()
    define(rt, lambda event: fetch(event)["hit"])
    rt.pause("w")
    rt.emit_many([f"u{i}" for i in range(30)], "w")
    rt.resume("w")
    assert rt.wait("w", 30)
    # The 10 traces kept have their calls with values, whatever the drain skipped before them
    traces = rt.traces("w")
    assert [t.calls[0].args for t in traces] == [f"'u{i}'" for i in range(29, 19, -1)]
    assert all(t.calls[0].kept and t.calls[0].value()["url"] == t.input for t in traces)
    assert service.hits == 30


def test_a_run_whose_trace_will_be_replaced_does_not_copy_its_calls(service):
    # Given a run that newer traces will replace (Run.keep_result is False)
    from types import SimpleNamespace

    from nbworkers.develop.calls import NOT_COPIED
    from nbworkers.engine.worker import CURRENT, Run

    fetch = nw.recorded(service.get)
    run = Run(SimpleNamespace(worker="w"), 0, 0.0, 0.0, None, None, None)
    run.superseded = lambda name: True
    CURRENT.run = run
    try:
        assert fetch("u") == {"url": "u", "hit": 1}
        assert fetch("v") == {"url": "v", "hit": 2}
    finally:
        CURRENT.run = None
    # Its calls are one shared, empty, marker that says why
    assert run.calls is NOT_COPIED and len(NOT_COPIED) == 0
    assert NOT_COPIED.lines() == [
        "(calls not kept: runs queued after this one were to replace this trace)"
    ]
    assert state.calls(NOT_COPIED) == {"calls": [], "note": NOT_COPIED.note, "dropped": 0}
    blob, text = NOT_COPIED.stored()
    assert Calls.load(blob).note == NOT_COPIED.note
    assert json.loads(text) == [{"call": None, "not_kept": NOT_COPIED.note}]


def test_a_timed_out_run_keeps_the_calls_made_before_its_limit(make_runtime, service):
    fetch = nw.recorded(service.get)
    gate, done, fetched = threading.Event(), threading.Event(), threading.Event()

    def handler(event):
        fetch("before")
        fetched.set()
        gate.wait(30)
        fetch("after")  # the thread goes on after its trace was made
        done.set()

    # (the limit passes on the test's clock once the first call is made, whatever the
    # machine's speed)
    clock = Clock(1_000_000.0)
    rt = make_runtime(clock=clock)
    define(rt, handler, timeout_s=0.2)
    rt.emit(None, "w")
    assert fetched.wait(30)
    rt.run_timers(clock.now + 1)
    assert rt.wait("w", 30)
    (trace,) = rt.traces("w")
    assert trace.timed_out
    gate.set()
    assert done.wait(30)
    assert [c.args for c in trace.calls] == ["'before'"]


# ----- stored -----------------------------------------------------------------------------------


def test_calls_survive_a_restart_and_are_in_the_traces_view(tmp_path, service):
    fetch = nw.recorded(service.get)
    path = str(tmp_path / "q.duckdb")
    rt = open_runtime(path)
    try:
        define(rt, lambda event: fetch(event)["hit"])
        run_one(rt, "http://a")
        rt.flush()
        (text,) = rt.store.sql("select calls from traces where worker = 'w'").fetchall()[0]
        shown = json.loads(text)
        assert shown == [
            {
                "call": "Service.get",
                "args": "'http://a'",
                "result": "{'hit': 1, 'url': 'http://a'}",
                "error": None,
                "kept": True,
                "replayed": False,
            }
        ]
        found = rt.store.sql(
            "select id from traces where calls like '%Service.get%http://a%'"
        ).fetchall()
        assert found == [(rt.traces("w")[0].id,)]
    finally:
        rt.stop()
    # After a restart, the calls are back, values included: a replay still has them
    rt = open_runtime(path)
    try:
        (trace,) = rt.traces("w")
        assert trace.calls == [Call("Service.get", "'http://a'", *_result_of(trace))]
        assert trace.calls[0].value() == {"url": "http://a", "hit": 1}
        define(rt, lambda event: fetch(event)["hit"])
        assert rt.replay("w", recorded="strict") == 1
        assert service.hits == 1
    finally:
        rt.stop()


def _result_of(trace):
    call = trace.calls[0]
    return call.result, call.error, call.data


def test_unreadable_stored_calls_still_load():
    calls = Calls.load(b"not a pickle")
    assert len(calls) == 1 and "unreadable" in calls[0].note


# ----- replaying --------------------------------------------------------------------------------


def test_replay_with_recorded_takes_results_from_the_trace(make_runtime, service):
    fetch = nw.recorded(service.get)

    @nw.recorded
    def refuse():
        raise PermissionError("HTTP 403")

    def handler(event):
        try:
            refuse()
        except PermissionError as exc:
            denied = str(exc)
        return fetch(event)["hit"], denied

    rt = make_runtime()
    define(rt, handler)
    original = run_one(rt, "http://a")
    assert service.hits == 1
    # When replayed with recorded=True, the service is not called again
    assert rt.replay("w", original.id, recorded=True) == (1, "HTTP 403")
    assert service.hits == 1
    replayed = rt.traces("w")[0]
    assert replayed.replay and [c.replayed for c in replayed.calls] == [True, True]
    # Without it, it is called for real, and the new trace says so
    assert rt.replay("w", original.id) == (2, "HTTP 403")
    assert service.hits == 2
    assert [c.replayed for c in rt.traces("w")[0].calls] == [False, False]


def test_a_call_not_recorded_is_called_for_real_or_in_strict_mode_an_error(make_runtime, service):
    fetch = nw.recorded(service.get)
    rt = make_runtime()
    define(rt, lambda event: fetch(event)["hit"])
    original = run_one(rt, "http://a")
    # The new code makes a second call the trace does not hold
    define(rt, lambda event: fetch(event)["hit"] * 10 + fetch(event + "/more")["hit"])
    assert rt.replay("w", original.id, recorded=True) == 12
    assert service.hits == 2
    assert [c.replayed for c in rt.traces("w")[0].calls] == [True, False]
    with pytest.raises(NBWorkersError) as info:
        rt.replay("w", original.id, recorded="strict")
    message = str(info.value)
    assert "the call Service.get('http://a/more') is not recorded in trace" in message
    assert original.id in message and "holds 1 call of Service.get()" in message
    assert service.hits == 2  # strict: not called
    assert "NBWorkersError" in rt.traces("w")[0].error  # the failed replay left a trace


def test_strict_replay_of_a_trace_without_calls_says_why(make_runtime, service):
    fetch = nw.recorded(service.get)
    rt = make_runtime()
    define(rt, lambda event: event)
    original = run_one(rt, "u")
    define(rt, lambda event: fetch(event)["hit"])
    with pytest.raises(NBWorkersError, match="holds no recorded calls: its run made none, or"):
        rt.replay("w", original.id, recorded="strict")
    assert service.hits == 0


def test_recorded_must_be_false_true_or_strict(make_runtime):
    rt = make_runtime()
    define(rt, lambda event: event)
    run_one(rt, 1)
    with pytest.raises(ArgumentValueError, match="recorded must be False, True or 'strict'"):
        rt.replay("w", recorded="yes")


def test_replaying_is_per_thread_nests_and_reports(make_runtime, service):
    fetch = nw.recorded(service.get)
    rt = make_runtime()
    define(rt, lambda event: [fetch(event), fetch(event)])
    trace = run_one(rt, "u")
    assert service.hits == 2
    with replaying(trace) as outer:
        assert fetch("x") == {"url": "u", "hit": 1}  # matched by name, whatever the arguments
        seen = []
        thread = threading.Thread(target=lambda: seen.append(fetch("t")))
        thread.start()
        thread.join()
        assert seen == [{"url": "t", "hit": 3}]  # another thread: for real
        with replaying(trace, "strict") as inner:
            assert fetch("y")["hit"] == 1
        assert [c.args for c in inner.calls] == ["'y'"]
        assert fetch("z")["hit"] == 2
        assert fetch("more")["hit"] == 4  # the trace holds two: this one is for real
    assert [c.replayed for c in outer.calls] == [True, True, False]
    assert [why for _, why in outer.not_recorded] == ["the trace holds 2 calls of Service.get()"]
    assert outer.unused == []
    assert fetch("after")["hit"] == 5  # the block ended: plain again


# ----- the panel --------------------------------------------------------------------------------


def test_the_trace_view_shows_recorded_calls(make_runtime, service):
    fetch = nw.recorded(service.get)
    rt = make_runtime()
    define(rt, lambda event: fetch(event)["hit"])
    trace = run_one(rt, "http://a")
    shown = state.detail(trace, "worker")["calls"]
    assert shown["dropped"] == 0 and shown["note"] is None
    assert [(c["name"], c["args"], c["error"]) for c in shown["calls"]] == [
        ("Service.get", "'http://a'", None)
    ]
    define(rt, lambda event: event)
    assert state.detail(run_one(rt, "b"), "worker")["calls"] is None


# ----- in a kernel ------------------------------------------------------------------------------


def test_in_a_kernel_a_recorded_fetch_is_not_repeated_by_a_replay(kernel):
    # Given an HTTP-like fetch that counts the requests really sent
    kernel.ok(
        "sent = []\n"
        "@nw.recorded\n"
        "def fetch(url):\n"
        "    sent.append(url)\n"
        "    return {'url': url, 'status': 200, 'n': len(sent)}\n"
    )
    kernel.ok("%%worker w\nfetch(event)['n']")
    kernel.ok("emit('http://example/a', 'w')\nnw.wait()")
    assert kernel.eval("len(sent)") == 1
    assert kernel.eval("[c.line() for c in nw.traces('w')[0].calls]") == [
        "fetch('http://example/a') -> {'n': 1, 'status': 200, 'url': 'http://example/a'}"
    ]
    # When it is replayed with recorded=True, no request is sent
    assert kernel.eval("nw.replay('w', recorded=True)") == 1
    assert kernel.eval("len(sent)") == 1
    assert kernel.eval("nw.traces('w')[0].calls[0].replayed")
    # A new call the trace does not hold is sent for real...
    kernel.ok("%%worker w\nfetch(event)['n'] * 10 + fetch(event + '/b')['n']")
    assert kernel.eval("nw.replay('w', recorded=True)") == 12
    assert kernel.eval("sent") == ["http://example/a", "http://example/a/b"]
    # ...or, in strict mode, an error naming the call, and nothing is sent
    reply = kernel.run("nw.replay('w', recorded='strict')")
    assert reply.ename == "NBWorkersError"
    assert "the call fetch('http://example/a/b') is not recorded in trace" in reply.evalue
    assert kernel.eval("len(sent)") == 2
    # The panel's trace view lists the calls of the trace selected
    kernel.ok("from nbworkers.widgets import panels\np = panels('w')[-1]")
    wait_for(kernel, "len(p.view.traces) == 4")
    kernel.ok("p.view.selected = p.view.traces[-1]['id']")  # the first run
    calls = kernel.eval("p.view.detail['calls']['calls']")
    assert [(c["name"], c["args"]) for c in calls] == [("fetch", "'http://example/a'")]


# ----- the benchmark ----------------------------------------------------------------------------


def test_the_benchmark_runs_and_prints_its_figures():
    """A smoke run of benchmarks/recorded.py --quick: no speed asserted (a shared machine)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "recorded.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=root,
    )
    assert proc.returncode == 0, proc.stderr
    for line in ("beyond its pickle", "this tree, no recorded call", "one recorded call"):
        assert line in proc.stdout


def test_in_a_kernel_live_values_and_tries_take_recorded_results_from_the_trace(kernel):
    # Given a worker whose runs made a recorded, HTTP-like fetch (a counter of requests sent)
    kernel.ok(
        "sent = []\n"
        "@nw.recorded\n"
        "def fetch(url):\n"
        "    sent.append(url)\n"
        "    return {'url': url, 'n': len(sent)}\n"
    )
    kernel.ok("%%worker w\nreply = fetch(event)\nreply['n']")
    kernel.ok("emit('http://example/a', 'w')\nnw.wait()")
    assert kernel.eval("len(sent)") == 1
    # When its live values are computed, the fetch's result comes from the trace: none is sent
    kernel.ok("lv = nw.live('w')")
    assert kernel.eval("len(sent)") == 1
    assert "'n': 1" in kernel.eval("str(lv)")
    # And a try of new code on that trace sends none either
    reply = kernel.ok("%%worker w --try\nfetch(event)['n'] + 100")
    assert "101" in reply.value
    assert kernel.eval("len(sent)") == 1
    # And a call the trace does not hold is made for real, and live values say so
    kernel.ok("%%worker w\nfetch(event)\nfetch(event + '/b')['n']")
    kernel.ok("lv = nw.live('w')")
    assert kernel.eval("sent") == ["http://example/a", "http://example/a/b"]
    assert "not recorded, called for real: fetch('http://example/a/b')" in kernel.eval("str(lv)")
    # Strict mode makes it an error, shown at its line, and sends nothing
    kernel.ok("lv = nw.live('w', recorded='strict')")
    assert kernel.eval("lv.failed") and "is not recorded in trace" in kernel.eval("lv.error")
    assert kernel.eval("len(sent)") == 2


@nw.recorded
def _failing_lookup(key):
    return {}[key]


def _calls_a_failing_lookup(event):
    if event == "chained":
        try:
            _failing_lookup("inner")
        except KeyError as exc:
            raise ValueError("no such key") from exc
    return _failing_lookup(event)


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_a_failing_recorded_call_s_traceback_has_no_nbworkers_frames(make_runtime, executor):
    # A new user saw three frames of nbworkers/develop/recorded.py between the handler's and
    # the failing function's, in the trace, nw.failures and live values
    rt = make_runtime()
    define(rt, _calls_a_failing_lookup, executor=executor)
    rt.emit("k", "w")
    assert rt.wait("w", 60)
    error = rt.traces("w")[0].error
    assert "nbworkers/develop/recorded.py" not in error, error
    assert "in _calls_a_failing_lookup" in error and "in _failing_lookup" in error, error
    assert error.rstrip().endswith("KeyError: 'k'"), error
    # and in the exception a handler raised from it (found in review)
    rt.emit("chained", "w")
    assert rt.wait("w", 60)
    error = rt.traces("w")[0].error
    assert "KeyError: 'inner'" in error and "ValueError: no such key" in error, error
    assert "nbworkers/develop/recorded.py" not in error, error
