"""What a panel's browser view is sent (``widgets/state.py``), as pure functions of a snapshot
and of traces: the kernel's side of the view. What the browser does with it is tested in
JupyterLab (test_browser.py)."""

from __future__ import annotations

from dataclasses import replace
from zoneinfo import ZoneInfo

import pytest

from nbworkers.develop.calls import Call, Calls
from nbworkers.engine.history import Sample
from nbworkers.engine.policy import Policy
from nbworkers.engine.rate import parse_rate
from nbworkers.progress import Progress
from nbworkers.widgets import state
from tests.widgets.test_render import NOW, XSS, make_trace, snap, utc  # noqa: F401 - a fixture


def test_a_header_carries_timestamps_not_relative_times():
    cron = snap(
        kind="cron",
        schedule="every day at 09:30",
        next_run_s=NOW + 3600,
        last_run_s=NOW - 60,
        counts={"queued": 0, "skipped": 2},
    )
    header = state.header(cron)
    assert header["now"] == NOW and header["next_run_at"] == NOW + 3600
    assert header["last_run_at"] == NOW - 60 and header["schedule"] == "every day at 09:30"
    assert header["counts"] == {"queued": 0, "running": 0, "done": 0, "failed": 0, "skipped": 2}
    assert header["oldest_at"] is None  # nothing queued
    queued = state.header(
        snap(oldest_s=NOW - 30, counts={"queued": 4}, delayed=1, next_due_s=NOW + 5)
    )
    assert (queued["oldest_at"], queued["delayed"], queued["next_due_at"]) == (NOW - 30, 1, NOW + 5)


def test_the_settings_at_a_glance():
    policy = Policy(retries=2, backoff_s=0.5, timeout_s=5, executor="processes", keep=50)
    assert state.facts(snap(policy=policy)) == [
        "runs in processes",
        "concurrency 4",
        "retries 2 (backoff 0.5 s)",
        "time limit 5 s",
        "keeps 50 traces",
    ]
    assert state.facts(snap(kind="cron")) == ["runs in threads"]
    assert state.facts(snap(defined=False)) == []
    assert [state.badge(s) for s in (snap(), snap(paused=True), snap(defined=False))] == [
        "running",
        "paused",
        "not defined",
    ]
    assert state.badge(snap(defined=False, removed=True)) == "removed"


def test_notices_have_a_tone_and_keep_user_text_as_text():
    busy = snap(
        paused=True,
        pause_reason=f"storm guard: {XSS}",
        failing=5,
        last_error=f"Traceback (most recent call last):\nKeyError: {XSS}",
        stopping_ids=("m3",),
        priorities={5: 2, 0: 1},
    )
    assert state.notices(busy) == [
        {
            "text": "stop asked: m3 (a run on a thread stops at its next Python line; "
            "message.stopping is True)",
            "tone": "warn",
        },
        {"text": f"storm guard: {XSS}", "tone": "warn"},
        {"text": "failing: its last 5 runs failed in a row", "tone": "error"},
        {"text": "ready by priority (higher first): 2 at 5 · 1 at 0", "tone": "muted"},
        {"text": f"latest error: KeyError: {XSS}", "tone": "error"},
    ]
    assert state.notices(snap()) == []


def test_runs_going_carry_their_start_and_progress_and_the_history_its_samples():
    going = snap(
        counts={"running": 2},
        running_ids=("m1", "m2"),
        running_started=(NOW - 3, NOW - 1),
        running_progress=(Progress(4, 10, "pages"), None),
        history=(Sample(NOW - 2, 5, 2, 1, 0), Sample(NOW, 3, 2, 3, 0)),
    )
    header = state.header(going)
    assert header["running"] == [
        {
            "id": "m1",
            "started_at": NOW - 3,
            "progress": {"done": 4, "total": 10, "note": "pages"},
            "progress_text": "4 of 10 (40 %) · pages",
        },
        {"id": "m2", "started_at": NOW - 1, "progress": None, "progress_text": None},
    ]
    assert state.history(going) == [[NOW - 2, 5, 2, 1, 0], [NOW, 3, 2, 3, 0]]


def test_a_row_says_how_the_run_ended_and_previews_its_input():
    row = state.row(make_trace(), "worker")
    assert row == {
        "id": "t7",
        "message_id": "m3",
        "status": "ok",
        "started_at": NOW,
        "duration": 0.0123,
        "attempt": 1,
        "replay": False,
        "batch": None,
        "input": repr({"path": XSS}),
    }
    assert state.row(make_trace(error="E"), "worker")["status"] == "error"
    assert state.row(make_trace(error="E", timed_out=True), "worker")["status"] == "timeout"
    assert state.row(make_trace(error="Stopped: nw.stop(...)"), "worker")["status"] == "stopped"
    long = state.row(make_trace(input_data=__import__("pickle").dumps("x" * 100)), "worker")
    assert len(long["input"]) == state.INPUT_PREVIEW and long["input"].endswith("…")


