"""Review of the engine's threads on demand (#16): races and lost wake-ups found by reading
``engine/dispatch.py`` against the runtime before it."""

from __future__ import annotations

import threading

from nbworkers.handlers import from_function
from tests.waiting import wait_until


def run_threads(name: str) -> set[str]:
    prefix = f"nbworkers-run-{name}-"
    return {t.name for t in threading.enumerate() if t.name.startswith(prefix)}


def test_a_lowered_concurrency_leaves_no_message_without_a_thread(make_runtime):
    # Given a worker of concurrency 2 whose thread 0 ended on its idle while, while thread 1
    # still runs a long message
    rt = make_runtime(idle_thread_s=0.05)
    gates = {"a": threading.Event(), "b": threading.Event()}
    seen = []

    def handler(event):
        seen.append(event)
        if event in gates:
            gates[event].wait(10)

    rt.define("w", from_function("w", handler), concurrency=2)
    rt.emit("a", "w")
    assert wait_until(lambda: rt.counts("w")["running"] == 1)  # thread 0 runs a
    rt.emit("b", "w")
    assert wait_until(lambda: rt.counts("w")["running"] == 2)  # thread 1 runs b
    gates["a"].set()
    assert wait_until(lambda: run_threads("w") == {"nbworkers-run-w-1"})  # 0 idled out
    # When its concurrency is lowered to 1 and a message comes while b still runs
    rt.set_concurrency("w", 1)
    rt.emit("c", "w")
    gates["b"].set()
    # Then c runs once b is done (thread 1, past the new limit, ends: a thread must take c)
    assert rt.wait("w", 5), f"c never ran: {rt.counts('w')}, threads {run_threads('w')}"
    assert seen == ["a", "b", "c"]


def test_an_emit_while_stopping_starts_no_thread(make_runtime, tmp_path):
    # Given a worker of concurrency 2 whose one run is going when nbworkers stops
    rt = make_runtime()
    started, gate = threading.Event(), threading.Event()
    emitted = []

    def handler(event):
        if event == "first":
            started.set()
            gate.wait(10)
            try:
                emitted.append(rt.emit("second", "w"))  # joins the stop's last batch
            except Exception as exc:  # noqa: BLE001 - what the test looks at
                emitted.append(exc)

    rt.define("w", from_function("w", handler), concurrency=2)
    rt.emit("first", "w")
    assert started.wait(5)
    stopper = threading.Thread(target=rt.stop, args=(5,))
    stopper.start()
    assert wait_until(lambda: rt.stopping)
    # When the run emits (at interpreter exit, Python >= 3.12 refuses to start a thread:
    # "can't create new thread at interpreter shutdown"; here any start fails)
    spawned = []

    def refuse(target, name, *args):
        spawned.append(name)
        raise RuntimeError("can't create new thread at interpreter shutdown")

    rt.registry.spawn = refuse
    gate.set()
    stopper.join(10)
    # Then its emit worked, joined the last batch, and no thread was started for it
    assert len(emitted) == 1 and isinstance(emitted[0], str), emitted
    assert spawned == []
    again = make_runtime()
    assert again.counts("w")["queued"] == 1
    assert [m["id"] for m in again.messages("w")] == emitted


def test_a_thread_that_cannot_start_does_not_block_the_worker(make_runtime, logged):
    # Given a worker of concurrency 1 whose first thread could not start (the process is out
    # of threads)
    rt = make_runtime()
    seen = []
    rt.define("w", from_function("w", seen.append), concurrency=1)
    spawn = rt.registry.spawn

    def refuse(target, name, *args):
        raise RuntimeError("can't start new thread")

    rt.registry.spawn = refuse
    first = rt.emit(1, "w")  # queued and written; its thread starts later
    rt.registry.spawn = spawn
    assert any("could not start a run thread for 'w'" in r.getMessage() for r in logged.records)
    # When threads can start again and the next message comes
    rt.emit(2, "w")
    # Then both messages run (the first was kept, not dropped)
    assert rt.wait("w", 5), f"nothing ran: {rt.counts('w')}"
    assert sorted(seen) == [1, 2] and first.startswith("m")


