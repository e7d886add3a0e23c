"""Running a notebook as a person would, a kernel killed on purpose included: shared by
tests/test_notebooks.py and the documentation build (docs/hooks.py), which shows
delivery.ipynb executed."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


class KernelDidNotDie(AssertionError):
    """A cell tagged "kill" ran and its kernel lived on."""


def views_without_state(nb) -> list[str]:
    """The widgets ``nb``'s outputs show whose state its metadata does not keep: a page made
    from it would show their plain text (nbconvert drops such a view), not the panel."""
    kept = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    return [
        output["data"][WIDGET_VIEW]["model_id"]
        for cell in nb.cells
        for output in cell.get("outputs", ())
        if WIDGET_VIEW in output.get("data", {})
        and output["data"][WIDGET_VIEW]["model_id"] not in kept
    ]


def run(nb, kernel: str, folder: Path) -> None:
    """Execute ``nb`` (its cells get their outputs) in ``folder``. A cell tagged "kill" kills
    its own kernel (delivery.ipynb): the cells up to it run on one kernel, which must die
    there, and the rest on a new one in the same folder, as after JupyterLab restarts a dead
    kernel. Raises what nbclient raises for a cell that fails."""
    kills = [i for i, c in enumerate(nb.cells) if "kill" in c.metadata.get("tags", [])]
    parts = [nb.cells]
    if kills:
        (k,) = kills
        parts = [nb.cells[: k + 1], nb.cells[k + 1 :]]
    states = {}  # the widgets' state of every part: the panels drawn before the kill too
    for n, cells in enumerate(parts):
        part = nbformat.v4.new_notebook(cells=cells, metadata=dict(nb.metadata))
        client = NotebookClient(
            part, timeout=120, kernel_name=kernel, resources={"metadata": {"path": str(folder)}}
        )
        if kills and n == 0:
            try:
                client.execute()
            except DeadKernelError:
                if not cells[-1].execution_count:
                    raise  # an earlier cell killed it: a failure of that cell
                client.set_widgets_metadata()  # (nbclient does not, for a kernel that died)
            else:
                raise KernelDidNotDie(f"cell {k} is tagged kill and its kernel lived on")
        else:
            client.execute()
        states.update(part.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {}))
    if states:
        nb.metadata["widgets"] = {
            WIDGET_STATE: {"state": states, "version_major": 2, "version_minor": 0}
        }
