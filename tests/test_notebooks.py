"""Every notebook in notebooks/ runs top to bottom on a fresh kernel, as a user would run it,
and tells the story it claims: its hidden check cells (tagged "check") assert the counts, totals
and results the text describes, so a wrong output fails here, not only an exception."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("kernel", ["nbworkers", "python3"])
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, kernel, tmp_path):
    """On the "Python 3 (nbworkers)" kernel it is saved with, and on a plain python3 kernel,
    where its first cell's %load_ext nbworkers loads the extension (on the nbworkers kernel,
    that line says nothing: test_kernelspec.py)."""
    copy = tmp_path / path.name
    shutil.copy(path, copy)
    nb = nbformat.read(copy, as_version=4)
    assert nb.metadata.kernelspec.name == "nbworkers", f"{path.name}: save it with that kernel"
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
        f"{path.name} is committed with outputs; clear them"
    )
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert first.source.startswith("%load_ext nbworkers")  # so that it runs on any kernel
    checks = [c for c in nb.cells if "check" in c.metadata.get("tags", [])]
    assert checks, f"{path.name} has no check cell asserting its story"
    assert all(c.metadata.get("jupyter", {}).get("source_hidden") for c in checks)
    # A failing check (or any cell that raises) stops the run: nbclient raises with its traceback
    run(nb, kernel, tmp_path)
    assert all(c.execution_count for c in checks), "a check cell did not run"
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert errors == []
    # The database sits beside the notebook, under .nbworkers/
    (db,) = (tmp_path / ".nbworkers").glob("*.duckdb")
    # And the kernel stopped cleanly when nbclient shut it down (its pool processes, Dask
    # clients and threads included): the file was closed, no .wal left, and status says so
    assert not list((tmp_path / ".nbworkers").glob("*.wal"))
    status = subprocess.run(
        [sys.executable, "-m", "nbworkers", "status", str(db)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "Workers and crons" in status and "did not close it" not in status


def run(nb, kernel: str, folder: Path) -> None:
    """Execute ``nb`` in ``folder`` as a person would. A cell tagged "kill" kills its own
    kernel (delivery.ipynb): the cells up to it run on one kernel, which must die there, and
    the rest on a new one in the same folder, as after JupyterLab restarts a dead kernel."""
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
            with pytest.raises(DeadKernelError):
                client.execute()
            assert cells[-1].execution_count, "the kill cell did not run"
        else:
            client.execute()
