"""The table a try shows: one row per trace, old result against new, as rich HTML (with an
Apply button in a kernel) and as plain text for terminals and tests."""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import NBWorkersError
from .values import clip

# The panels' colours (widgets/render.py), not imported: that would import ipywidgets with
# nbworkers itself.
RED = "#c62828"
GREEN = "#2e7d32"
AMBER = "#b26a00"

_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_TEXT_CELL = 28  # characters of a preview in the plain-text table
_HEADER = ("trace", "input", "old result", "new result", "changed", "old took", "new took")


@dataclass
class TryRow:
    """One trace tried (``trace``): its input's preview, what its run ended with (``old``)
    and what the new code gives (``new``); ``*_error`` when that is an exception's
    ``Type: message`` line.
    ``changed`` is None when it cannot be told (the old result was not kept, or the input
    cannot be unpickled)."""

    trace_id: str
    input: str
    old: str
    old_error: bool
    old_duration_s: float
    new: str = ""
    new_error: bool = False
    new_duration_s: float | None = None
    changed: bool | None = None
    printed: str = ""  # what the new code printed
    traceback: str = ""  # the new code's traceback, when it raised
    trace: object = field(default=None, repr=False)  # the Trace tried (``.input``...)

    @property
    def fixed(self) -> bool:
        return self.old_error and not self.new_error and self.new_duration_s is not None

    @property
    def broken(self) -> bool:
        """It fails now and did not (not when that cannot be told: ``changed`` is None)."""
        return self.new_error and not self.old_error and self.changed is not None


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f} µs"
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _changed_word(row: TryRow) -> str:
    return "?" if row.changed is None else "changed" if row.changed else "same"


