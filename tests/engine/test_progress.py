"""A run's progress (``nbworkers/progress.py``): ``message.progress`` and tqdm bars, as the
panel's snapshot shows them while the run goes and its trace keeps them after; and the
sparklines' history (``engine/history.py``)."""

from __future__ import annotations

import io
import itertools
import threading
import time

import pytest
from tqdm import tqdm

from nbworkers import handlers
from nbworkers.engine.history import EVERY_S, SAMPLES, History
from nbworkers.engine.policy import Policy
from nbworkers.errors import ArgumentTypeError, ArgumentValueError
from nbworkers.progress import NOTIFY_EVERY_S, Progress, from_output
from tests.waiting import wait_until


def define(rt, fn, name="w", **policy):
    rt.define(name, handlers.from_function(name, fn), 1, policy=Policy(**policy))


def test_message_progress_shows_while_the_run_goes_and_stays_in_its_trace(make_runtime):
    rt = make_runtime()
    halfway, finish = threading.Event(), threading.Event()

    def fetch(event, message):
        message.progress(4, 10, note="pages")
        halfway.set()
        finish.wait(10)
        message.progress(10, 10, note="pages")

    define(rt, fetch)
    rt.emit("x", "w")
    assert halfway.wait(10)
    snap = rt.snapshot("w")
    assert snap.running_progress == (Progress(4, 10, "pages"),)
    assert snap.running_started[0] <= snap.now
    finish.set()
    assert rt.wait("w", 10)
    assert rt.traces("w")[0].progress == Progress(10, 10, "pages")
    assert rt.snapshot("w").running_progress == ()


def test_a_retry_starts_with_no_progress_and_a_run_without_any_has_none(make_runtime):
    rt = make_runtime()
    attempts = []

    def flaky(event, message):
        attempts.append(message.attempt)
        if message.attempt == 1:
            message.progress(1)
            raise ValueError("first attempt fails")

    define(rt, flaky, retries=1, backoff_s=0)
    rt.emit("x", "w")
    assert rt.wait("w", 10) and attempts == [1, 2]
    second, first = rt.traces("w")
    assert first.progress == Progress(1, None, "") and second.progress is None


def test_a_tqdm_bar_the_run_prints_is_its_progress(make_runtime):
    rt = make_runtime()
    halfway, finish = threading.Event(), threading.Event()

    def load(event):
        bar = tqdm(total=8, desc="rows", mininterval=0)
        bar.update(3)
        halfway.set()
        finish.wait(10)
        bar.update(5)
        bar.close()

    define(rt, load)
    rt.emit("x", "w")
    assert halfway.wait(10)
    assert rt.snapshot("w").running_progress == (Progress(3, 8, "rows"),)
    finish.set()
    assert rt.wait("w", 10)
    trace = rt.traces("w")[0]
    assert trace.progress is None and "8/8" in trace.stdout  # the trace's output keeps it


def test_while_a_run_goes_the_panels_hear_every_second_with_nothing_changing(make_runtime):
    rt = make_runtime()
    started, finish = threading.Event(), threading.Event()
    define(rt, lambda event: started.set() or finish.wait(10))
    rt.emit("x", "w")
    assert started.wait(10)
    heard = []
    rt.add_listener(lambda names: heard.append((time.monotonic(), set(names))))
    # (a tqdm bar's progress tells no one: a notice of no names is the panels' tick; without
    # one a second, they would tick every 30 s, as when nothing runs)
    assert wait_until(lambda: len([names for _, names in heard if not names]) >= 3, 10), heard
    finish.set()
    assert rt.wait("w", 10)
    quiet = [at for at, names in heard if not names]
    # about a second apart (a stall of the machine only makes gaps longer, not the shortest)
    assert min(b - a for a, b in itertools.pairwise(quiet)) < 2.5, quiet


@pytest.mark.parametrize(
    ("args", "error", "says"),
    [
        (("4",), ArgumentTypeError, "done must be a number, not str"),
        ((True,), ArgumentTypeError, "done must be a number, not bool"),
        ((-1,), ArgumentValueError, "done must be 0 or more, not -1"),
        ((1, float("nan")), ArgumentValueError, "total must be 0 or more, not nan"),
        ((1, 2, 3), ArgumentTypeError, "note must be a str, not int"),
    ],
)
def test_wrong_progress_says_what_to_pass(make_runtime, args, error, says):
    rt = make_runtime()
    define(rt, lambda event, message: message.progress(*args))
    rt.emit("x", "w")
    assert rt.wait("w", 10)
    trace = rt.traces("w")[0]
    assert f"{error.__name__}: message.progress: {says}" in trace.error
    assert rt.counts("w")["failed"] == 1  # a failed run like any: the message is not lost


