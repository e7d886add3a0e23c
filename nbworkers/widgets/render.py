"""HTML for the panels, as pure functions of a runtime snapshot. Everything that comes from
events, results, output or tracebacks goes through ``esc``."""

from __future__ import annotations

import html

from ..engine.snapshot import WorkerSnapshot
from .state import badge

RED = "#c62828"


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


def dashboard_text(snaps: list[WorkerSnapshot], unhandled: list[tuple[str, int]]) -> str:
    """The dashboard as plain text: a line per worker and cron, then the unhandled names."""
    lines = [f"nbworkers: {len(snaps)} worker(s) and cron(s)"]
    lines += [f"  {status_text(snap)}" for snap in snaps]
    if unhandled:
        waiting = ", ".join(f"{name} ({count:,} queued)" for name, count in unhandled)
        lines.append(f"  unhandled: {waiting}")
    return "\n".join(lines)


def status_text(snap: WorkerSnapshot) -> str:
    """A panel as one line of plain text: "wordcount (worker, running): queued 0 · ..."."""
    counts = snap.counts
    labels = ["queued", "running", "done", "failed"]
    labels += [k for k in ("retried", "dead", "expired") if counts.get(k)]
    shown = " · ".join(f"{label} {counts[label]:,}" for label in labels)
    return f"{snap.name} ({snap.kind}, {badge(snap)}): {shown}"


def unhandled_html(rows: list[tuple[str, int, float | None]], now: float) -> str:
    """The dashboard's Unhandled section: names with messages but no worker."""
    if not rows:
        return '<div style="color:var(--jp-ui-font-color2, #666)">Unhandled: none.</div>'
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