def test_detail_shows_input_result_output_and_traceback_as_text():
    ok = state.detail(make_trace(result=[XSS], stdout=f"printed {XSS}"), "worker")
    assert ok["blocks"] == [
        {"title": "input", "text": repr({"path": XSS}), "tone": ""},
        {"title": "result", "text": repr([XSS]), "tone": ""},
        {"title": "printed", "text": f"printed {XSS}", "tone": ""},
    ]
    assert ok["calls"] is None and ok["progress"] is None and ok["message_ids"] == []
    failed = state.detail(make_trace(error=f"ValueError: {XSS}", timed_out=True), "worker")
    assert [b["title"] for b in failed["blocks"]] == ["input", "traceback"]
    assert failed["blocks"][-1] == {
        "title": "traceback",
        "text": f"ValueError: {XSS}",
        "tone": "error",
    }
    assert failed["status"] == "timeout"


def test_a_cron_trace_has_no_input_and_an_input_that_cannot_load_still_shows():
    assert state.detail(make_trace(), "cron")["blocks"][0]["text"] == "(no input: a cron run)"
    broken = make_trace(input_data=b"not a pickle")
    assert state.row(broken, "worker")["input"].startswith("(cannot be shown: ")


def test_long_text_is_cut_with_how_much_is_left():
    cut = state.detail(make_trace(stdout="x" * (state.MAX_TEXT + 10)), "worker")["blocks"][-1]
    assert cut["text"] == "x" * state.MAX_TEXT + "\n… (10 more characters)"
    exactly = state.detail(make_trace(stdout="y" * state.MAX_TEXT), "worker")["blocks"][-1]
    assert exactly["text"] == "y" * state.MAX_TEXT


def test_a_trace_keeps_the_progress_its_run_reported_or_its_last_tqdm_line():
    reported = make_trace()
    reported.progress = Progress(10, 10, "done")
    assert state.detail(reported, "worker")["progress_text"] == "10 of 10 (100 %) · done"
    printed = make_trace(stdout="\rrows:  50%|#####     | 5/10 [00:01<00:01, 4.0it/s]")
    assert state.detail(printed, "worker")["progress"] == {"done": 5, "total": 10, "note": "rows"}
    assert state.detail(make_trace(stdout="hello\n"), "worker")["progress"] is None


def test_a_batch_detail_lists_its_messages():
    batch = make_trace()
    batch.message_seqs = [3, 4, 5]
    shown = state.detail(batch, "worker")
    assert shown["batch"] == 3 and shown["message_ids"] == ["m3", "m4", "m5"]


def test_the_pipeline_has_a_node_per_worker_and_name_emitted_to_and_counted_edges():
    defined = [
        ("fetch", "worker", False, {"queued": 2, "running": 1, "done": 5, "failed": 0}),
        ("nightly", "cron", True, {"queued": 0, "running": 0, "done": 1, "failed": 1}),
    ]
    flows = {("fetch", "words"): 60, ("nightly", "fetch"): 6, ("fetch", "fetch"): 1}
    shown = state.graph(defined, [("words", 3), ("orphan", 1)], flows)
    assert shown["nodes"] == [
        {
            "name": "fetch",
            "kind": "worker",
            "defined": True,
            "paused": False,
            "queued": 2,
            "running": 1,
            "done": 5,
            "failed": 0,
        },
        {
            "name": "nightly",
            "kind": "cron",
            "defined": True,
            "paused": True,
            "queued": 0,
            "running": 0,
            "done": 1,
            "failed": 1,
        },
        {
            "name": "words",
            "kind": "worker",
            "defined": False,
            "paused": False,
            "queued": 3,
            "running": 0,
            "done": 0,
            "failed": 0,
        },
        {
            "name": "orphan",
            "kind": "worker",
            "defined": False,
            "paused": False,
            "queued": 1,
            "running": 0,
            "done": 0,
            "failed": 0,
        },
    ]
    assert shown["edges"] == [
        {"from": "fetch", "to": "fetch", "count": 1},
        {"from": "fetch", "to": "words", "count": 60},
        {"from": "nightly", "to": "fetch", "count": 6},
    ]
    # A name emitted to whose messages were all taken since is still drawn, with 0 queued
    drained = state.graph(defined[:1], [], {("fetch", "words"): 60})
    assert [n["name"] for n in drained["nodes"]] == ["fetch", "words"]
    assert drained["nodes"][1]["queued"] == 0