def test_progress_tells_the_panels_at_most_every_fifth_of_a_second(make_runtime, monkeypatch):
    rt = make_runtime()
    told = []
    notify = rt.events.notify
    monkeypatch.setattr(rt.events, "notify", lambda name: told.append(name) or notify(name))
    took = []

    def busy(event, message):
        started = time.monotonic()
        for i in range(200_000):  # a progress an item: the panel is told a few times a second
            message.progress(i, 200_000)
        took.append(time.monotonic() - started)

    define(rt, busy)
    rt.emit("x", "w")
    assert rt.wait("w", 60)
    assert told and set(told) == {"w"}
    # 200,000 reports; told once, then at most every NOTIFY_EVERY_S (and once by the run's end)
    assert len(told) <= took[0] / NOTIFY_EVERY_S + 2
    assert rt.traces("w")[0].progress == Progress(199_999, 200_000, "")


def test_tqdm_lines_are_read_as_tqdm_prints_them():
    out = io.StringIO()
    for _ in tqdm(range(1500), file=out, desc="load", mininterval=0, unit_scale=True):
        pass
    assert from_output([out.getvalue()]) == Progress(1500, 1500, "load")
    out = io.StringIO()
    for _ in tqdm(iter(range(7)), file=out, mininterval=0):
        pass
    assert from_output([out.getvalue()]) == Progress(7, None, "")
    assert from_output(["plain output\n", "50% done\n"]) is None
    assert from_output([]) is None


def test_progress_text():
    assert Progress(4, 10, "pages").text() == "4 of 10 (40 %) · pages"
    assert Progress(1234, None, "").text() == "1,234 done"
    assert Progress(0.5, 2, "").fraction == 0.25
    assert Progress(3, 0, "").fraction is None


def test_history_keeps_a_sample_a_second_at_most_and_the_last_minutes():
    history = History()
    counts = {"queued": 5, "running": 1, "done": 0, "failed": 0}
    first = history.sample(100.0, counts)
    assert [s.at_s for s in first] == [100.0]
    # Within the second: not kept (the panel sends its current counts apart)
    shown = history.sample(100.0 + EVERY_S / 2, {**counts, "done": 3})
    assert [(s.at_s, s.done) for s in shown] == [(100.0, 0)]
    later = history.sample(100.0 + EVERY_S, {**counts, "done": 4})
    assert [(s.at_s, s.done) for s in later] == [(100.0, 0), (100.0 + EVERY_S, 4)]
    for i in range(2, SAMPLES + 10):
        history.sample(100.0 + i * EVERY_S, counts)
    assert len(history.samples) == SAMPLES
    assert history.samples[0].at_s == 100.0 + 10 * EVERY_S


def test_flows_count_what_each_workers_runs_emitted_to_each_name(make_runtime):
    rt = make_runtime()
    define(rt, lambda event: rt.emit(event, "words"), name="fetch")
    define(rt, lambda event: rt.emit_many([event, event], "tally"), name="words")
    for i in range(3):
        rt.emit(i, "fetch")  # from the notebook: no edge
    rt.emit(9, "words")
    assert rt.wait(None, 10)
    assert rt.flows() == {("fetch", "words"): 3, ("words", "tally"): 8}


def _two_steps(event, message):
    import os
    import time as clock

    message.progress(1, 2, note="far")
    deadline = clock.monotonic() + 30
    while not os.path.exists(event) and clock.monotonic() < deadline:  # the test has seen it
        clock.sleep(0.01)
    message.progress(1.5, 2, note="far")
    message.progress(2, 2, note="far")  # within 0.2 s: not sent at once


def test_progress_in_a_pool_process_shows_while_it_runs_and_stays_in_its_trace(
    make_runtime, tmp_path
):
    rt = make_runtime()
    define(rt, _two_steps, executor="processes")
    go = tmp_path / "go"
    rt.emit(str(go), "w")
    deadline = time.monotonic() + 30
    while rt.snapshot("w").running_progress != (Progress(1, 2, "far"),):
        assert time.monotonic() < deadline, rt.snapshot("w").running_progress
        time.sleep(0.05)
    go.touch()
    assert rt.wait("w", 30)
    # the last, though not sent (0.2 s had not passed): it came back with the outcome
    assert rt.traces("w")[0].progress == Progress(2, 2, "far")
