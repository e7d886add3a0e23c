"""Live values as plain text (terminals, tests) and HTML (a cell's output, the panel): pure
functions of a ``Live``. Everything from the run goes through ``esc``."""

from __future__ import annotations

import html

from .values import TIMES, clip, one_line

MAX_SOURCE = 60  # the source column's width, at most, in the text form
_FADED = "opacity:0.4"
_VALUE = "color:var(--jp-mirror-editor-variable-2-color, #1565c0)"
_ERROR = "color:var(--jp-error-color1, #c62828);font-weight:600"
_MUTED = "color:var(--jp-content-font-color2, #666)"


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def describe(step) -> str:
    """What one run of a line did, on one line: ``a = 1; b = 'x' → 3 » printed ✗ Error: …``."""
    parts = [f"{name} = {shown}" for name, _, shown in step.values]
    text = "; ".join(parts)
    if step.has_expr:
        text += f"{' ' if text else ''}→ {step.expr}"
    if step.printed:
        text += f"{' ' if text else ''}» {one_line(step.printed.rstrip(), 60)}"
    if step.error:
        text += f"{' ' if text else ''}✗ {one_line(step.error)}"
    return text


def header(live) -> str:
    state = "ok" if live.ok else f"failed: {one_line(live.error or '')}"
    picked = f" · run {live.selected} of each line" if live.selected is not None else ""
    return (
        f"live values of {live.name!r} on trace {live.trace_id}: {state} · "
        f"{live.duration_s * 1000:.1f} ms{picked}"
    )


def _line_note(live, lineno: int) -> tuple[str, str]:
    """(kind, text) of one source line: kind is 'values', 'faded' or ''."""
    record = live.records.get(lineno)
    if record is None:
        return ("faded", "(not reached)") if lineno in live.statements else ("", "")
    step = live.step(record)
    if step is None:
        k = live.selected
        if abs(k) > record.count:
            times = "once" if record.count == 1 else f"{record.count:,} times"
            return "values", f"(ran {times}: no run {k})"
        return "values", f"(run {k} of {TIMES}{record.count:,} not kept)"
    text = describe(step)
    if record.count > 1:
        which = f"run {step.run:,} of " if live.selected is not None else ""
        text += f"{'   ' if text else ''}({which}{TIMES}{record.count:,})"
    return "values", text


def text(live) -> str:
    """Each source line with its values beside it, as ``# ...``; then the output and notes."""
    width = min(MAX_SOURCE, max((len(line.rstrip()) for line in live.lines), default=0))
    out = [header(live)]
    for i, line in enumerate(live.lines):
        lineno = live.first_lineno + i
        _, note = _line_note(live, lineno)
        code = line.rstrip()
        row = f"{lineno:>4}  {code.ljust(width)}"
        out.append(f"{row}  # {note}" if note else row.rstrip())
    if live.printed:
        out.append("printed:")
        out.extend("  " + line for line in clip(live.printed.rstrip("\n")).splitlines())
    if not live.ok and live.traceback:
        out.append("traceback:")
        out.extend("  " + line for line in clip(live.traceback.rstrip("\n")).splitlines())
    out.extend(f"note: {note}" for note in live.notes)
    return "\n".join(out)


def _runs_html(live, record) -> str:
    """A line's kept runs, to pick one: a <details> listing them."""
    rows = []
    previous = 0
    for step in record.kept():
        if step.run > previous + 1:
            rows.append(
                f'<div style="{_MUTED}">⋯ {step.run - previous - 1:,} runs not kept ⋯</div>'
            )
        rows.append(
            f'<div class="nbw-live-run"><span style="{_MUTED}">run {step.run:,}:</span> '
            f'<span style="{_VALUE}">{esc(describe(step)) or "(nothing)"}</span></div>'
        )
        previous = step.run
    return "".join(rows)


