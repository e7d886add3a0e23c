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
from datetime import datetime
from pathlib import Path

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


def test_the_text_line_names_expired_messages_and_the_dashboard_lists_every_unhandled_name():
    line = render.status_text(snap(counts={"dead": 3, "expired": 2}))
    assert line.endswith("dead 3 · expired 2")
    text = render.dashboard_text([], [("a", 1), ("b", 2_000)])
    assert text.splitlines()[-1] == "  unhandled: a (1 queued), b (2,000 queued)"


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
    busy = snap(counts={"queued": 1234, "done": 7, "failed": 2, "dead": 2, "retried": 1})
    return {
        "text_idle": render.status_text(snap()),
        "text_busy": render.status_text(busy),
        "text_undefined": render.status_text(snap(defined=False, counts={"queued": 2})),
        "text_dashboard": render.dashboard_text([snap(), busy], [("nobody", 3)]),
        "unhandled_none": render.unhandled_html([], NOW),
        "unhandled": render.unhandled_html([("b", 2, NOW - 5), ("a", 1, None)], NOW),
    }


def test_the_html_and_text_of_each_state_is_exactly_as_pinned(utc):
    cases = golden_cases()
    if os.environ.get("NBWORKERS_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(cases, indent=1, ensure_ascii=False) + "\n")
    pinned = json.loads(GOLDEN.read_text())
    assert set(cases) == set(pinned)
    for name, html in cases.items():
        assert html == pinned[name], name
