"""The panels' HTML (``widgets/render.py``) as pure functions of a snapshot: what a user reads
in each state, and that nothing from an event, a result, output or a traceback reaches the page
unescaped. The fast tests mutation testing runs against rendering; the panels themselves are
driven in a kernel (test_widgets.py) and in JupyterLab (test_browser.py)."""

from __future__ import annotations

import json
import os
import pickle
import re
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from nbworkers.engine.policy import Policy
from nbworkers.engine.snapshot import WorkerSnapshot
from nbworkers.trace import Trace, run_result
from nbworkers.widgets import render

XSS = "<img src=x onerror=alert(1)>"
NOW = 1_800_000_000.0


def hhmmss(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%H:%M:%S")


def snap(**changes) -> WorkerSnapshot:
    counts = {"queued": 0, "running": 0, "done": 0, "failed": 0, "dead": 0, "retried": 0}
    counts.update(changes.pop("counts", {}))
    base = {
        "name": "resize",
        "defined": True,
        "kind": "worker",
        "paused": False,
        "pause_reason": None,
        "counts": counts,
        "concurrency": 4,
        "policy": Policy(),
        "schedule": None,
        "next_run_s": None,
        "schedule_error": None,
        "zone": None,
        "last_run_s": None,
        "last_error": None,
        "failing": 0,
        "traces": [],
        "oldest_s": None,
        "delayed": 0,
        "next_due_s": None,
        "longest_run_s": None,
        "now": NOW,
    }
    base.update(changes)
    return WorkerSnapshot(**base)


def text(html: str) -> str:
    """What a reader sees: the tags dropped."""
    return re.sub(r"<[^>]+>", "", html)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (-5, "0 s"),
        (0, "0 s"),
        (59.4, "59 s"),
        (60, "1 min"),
        (3599, "60 min"),
        (3600, "1 h"),
        (86399, "24 h"),
        (86400, "1 d"),
        (3 * 86400, "3 d"),
    ],
)
def test_ago(seconds, shown):
    assert render.ago(seconds) == shown


def test_esc_escapes_quotes_too():
    assert render.esc(XSS) == "&lt;img src=x onerror=alert(1)&gt;"
    assert render.esc("a\"b'c&") == "a&quot;b&#x27;c&amp;"
    assert render.esc(12) == "12"


def test_clock_is_local_hours_minutes_seconds():
    assert render.clock(NOW) == hhmmss(NOW)


def test_clock_in_a_zone():
    # NOW is 2027-01-15 08:00:00 UTC
    assert render.clock(NOW, ZoneInfo("Asia/Tokyo")) == "17:00:00"
    assert render.clock(NOW, ZoneInfo("America/New_York")) == "03:00:00"


def test_a_running_worker_shows_its_name_concurrency_and_counts():
    shown = text(render.status_html(snap(counts={"queued": 1234, "done": 7})))
    assert "resize worker · concurrency 4 ▶ running" in shown
    assert "queued 1,234" in shown and "running 0" in shown and "done 7" in shown
    assert "failed 0" in shown
    for absent in ("retried", "dead", "skipped", "paused", "oldest", "latest error"):
        assert absent not in shown


def test_failures_retries_and_dead_letters_are_shown_in_red_when_there_are_some():
    html = render.status_html(snap(counts={"failed": 2, "retried": 3, "dead": 1}))
    assert f'color:{render.RED};font-weight:700">failed 2' in html
    assert f'color:{render.RED};font-weight:700">dead 1' in html
    assert "retried 3" in text(html)
    quiet = render.status_html(snap())
    assert render.RED not in quiet


def test_the_policy_shows_retries_timeout_and_where_it_runs():
    policy = Policy(retries=3, backoff_s=2.5, timeout_s=30, executor="processes")
    shown = text(render.status_html(snap(policy=policy)))
    assert "concurrency 4 · retries 3 (backoff 2.5 s) · timeout 30 s · runs in processes" in shown
    undefined = text(render.status_html(snap(policy=policy, defined=False)))
    assert "retries" not in undefined and "concurrency" not in undefined
    assert "not defined" in undefined


def test_a_paused_worker_says_why():
    shown = text(render.status_html(snap(paused=True, pause_reason="storm guard: " + XSS)))
    assert "❚❚ paused" in shown
    assert "storm guard: &lt;img" in shown
    assert "running" not in shown.replace("running 0", "")
    assert "storm" not in text(render.status_html(snap(pause_reason="storm guard")))