class TryResult:
    """What ``%%worker NAME --try`` and ``nw.try_code`` return: ``rows`` (``TryRow``s, newest
    trace first), ``changed`` (the rows whose result changed); ``apply()`` makes the tried
    code live, as the Apply button under the table does. ``nothing`` says why no row was
    tried (the worker has no traces yet)."""

    def __init__(
        self,
        name: str,
        n: int,
        rows: list[TryRow] | None = None,
        *,
        nothing: str | None = None,
        tried=None,
        interrupted: bool = False,
        apply: Callable | None = None,
    ):
        self.name = name
        self.n = n
        self.rows = rows or []
        self.nothing = nothing
        self.interrupted = interrupted
        self._tried = tried
        self._apply = apply
        self._view = None

    @property
    def changed(self) -> list[TryRow]:
        return [r for r in self.rows if r.changed]

    def apply(self) -> None:
        """Make the tried code live (NBWorkersError if a newer try replaced it)."""
        if self._apply is None:
            raise NBWorkersError(f"nothing was tried for {self.name!r}, so nothing to apply")
        self._apply(self._tried)

    # ----- words --------------------------------------------------------------------------------

    def summary(self) -> str:
        if self.nothing is not None:
            return self.nothing
        rows = self.rows
        changed = sum(bool(r.changed) for r in rows)
        unknown = sum(r.changed is None for r in rows)
        fixed = sum(r.fixed and bool(r.changed) for r in rows)
        broken = sum(r.broken for r in rows)
        how = [f"{fixed} fixed"] * bool(fixed) + [f"{broken} newly failing"] * bool(broken)
        parts = [f"{changed} changed" + (f" ({', '.join(how)})" if how else "")]
        parts.append(f"{len(rows) - changed - unknown} unchanged")
        if unknown:
            parts.append(f"{unknown} unknown")
        many = "trace" if len(rows) == 1 else f"{len(rows)} traces"
        text = f"New code for {self.name!r} tried on its last {many}: {', '.join(parts)}."
        if self.interrupted:
            text += " Interrupted: the traces after these were not tried."
        return text

    def _next_step(self) -> str:
        if self._tried is not None and self._tried.applied:
            return f"This code is now live for {self.name!r}."
        return (
            f"{self.name!r} still runs its current code: Apply (or nw.apply({self.name!r})) "
            "makes this code live."
        )

    def __repr__(self) -> str:
        if self.nothing is not None:
            return self.nothing
        header = _HEADER
        lines = [self.summary(), self._next_step(), ""]
        table = [header]
        for r in self.rows:
            table.append(
                (
                    r.trace_id,
                    _cut(r.input),
                    _cut(r.old),
                    _cut(r.new),
                    _changed_word(r),
                    _ms(r.old_duration_s),
                    _ms(r.new_duration_s),
                )
            )
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        for i, cells in enumerate(table):
            lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
            if i and self.rows[i - 1].printed:
                printed = clip(self.rows[i - 1].printed.rstrip("\n")).replace("\n", "\n    | ")
                lines.append(f"    printed: {printed}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        if self.nothing is not None:
            return f'<div style="color:{AMBER}">{esc(self.nothing)}</div>'
        return table_html(self)

    # ----- in a kernel: the table with its Apply button -----------------------------------------

    def _repr_mimebundle_(self, include=None, exclude=None):
        """In a kernel, the widget (table and Apply button); text/html and text/plain come
        from ``_repr_html_`` and ``__repr__``, for front ends without widgets."""
        if self._apply is None or not _in_kernel():
            return None
        bundle = self.view._repr_mimebundle_()
        return {_WIDGET_VIEW: bundle[_WIDGET_VIEW]} if bundle else None

    @property
    def view(self):
        """The widget: the table, then the Apply button and a line saying what it did."""
        if self._view is None:
            import ipywidgets as widgets

            self._table = widgets.HTML(table_html(self))
            self._button = widgets.Button(
                description="Apply",
                icon="check",
                button_style="primary",
                tooltip=f"Make this code live for {self.name!r}, with the options of its "
                "--try line (as running the cell without --try)",
                layout=widgets.Layout(width="auto"),
            )
            self._notice = widgets.HTML()
            self._button.on_click(self._clicked)
            self._button.add_class("nbw-apply")
            self._view = widgets.VBox([self._table, widgets.HBox([self._button, self._notice])])
            self._view.add_class("nbw-try")
        return self._view

    @property
    def apply_button(self):
        """The Apply button (an ipywidgets Button): a click calls ``apply``."""
        self.view  # noqa: B018 - made on first use
        return self._button

    @property
    def notice(self):
        """The line beside the button: what a click did, or why it could not."""
        self.view  # noqa: B018 - made on first use
        return self._notice

    def _clicked(self, *_) -> None:
        try:
            self.apply()
        except Exception as exc:  # noqa: BLE001 - shown beside the button
            self._notice.value = (
                f'<span style="color:{RED}">{esc(type(exc).__name__)}: {esc(exc)}</span>'
            )
            return
        self._button.disabled = True
        self._button.description = "Applied"
        self._notice.value = f'<span style="color:{GREEN}">{esc(self._next_step())}</span>'
        self._table.value = table_html(self)


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def _cut(text: str) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= _TEXT_CELL else text[: _TEXT_CELL - 1] + "…"


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return getattr(get_ipython(), "kernel", None) is not None


_TD = "padding:2px 8px;text-align:left;vertical-align:top;border-bottom:1px solid #eee"


def table_html(result: TryResult) -> str:
    """The table, escaped: changed rows shaded, new errors in red, fixes in green; what the
    new code printed and its traceback fold out under the row."""
    head = "".join(f'<th style="{_TD}">{esc(h)}</th>' for h in _HEADER)
    body = []
    for r in result.rows:
        shade = ' style="background:#fff6e0"' if r.changed else ""
        new_colour = RED if r.new_error else GREEN if r.fixed and r.changed else None
        old_style = f" style='color:{RED}'" if r.old_error else ""
        new_style = f" style='color:{new_colour}'" if new_colour else ""
        body.append(
            f"<tr{shade}><td style='{_TD}'>{esc(r.trace_id)}</td>"
            f"<td style='{_TD}'><code>{esc(r.input)}</code></td>"
            f"<td style='{_TD}'><code{old_style}>{esc(r.old)}</code></td>"
            f"<td style='{_TD}'><code{new_style}>{esc(r.new)}</code>{_folds(r)}</td>"
            f"<td style='{_TD}'>{'<b>changed</b>' if r.changed else esc(_changed_word(r))}</td>"
            f"<td style='{_TD}'>{_ms(r.old_duration_s)}</td>"
            f"<td style='{_TD}'>{_ms(r.new_duration_s)}</td></tr>"
        )
    return (
        f"<div><b>{esc(result.summary())}</b> {esc(result._next_step())}</div>"
        f'<table style="border-collapse:collapse;font-size:0.92em"><tr>{head}</tr>'
        + "".join(body)
        + "</table>"
    )


_SUMMARY = "<details><summary style='white-space:nowrap'>"


def _folds(row: TryRow) -> str:
    parts = []
    if row.printed:
        lines = row.printed.count("\n") + (not row.printed.endswith("\n"))
        parts.append(
            f"{_SUMMARY}printed ({lines} line{'s' if lines != 1 else ''})</summary>"
            f"<pre style='margin:0'>{esc(clip(row.printed))}</pre></details>"
        )
    if row.traceback:
        parts.append(
            f"{_SUMMARY}traceback</summary><pre style='margin:0;color:{RED}'>"
            f"{esc(clip(row.traceback))}</pre></details>"
        )
    return "".join(parts)