def html_view(live) -> str:
    """The rich form: a table of line number, code and values; unreached lines faded; a line
    run more than once has a count ("times" markN) that opens its kept runs."""
    state = (
        '<span style="color:var(--jp-success-color1, #2e7d32);font-weight:600">ok</span>'
        if live.ok
        else f'<span style="{_ERROR}">failed: {esc(one_line(live.error or ""))}</span>'
    )
    picked = f" · run {live.selected} of each line" if live.selected is not None else ""
    parts = [
        '<div class="nbw-live" style="font-family:var(--jp-code-font-family, monospace);'
        "font-size:var(--jp-code-font-size, 13px);color:var(--jp-content-font-color1, inherit);"
        'line-height:1.5">',
        f'<div class="nbw-live-head" style="margin-bottom:4px">live values of '
        f"<b>{esc(live.name)}</b> on trace {esc(live.trace_id)}: {state} "
        f'<span style="{_MUTED}">· {live.duration_s * 1000:.1f} ms{esc(picked)}</span></div>',
        '<table style="border-collapse:collapse;border:none">',
    ]
    cell = "padding:0 0.8em 0 0;border:none;vertical-align:top;text-align:left;white-space:pre"
    for i, line in enumerate(live.lines):
        lineno = live.first_lineno + i
        kind, note = _line_note(live, lineno)
        record = live.records.get(lineno)
        row_style = f"{_FADED};" if kind == "faded" else ""
        classes = "nbw-live-line" + (" nbw-live-unreached" if kind == "faded" else "")
        if kind == "faded":
            shown = f'<span style="{_MUTED};font-style:italic">not reached</span>'
        elif record is not None and record.count > 1:
            step = live.step(record)
            latest = esc(describe(step)) if step is not None else esc(note)
            shown = (
                f'<details class="nbw-live-runs" style="display:inline-block">'
                f'<summary style="cursor:pointer" title="show the runs kept: the first and '
                f'the last few"><span style="{_VALUE}">{latest}</span> '
                f'<span style="{_MUTED}">{TIMES}{record.count:,}</span></summary>'
                f"{_runs_html(live, record)}</details>"
            )
        elif note:
            style = _ERROR if record is not None and live.step(record).error else _VALUE
            shown = f'<span class="nbw-live-value" style="{style}">{esc(note)}</span>'
        else:
            shown = ""
        parts.append(
            f'<tr class="{classes}" style="{row_style}background:transparent">'
            f'<td style="{cell};{_MUTED};text-align:right">{lineno}</td>'
            f'<td style="{cell}">{esc(line.rstrip()) or " "}</td>'
            f'<td style="{cell};white-space:normal">{shown}</td></tr>'
        )
    parts.append("</table>")
    block = (
        "margin:4px 0;padding:4px;white-space:pre-wrap;max-height:12em;overflow:auto;"
        "background:var(--jp-layout-color2, #f5f5f5)"
    )
    if live.printed:
        printed = esc(clip(live.printed))
        parts.append(f'<div><b>printed</b><pre style="{block}">{printed}</pre></div>')
    if not live.ok and live.traceback:
        parts.append(
            f'<div><b>traceback</b><pre style="{block};{_ERROR};font-weight:normal">'
            f"{esc(clip(live.traceback))}</pre></div>"
        )
    parts.extend(f'<div style="{_MUTED}">note: {esc(note)}</div>' for note in live.notes)
    parts.append("</div>")
    return "".join(parts)


def data(live) -> dict:
    """The panel's form: plain data its browser view shows as text (widgets/static/)."""
    lines = []
    for i, line in enumerate(live.lines):
        lineno = live.first_lineno + i
        kind, note = _line_note(live, lineno)
        record = live.records.get(lineno)
        step = live.step(record) if record is not None else None
        shown = {"lineno": lineno, "code": line.rstrip(), "kind": kind, "note": note}
        if record is not None and record.count > 1:
            shown["latest"] = describe(step) if step is not None else note
            shown["count"] = record.count
            shown["runs"] = _runs(record)
        shown["error"] = bool(step is not None and step.error)
        lines.append(shown)
    return {
        "name": live.name,
        "trace_id": live.trace_id,
        "ok": live.ok,
        "error": None if live.ok else one_line(live.error or ""),
        "duration_ms": round(live.duration_s * 1000, 1),
        "selected": live.selected,
        "lines": lines,
        "printed": clip(live.printed) if live.printed else "",
        "traceback": clip(live.traceback) if not live.ok and live.traceback else "",
        "notes": list(live.notes),
    }


def _runs(record) -> list[dict]:
    """A line's kept runs, with the gaps between them: {"run", "text"} or {"skipped"}."""
    shown = []
    previous = 0
    for step in record.kept():
        if step.run > previous + 1:
            shown.append({"skipped": step.run - previous - 1})
        shown.append({"run": step.run, "text": describe(step) or "(nothing)"})
        previous = step.run
    return shown