def test_a_failing_worker_gets_a_banner():
    shown = text(render.status_html(snap(failing=5)))
    assert "failing: its last 5 runs failed in a row" in shown
    assert "failing" not in text(render.status_html(snap(failing=0)))


def test_a_long_run_is_shown_from_ten_seconds():
    assert "has been running" not in text(render.status_html(snap(longest_run_s=9.9)))
    shown = text(render.status_html(snap(longest_run_s=render.LONG_RUN_S)))
    assert "a run has been running for 10 s (since " in shown
    assert "a run has been running for 2 min" in text(render.status_html(snap(longest_run_s=125)))


def test_the_oldest_queued_message_and_the_delayed_ones():
    html = render.status_html(
        snap(
            counts={"queued": 3},
            oldest_s=NOW - 125,
            delayed=2,
            next_due_s=NOW + 7200,
        )
    )
    shown = text(html)
    assert "oldest queued: 2 min ago" in shown
    assert (
        f"2 of them waiting for a delay or a retry; the next is due in 2 h ({hhmmss(NOW + 7200)})"
        in shown
    )
    # Nothing queued: no age, even if an old time is known.
    assert "oldest" not in text(render.status_html(snap(oldest_s=NOW - 125)))


def test_a_cron_shows_its_schedule_next_and_last_run():
    cron = snap(
        kind="cron",
        schedule="every day at 09:30",
        next_run_s=NOW + 90,
        last_run_s=NOW - 3600,
        counts={"skipped": 2},
    )
    shown = text(render.status_html(cron))
    assert "resize cron ▶ running" in shown  # no concurrency for a cron
    assert "skipped 2" in shown
    assert (
        f"every day at 09:30 · next run in 2 min ({hhmmss(NOW + 90)}) · last run 1 h ago" in shown
    )
    due = text(render.status_html(replace(cron, next_run_s=NOW, last_run_s=None)))
    assert "every day at 09:30 · next run: now" in due and "last run" not in due
    paused = text(render.status_html(replace(cron, paused=True, next_run_s=None)))
    assert "every day at 09:30 · paused: no next run" in paused


def test_a_cron_shows_its_next_run_in_its_own_zone(utc):
    tokyo = snap(
        kind="cron",
        schedule="at 09:00 every day (0 9 * * *), Asia/Tokyo time",
        next_run_s=NOW + 90,  # 08:01:30 UTC
        zone=ZoneInfo("Asia/Tokyo"),
    )
    shown = text(render.status_html(tokyo))
    assert "at 09:00 every day (0 9 * * *), Asia/Tokyo time · next run in 2 min (17:01:30)" in shown
    # The kernel's own zone (None: local time, UTC here)
    local = text(render.status_html(replace(tokyo, zone=None)))
    assert "next run in 2 min (08:01:30)" in local


def test_a_cron_without_a_next_run_says_why_in_red():
    error = f"ValueError: Africa/Monrovia shows no whole minutes: every hour at :40 never runs{XSS}"
    cron = snap(
        kind="cron",
        schedule="every hour at :40, Africa/Monrovia time",
        schedule_error=error,
        last_run_s=NOW - 60,
    )
    html = render.status_html(cron)
    assert XSS not in html
    assert (
        f'<div>every hour at :40, Africa/Monrovia time · <span style="color:{render.RED}">no '
        f"next run: {render.esc(error)}</span> · last run 1 min ago</div>"
    ) in html
    assert "next run in" not in html and "paused" not in html


def test_the_latest_error_shows_its_last_line_escaped():
    error = f"Traceback (most recent call last):\n  ...\nValueError: {XSS}\n\n"
    html = render.status_html(snap(last_error=error))
    assert f"latest error: ValueError: {render.esc(XSS)}" in html
    assert XSS not in html


def _formatted(exc: BaseException) -> str:
    import traceback

    try:
        raise exc
    except BaseException as raised:  # noqa: BLE001 - formatted as a run formats its error
        return "".join(traceback.format_exception(raised))


def test_the_latest_error_is_the_exceptions_own_line_not_a_note_or_a_sub_exception():
    # Given failures whose traceback does not end with the exception's own line: one with a
    # note added (add_note), and an exception group, whose sub-exceptions come after it
    noted = ValueError("bad row")
    noted.add_note("while loading prices.csv")
    group = ExceptionGroup("2 fetches failed", [KeyError("a"), TimeoutError("b")])
    for exc, line in ((noted, "ValueError: bad row"), (group, "ExceptionGroup: 2 fetches")):
        # When the panel shows it
        html = render.status_html(snap(last_error=_formatted(exc)))
        # Then its latest error is the exception's own line
        assert f"latest error: {line}" in html, html