def test_clock_in_a_zone():
    # NOW is 2027-01-15 08:00:00 UTC
    assert state.clock(NOW, ZoneInfo("Asia/Tokyo")) == "17:00:00"
    assert state.clock(NOW, ZoneInfo("America/New_York")) == "03:00:00"


@pytest.mark.usefixtures("utc")
def test_a_crons_next_run_is_told_in_its_own_zone():
    tokyo = snap(
        kind="cron",
        schedule="at 09:00 every day (0 9 * * *), Asia/Tokyo time",
        next_run_s=NOW + 90,  # 08:01:30 UTC
        zone=ZoneInfo("Asia/Tokyo"),
    )
    assert state.header(tokyo)["next_run_clock"] == "17:01:30"  # not the browser's zone
    assert state.header(replace(tokyo, zone=None))["next_run_clock"] == "08:01:30"  # the kernel's
    assert state.header(replace(tokyo, next_run_s=None))["next_run_clock"] is None


def test_a_cron_without_a_next_run_says_why():
    error = f"ValueError: Africa/Monrovia shows no whole minutes: every hour at :40 never runs{XSS}"
    cron = snap(kind="cron", schedule="every hour at :40", schedule_error=error)
    assert {"text": f"no next run: {error}", "tone": "error"} in state.notices(cron)
    assert state.header(cron)["next_run_at"] is None


def test_the_rate_limit_has_a_line_of_its_own_waiting_or_not():
    policy = Policy(rate=parse_rate("2/m"))
    free = state.notices(snap(policy=policy))
    assert free == [{"text": "rate limit 2/m: a run may start now", "tone": "muted"}]
    waiting = state.notices(snap(policy=policy, counts={"rate_wait_s": 57.25}))
    assert waiting == [
        {"text": "rate limit 2/m: waiting for it, the next run may start in 57.2 s", "tone": "warn"}
    ]
    assert state.notices(snap(policy=policy, paused=True)) == []


def _formatted(exc: BaseException) -> str:
    import traceback

    try:
        raise exc
    except BaseException as raised:  # noqa: BLE001 - formatted as a run formats its error
        return "".join(traceback.format_exception(raised))


def test_the_latest_error_is_the_exceptions_own_line_not_a_note_or_a_sub_exception():
    noted = ValueError("bad row")
    noted.add_note("while loading prices.csv")
    group = ExceptionGroup("2 fetches failed", [KeyError("a"), TimeoutError("b")])
    for exc, line in ((noted, "ValueError: bad row"), (group, "ExceptionGroup: 2 fetches")):
        shown = state.notices(snap(last_error=_formatted(exc)))
        assert shown[-1]["text"].startswith(f"latest error: {line}"), shown


def test_counts_beyond_the_four_show_only_when_there_are_some():
    quiet = state.header(snap(counts={"queued": 1234, "done": 7}))["counts"]
    assert quiet == {"queued": 1234, "running": 0, "done": 7, "failed": 0}
    busy = state.header(snap(counts={"failed": 2, "retried": 3, "dead": 1, "expired": 1}))
    assert busy["counts"] == {
        "queued": 0,
        "running": 0,
        "done": 0,
        "failed": 2,
        "retried": 3,
        "dead": 1,
        "expired": 1,
    }
    assert state.header(snap())["concurrency"] == 4


def test_the_panel_is_sent_each_call_with_errors_and_notes():
    calls = Calls(
        [
            Call("fetch", "'<u>'", "{'ok': 1}", None, b"x", None, True),
            Call("refuse", "", None, "PermissionError: <403>", b"x"),
            Call("lock", "", "<unlocked _thread.lock>", None, None, "it does not pickle"),
        ]
    )
    calls.dropped = 2
    # As text: the browser sets it with textContent (test_browser.py)
    assert state.calls(calls) == {
        "calls": [
            {
                "name": "fetch",
                "args": "'<u>'",
                "result": "{'ok': 1}",
                "error": None,
                "replayed": True,
                "note": None,
            },
            {
                "name": "refuse",
                "args": "",
                "result": None,
                "error": "PermissionError: <403>",
                "replayed": False,
                "note": None,
            },
            {
                "name": "lock",
                "args": "",
                "result": "<unlocked _thread.lock>",
                "error": None,
                "replayed": False,
                "note": "it does not pickle",
            },
        ],
        "note": None,
        "dropped": 2,
    }
    traced = make_trace(calls=calls)
    assert state.detail(traced, "worker")["calls"] == state.calls(calls)


