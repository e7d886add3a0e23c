"""A panel's failure groups: its worker's biggest groups of dead letters by cause
("200,000 x KeyError: 'text' at line 2"), each with a Requeue and a Discard button."""

from __future__ import annotations

import ipywidgets as widgets

from .. import api
from ..engine.failures import TIMES
from ..engine.queries import PANEL_GROUPS
from . import render


class FailureRow(widgets.HBox):
    """One group: its count and title, Requeue (after fixing the cell) and Discard."""

    def __init__(self, panel, action):
        self.panel = panel
        self.fingerprint: str | None = None  # the group shown
        self.label = widgets.HTML(layout=widgets.Layout(flex="1 1 auto"))
        self.requeue_button = widgets.Button(
            description="Requeue",
            icon="undo",
            tooltip="Queue this group's dead letters again as new messages (after fixing the "
            "cell): nw.requeue(name, group=...)",
            layout=widgets.Layout(width="auto", flex="0 0 auto"),  # never cut short
        )
        self.discard_button = widgets.Button(
            description="Discard",
            icon="trash",
            tooltip="Drop this group's dead letters for good: nw.discard(name, group=...)",
            layout=widgets.Layout(width="auto", flex="0 0 auto"),  # never cut short
        )
        self.requeue_button.on_click(action(panel, lambda: self._act(api.requeue)))
        self.discard_button.on_click(action(panel, lambda: self._act(api.discard)))
        super().__init__(
            [self.requeue_button, self.discard_button, self.label],
            layout=widgets.Layout(display="none"),
        )
        self.add_class("nbw-failure")

    def _act(self, verb) -> None:
        if self.fingerprint is not None:
            verb(self.panel.name, group=self.fingerprint)

    def show(self, group: tuple[str, str, int] | None) -> None:
        """Show ``group`` (fingerprint, title, count), or hide the row (None)."""
        if group is None:
            self.fingerprint = None
            self.layout.display = "none"
            return
        fingerprint, title, count = group
        self.fingerprint = fingerprint
        label = (
            f'<span style="color:{render.RED}"><b>{count:,}</b> {TIMES} {render.esc(title)}</span> '
            f'<span style="color:#888">[{fingerprint}]</span>'
        )
        if self.label.value != label:
            self.label.value = label
        self.layout.display = None


class FailureGroups(widgets.VBox):
    """The top PANEL_GROUPS groups of a panel's worker, biggest first."""

    def __init__(self, panel, action):
        self.rows = [FailureRow(panel, action) for _ in range(PANEL_GROUPS)]
        super().__init__(self.rows)
        self.add_class("nbw-failures")

    def show(self, groups: tuple[tuple[str, str, int], ...]) -> None:
        for i, row in enumerate(self.rows):
            row.show(groups[i] if i < len(groups) else None)