def make_trace(**kw) -> Trace:
    """A trace as a run records it (its result copied as the run thread copies it)."""
    if "result" in kw:
        copied = run_result(kw.pop("result"), 65536)
        kw.update(result=copied.value, result_data=copied.data, result_repr=copied.repr)
    fields = {
        "seq": 7,
        "message_seq": 3,
        "worker": "resize",
        "input_data": pickle.dumps({"path": XSS}),
        "started_at_s": NOW,
        "duration": 0.0123,
        "stdout": "",
        "error": None,
    }
    fields.update(kw)
    return Trace(**fields)


def test_the_unhandled_table():
    assert text(render.unhandled_html([], NOW)) == "Unhandled: none."
    html = render.unhandled_html([("zeta", 1, None), (XSS, 1234, NOW - 7200)], NOW)
    assert XSS not in html
    shown = text(html)
    assert "Unhandled: messages emitted to names with no worker yet." in shown
    # Sorted by name; the line that creates each worker is shown.
    assert shown.index("&lt;img") < shown.index("zeta")
    assert "1,2342 h ago%%worker &lt;img" in shown
    assert "zeta1-%%worker zeta" in shown


# ----- the whole HTML, pinned ----------------------------------------------------------------
# The tests above check what a reader sees; these pin every byte of the HTML of representative
# states (styles included), so that any change to a panel is a deliberate one: after changing
# the rendering on purpose, look at the panels (pytest -m browser saves screenshots), then run
# NBWORKERS_UPDATE_GOLDEN=1 pytest tests/widgets/test_render.py and review the diff of the JSON
# file.

GOLDEN = Path(__file__).parent / "golden" / "render.json"


@pytest.fixture
def utc(monkeypatch):
    """Local time is UTC while rendering, so that the pinned clock times hold anywhere."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def golden_cases() -> dict[str, str]:
    policy = Policy(retries=2, backoff_s=0.5, timeout_s=5, executor="dask")
    busy = snap(
        counts={"queued": 12, "running": 2, "done": 1500, "failed": 3, "retried": 4, "dead": 1},
        policy=policy,
        paused=True,
        pause_reason="storm guard: too fast",
        failing=5,
        longest_run_s=42.0,
        oldest_s=NOW - 30,
        delayed=3,
        next_due_s=NOW + 61,
        last_error="Traceback (most recent call last):\nKeyError: 'x'",
    )
    cron = snap(
        kind="cron",
        schedule="every day at 09:30",
        next_run_s=NOW + 3600 * 5,
        last_run_s=NOW - 86400,
        counts={"skipped": 1},
    )
    cron_zone = replace(
        cron,
        schedule="at 09:00 every day (0 9 * * *), Asia/Tokyo time",
        zone=ZoneInfo("Asia/Tokyo"),
    )
    cron_error = replace(
        cron,
        schedule="every hour at :40, Africa/Monrovia time",
        next_run_s=None,
        schedule_error="ValueError: Africa/Monrovia shows no whole minutes: every hour at "
        ":40, Africa/Monrovia time never runs",
    )
    return {
        "status_idle": render.status_html(snap()),
        "status_busy": render.status_html(busy),
        "status_undefined": render.status_html(snap(defined=False, counts={"queued": 2})),
        "status_cron": render.status_html(cron),
        "status_cron_zone": render.status_html(cron_zone),
        "status_cron_error": render.status_html(cron_error),
        "unhandled_none": render.unhandled_html([], NOW),
        "unhandled": render.unhandled_html([("b", 2, NOW - 5), ("a", 1, None)], NOW),
    }


def test_the_html_of_each_state_is_exactly_as_pinned(utc, monkeypatch):
    monkeypatch.setattr(render, "time", SimpleNamespace(time=lambda: NOW))  # "running since"
    cases = golden_cases()
    if os.environ.get("NBWORKERS_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(cases, indent=1, ensure_ascii=False) + "\n")
    pinned = json.loads(GOLDEN.read_text())
    assert set(cases) == set(pinned)
    for name, html in cases.items():
        assert html == pinned[name], name
