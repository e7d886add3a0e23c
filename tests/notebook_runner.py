"""Running a notebook as a person would, a kernel killed on purpose included: shared by
tests/test_notebooks.py and the documentation build (docs/hooks.py), which shows
delivery.ipynb executed."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError


class KernelDidNotDie(AssertionError):
    """A cell tagged "kill" ran and its kernel lived on."""


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
    for n, cells in enumerate(parts):
        part = nbformat.v4.new_notebook(cells=cells, metadata=nb.metadata)
        client = NotebookClient(
            part, timeout=120, kernel_name=kernel, resources={"metadata": {"path": str(folder)}}
        )
        if kills and n == 0:
            try:
                client.execute()
            except DeadKernelError:
                if not cells[-1].execution_count:
                    raise  # an earlier cell killed it: a failure of that cell
            else:
                raise KernelDidNotDie(f"cell {k} is tagged kill and its kernel lived on")
        else:
            client.execute()
