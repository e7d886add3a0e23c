"""HTML for the panels, as pure functions of a runtime snapshot. Everything that comes from
events, results, output or tracebacks goes through ``esc``."""

from __future__ import annotations

import html
import time
from datetime import datetime, tzinfo

from ..engine.snapshot import WorkerSnapshot
from ..fingerprint import error_line
from .state import badge

RED = "#c62828"
GREEN = "#2e7d32"
AMBER = "#b26a00"
# A run going for longer than this is shown in the status, with how long it has taken so far
LONG_RUN_S = 10.0


def esc(value) -> str:
    """``value`` as text safe to put in HTML."""
    return html.escape(str(value), quote=True)


def ago(seconds: float) -> str:
    """'12 s', '3 min', '2 h', '4 d'."""
    seconds = max(0.0, seconds)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def clock(ts: float, zone: tzinfo | None = None) -> str:
    """The time of day at ``ts``, in ``zone`` (a cron's) or the kernel's local time."""
    return datetime.fromtimestamp(ts, zone).strftime("%H:%M:%S")


def _badge(text: str, colour: str) -> str:
    return (
        f'<span style="background:{colour};color:#fff;border-radius:3px;padding:0 6px;'
        f'font-weight:600">{esc(text)}</span>'
    )


def _count(label: str, value: int, colour: str | None = None) -> str:
    style = "display:inline-block;min-width:5.5em;font-variant-numeric:tabular-nums"
    if colour:
        style += f";color:{colour};font-weight:700"
    return f'<span style="{style}">{esc(label)} {value:,}</span>'


def status_html(snap: WorkerSnapshot) -> str:
    """Name, kind, state, counts, schedule and latest error of one worker or cron."""
    counts = snap.counts
    if not snap.defined:
        state = _badge("removed" if snap.removed else "not defined", "#757575")
    elif snap.paused:
        state = _badge("❚❚ paused", AMBER)
    else:
        state = _badge("▶ running", GREEN)
    kind = snap.kind
    if kind == "worker" and snap.defined:
        kind += f" · concurrency {snap.concurrency}"
    policy = snap.policy
    if snap.defined:
        if policy.retries:
            kind += f" · retries {policy.retries} (backoff {policy.backoff_s:g} s)"
        if policy.timeout_s is not None:
            kind += f" · timeout {policy.timeout_s:g} s"
        if policy.executor != "threads":
            kind += f" · runs in {policy.executor}"
        if policy.keep is not None:
            kind += f" · keeps {policy.keep:,} traces"
        if policy.ttl_s is not None:
            kind += f" · ttl {policy.ttl_s:g} s"
        if policy.rate is not None:
            kind += f" · rate {policy.rate}"
        if policy.batch is not None:
            kind += f" · batches of {policy.batch:,} (wait {policy.batch_wait_s:g} s)"
    parts = [
        f'<div style="line-height:1.6"><b style="font-size:1.1em">{esc(snap.name)}</b> '
        f'<span style="color:#666">{esc(kind)}</span> {state}</div>',
        "<div>"
        + _count("queued", counts["queued"])
        + _count("running", counts["running"])
        + _count("done", counts["done"])
        + _count("failed", counts["failed"], RED if counts["failed"] else None)
        + (_count("retried", counts["retried"]) if counts.get("retried") else "")
        + (_count("dead", counts["dead"], RED) if counts.get("dead") else "")
        + (_count("expired", counts["expired"]) if counts.get("expired") else "")
        + (_count("skipped", counts["skipped"]) if "skipped" in counts else "")
        + "</div>",
    ]
    now = snap.now
    if snap.removed:
        parts.append(
            '<div style="color:#666">removed (nw.remove): no run starts; its queued messages '
            "wait, unhandled, until it is defined again (run its cell)</div>"
        )
    if snap.stopping_ids:
        parts.append(
            f'<div style="color:{AMBER};font-weight:600">stop asked: '
            f"{esc(', '.join(snap.stopping_ids))} (a run on a thread stops at its next Python "
            "line; message.stopping is True)</div>"
        )
    if snap.paused and snap.pause_reason:
        reason = esc(snap.pause_reason)
        parts.append(f'<div style="color:{AMBER};font-weight:600">{reason}</div>')
    if snap.failing:
        parts.append(
            f'<div style="background:{RED};color:#fff;padding:2px 6px;border-radius:3px">'
            f"failing: its last {snap.failing:,} runs failed in a row</div>"
        )
    longest = snap.longest_run_s
    if longest is not None and longest >= LONG_RUN_S:
        parts.append(
            f'<div style="color:{AMBER};font-weight:600">a run has been running for '
            f"{ago(longest)} (since {clock(time.time() - longest)})</div>"
        )
    rate_wait_s = counts.get("rate_wait_s")
    if rate_wait_s is not None and snap.defined and not snap.paused:
        parts.append(
            f'<div style="color:{AMBER};font-weight:600">waiting for rate limit '
            f"({esc(snap.policy.rate)}): the next run may start in {rate_wait_s:.1f} s</div>"
        )
    if snap.oldest_s is not None and counts["queued"]:
        parts.append(f'<div style="color:#666">oldest queued: {ago(now - snap.oldest_s)} ago</div>')
    if any(snap.priorities):  # a priority other than 0
        by = " · ".join(f"{n:,} at {p}" for p, n in snap.priorities.items())
        parts.append(f'<div style="color:#666">ready by priority (higher first): {by}</div>')
    if snap.delayed:
        due = snap.next_due_s
        parts.append(
            f'<div style="color:#666">{snap.delayed:,} of them waiting for a delay or a '
            f"retry; the next is due in {ago(due - now)} ({clock(due)})</div>"
        )
    if snap.schedule:
        line = esc(snap.schedule)
        zone = snap.zone
        if snap.schedule_error:
            line += f' · <span style="color:{RED}">no next run: {esc(snap.schedule_error)}</span>'
        elif snap.next_run_s is None:
            line += " · paused: no next run"
        elif snap.next_run_s <= now:
            line += " · next run: now"
        else:
            due = snap.next_run_s
            line += f" · next run in {ago(due - now)} ({clock(due, zone)})"
        if snap.last_run_s is not None:
            line += f" · last run {ago(now - snap.last_run_s)} ago"
        parts.append(f"<div>{line}</div>")
    if snap.last_error:
        last_line = error_line(snap.last_error)  # its own line, not a note after it
        parts.append(
            f'<div style="color:{RED};font-family:monospace">latest error: {esc(last_line)}</div>'
        )
    return "".join(parts)