def test_a_run_past_its_time_limit_gives_its_slot_to_the_next_message(make_runtime):
    # Given a worker of concurrency 1 whose run passes its time limit, with a message waiting
    from nbworkers.engine.policy import Policy

    rt = make_runtime()
    gate = threading.Event()
    seen = []

    def handler(event):
        seen.append(event)
        if event == "slow":
            gate.wait(10)

    rt.define("w", from_function("w", handler), concurrency=1, policy=Policy(timeout_s=60))
    rt.emit("slow", "w")
    assert wait_until(lambda: rt.counts("w")["running"] == 1)
    rt.emit("next", "w")
    # When the timer passes its deadline
    rt.run_timers(rt.clock() + 120)
    # Then the next message runs while the abandoned thread still waits
    assert rt.wait("w", 5) and seen == ["slow", "next"]
    assert rt.counts("w")["failed"] == 1
    gate.set()


def test_run_threads_that_never_idle_out_keep_running_messages(make_runtime):
    # Given run threads told never to end (%config NBWorkers.idle_thread_s = float("inf"))
    rt = make_runtime(idle_thread_s=float("inf"))
    seen = []
    rt.define("w", from_function("w", seen.append), concurrency=1)
    # When a message runs, its thread then has nothing to do, and another comes
    rt.emit(1, "w")
    assert rt.wait("w", 5)
    rt.emit(2, "w")
    # Then the second runs too (the idle thread's wait must not fail)
    assert rt.wait("w", 5), f"the second never ran: {rt.counts('w')}"
    assert seen == [1, 2]


def test_a_failed_replay_traces_from_the_handler_frame_as_a_run_does(make_runtime):
    # Given a worker whose handler raises, run once in the background
    rt = make_runtime()

    def boom(event):
        raise ValueError("bad")

    rt.define("w", from_function("w", boom), concurrency=1)
    rt.emit(1, "w")
    assert rt.wait("w", 5)
    run_error = rt.traces("w")[0].error
    # When it is replayed here
    try:
        rt.replay("w")
    except ValueError:
        pass
    # Then the replay's trace shows the same traceback, from the handler's frame: no frame of
    # nbworkers (engine/replay.py, handlers.py) before it
    replay_error = rt.traces("w")[0].error
    assert "nbworkers" not in replay_error, replay_error
    assert replay_error.splitlines()[1].endswith("in boom")
    assert run_error.splitlines()[1].endswith("in boom")


def test_a_delayed_emit_while_stopping_starts_no_timer(make_runtime):
    # Given a run going when nbworkers stops, and no timer started yet (nothing delayed)
    rt = make_runtime()
    started, gate = threading.Event(), threading.Event()
    emitted = []

    def handler(event):
        started.set()
        gate.wait(10)
        try:
            emitted.append(rt.emit("later", "other", delay=60))
        except Exception as exc:  # noqa: BLE001 - what the test looks at
            emitted.append(exc)

    rt.define("w", from_function("w", handler), concurrency=1)
    rt.emit("first", "w")
    assert started.wait(5)
    stopper = threading.Thread(target=rt.stop, args=(5,))
    stopper.start()
    assert wait_until(lambda: rt.stopping)
    spawned = []

    def refuse(target, name, *args):  # Python >= 3.12 at exit
        spawned.append(name)
        raise RuntimeError("can't create new thread at interpreter shutdown")

    rt.registry.spawn = refuse
    # When the run emits a delayed message
    gate.set()
    stopper.join(10)
    # Then the emit worked and its message is kept in the file, due later
    assert len(emitted) == 1 and isinstance(emitted[0], str), emitted
    assert spawned == []
    again = make_runtime()
    assert [m["id"] for m in again.messages("other")] == emitted
