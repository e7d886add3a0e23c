"""Live ipywidgets panels: one under each ``%%worker``/``%%cron`` cell, and the dashboard."""

from __future__ import annotations

from .dashboard import Dashboard
from .hub import views
from .panel import Panel

__all__ = ["Dashboard", "Panel", "panels", "show_panel"]

_by_cell: dict[tuple[str, str], Panel] = {}


def panels(name: str) -> list[Panel]:
    """The open panels of ``name`` (under cells and in dashboards)."""
    return [v for v in views() if isinstance(v, Panel) and v.name == name]


def show_panel(name: str, cell_id: str | None = None) -> Panel:
    """Display the panel of ``name``; the panel an earlier run of the same cell showed closes."""
    from IPython.display import display

    if cell_id is not None:
        old = _by_cell.pop((cell_id, name), None)
        if old is not None:
            old.close()
    panel = Panel(name)
    if cell_id is not None:
        _by_cell[(cell_id, name)] = panel
    display(panel)
    return panel