def status_text(snap: WorkerSnapshot) -> str:
    """A panel as one line of plain text: "wordcount (worker, running): queued 0 · ..."."""
    counts = snap.counts
    labels = ["queued", "running", "done", "failed"]
    labels += [k for k in ("retried", "dead", "expired") if counts.get(k)]
    shown = " · ".join(f"{label} {counts[label]:,}" for label in labels)
    return f"{snap.name} ({snap.kind}, {badge(snap)}): {shown}"


def live_running_html(trace_id: str, timeout_s: float | None) -> str:
    """The panel's live values area while they are computed."""
    limit = f" (stopped after the worker's time limit, {timeout_s:g} s)" if timeout_s else ""
    return (
        f'<div style="color:#666">Computing live values of {esc(trace_id)}: running the current '
        f"code on its input{esc(limit)}…</div>"
    )


def live_error_html(trace_id: str, exc: BaseException) -> str:
    """The panel's live values area when they could not be computed."""
    return (
        f'<div style="color:{RED}">Live values of {esc(trace_id)} failed: '
        f"{esc(type(exc).__name__)}: {esc(exc)}</div>"
    )


def unhandled_html(rows: list[tuple[str, int, float | None]], now: float) -> str:
    """The dashboard's Unhandled section: names with messages but no worker."""
    if not rows:
        return '<div style="color:#666">Unhandled: none.</div>'
    lines = [
        "<div><b>Unhandled</b>: messages emitted to names with no worker yet. "
        "Run a cell starting with the line shown to handle them.</div>",
        '<table style="border-collapse:collapse"><tr><th style="text-align:left">name</th>'
        '<th style="text-align:right;padding:0 1em">queued</th>'
        '<th style="text-align:left">oldest</th><th style="text-align:left;padding:0 1em">'
        "create it with</th></tr>",
    ]
    for name, count, oldest in sorted(rows):
        age = f"{ago(now - oldest)} ago" if oldest is not None else "-"
        lines.append(
            f"<tr><td>{esc(name)}</td><td style='text-align:right;padding:0 1em'>{count:,}</td>"
            f"<td>{esc(age)}</td><td style='padding:0 1em'><code>%%worker {esc(name)}</code>"
            "</td></tr>"
        )
    lines.append("</table>")
    return "".join(lines)
