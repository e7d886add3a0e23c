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

from tests.notebook_runner import KernelDidNotDie, run, views_without_state

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
    # Every panel it shows has its widget state kept (a page made from it draws them all; a
    # killed kernel's panels included): it shows some
    assert views_without_state(nb) == []
    assert nb.metadata.widgets["application/vnd.jupyter.widget-state+json"]["state"]
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


def test_a_kill_cell_whose_kernel_lives_on_fails_the_run(tmp_path):
    """The runner that executes delivery.ipynb cannot pass a notebook whose kill did nothing."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    nb.cells[0].metadata["tags"] = ["kill"]
    with pytest.raises(KernelDidNotDie):
        run(nb, "python3", tmp_path)