def test_a_whole_header_is_exactly_as_pinned():
    busy = snap(
        counts={"queued": 3, "running": 2, "done": 10, "failed": 1, "dead": 1, "retried": 2},
        policy=Policy(retries=2, backoff_s=0.5, timeout_s=5),
        oldest_s=NOW - 30,
        delayed=1,
        next_due_s=NOW + 60,
        running_ids=("m1", "m2"),
        running_started=(NOW - 3, NOW - 1),
        running_progress=(None, Progress(1, None, "")),
        failures=(("abc123", "KeyError: 'x' at line 2", 1),),
    )
    assert state.header(busy) == {
        "name": "resize",
        "kind": "worker",
        "badge": "running",
        "facts": [
            "runs in threads",
            "concurrency 4",
            "retries 2 (backoff 0.5 s)",
            "time limit 5 s",
        ],
        "concurrency": 4,
        "counts": {"queued": 3, "running": 2, "done": 10, "failed": 1, "retried": 2, "dead": 1},
        "now": NOW,
        "oldest_at": NOW - 30,
        "delayed": 1,
        "next_due_at": NOW + 60,
        "schedule": None,
        "next_run_at": None,
        "next_run_clock": None,
        "last_run_at": None,
        "long_run_s": state.LONG_RUN_S,
        "notices": [],
        "running": [
            {"id": "m1", "started_at": NOW - 3, "progress": None, "progress_text": None},
            {
                "id": "m2",
                "started_at": NOW - 1,
                "progress": {"done": 1, "total": None, "note": ""},
                "progress_text": "1 done",
            },
        ],
        "failures": [{"fingerprint": "abc123", "title": "KeyError: 'x' at line 2", "count": 1}],
    }
    # Nothing queued or delayed: no oldest age, no next due time, whatever is known
    idle = state.header(replace(busy, counts={**busy.counts, "queued": 0}, delayed=0))
    assert (idle["oldest_at"], idle["next_due_at"]) == (None, None)


def test_every_setting_at_a_glance():
    policy = Policy(
        rate=parse_rate("2/m"), batch=1000, batch_wait_s=2, ttl_s=30, keep=5, executor="dask"
    )
    assert state.facts(snap(policy=policy)) == [
        "runs in dask",
        "concurrency 4",
        "rate 2/m",
        "batches of 1,000 (wait 2 s)",
        "ttl 30 s",
        "keeps 5 traces",
    ]


def test_a_removed_worker_and_runs_asked_to_stop_say_so():
    removed = state.notices(snap(defined=False, removed=True))
    assert removed == [
        {
            "text": "removed (nw.remove): no run starts; its queued messages wait, unhandled, "
            "until it is defined again (run its cell)",
            "tone": "muted",
        }
    ]
    stopping = state.notices(snap(stopping_ids=("m3", "m4")))
    assert stopping[0]["text"].startswith("stop asked: m3, m4 (a run on a thread")


def test_a_cron_row_has_no_input_and_an_input_of_the_preview_length_is_kept_whole():
    assert state.row(make_trace(), "cron")["input"] == "(no input: a cron run)"
    exact = "x" * (state.INPUT_PREVIEW - 2)  # its repr, with quotes, is exactly the length
    shown = state.row(make_trace(input_data=__import__("pickle").dumps(exact)), "worker")
    assert shown["input"] == repr(exact)


def test_a_node_lacking_a_count_shows_0_and_a_name_is_one_node():
    shown = state.graph([("a", "worker", False, {"queued": 1})], [("b", 2)], {("a", "b"): 1})
    assert shown["nodes"][0] == {
        "name": "a",
        "kind": "worker",
        "defined": True,
        "paused": False,
        "queued": 1,
        "running": 0,
        "done": 0,
        "failed": 0,
    }
    assert [n["name"] for n in shown["nodes"]] == ["a", "b"]  # b: unhandled and emitted to


def test_a_cron_detail_has_no_input_and_a_removed_workers_flows_are_still_drawn():
    assert state.detail(make_trace(), "cron")["input"] == "(no input: a cron run)"
    # a worker removed while messages to it wait: unhandled, and its runs' emits still drawn
    shown = state.graph([], [("old", 1)], {("old", "next"): 2})
    assert shown["edges"] == [{"from": "old", "to": "next", "count": 2}]
