"""MkDocs hooks (mkdocs.yml, ``hooks``): the notebooks are executed for the site, each keeping its
queues in a database of its own, named after it, in a fresh folder each build; never in
``notebooks/.nbworkers`` beside a reader's own runs. The pages show what a first run shows.

mkdocs-jupyter executes a notebook as its page is rendered: ``NBWORKERS_DB`` is set just before
(``on_pre_page``). delivery.ipynb kills its own kernel halfway, which mkdocs-jupyter cannot
execute (it is in ``execute_ignore``): it is executed here first, as the tests run it (the cells
after the kill on a new kernel, ``tests/notebook_runner.py``), and its page made from that copy.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path, PurePosixPath

import nbformat
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
KILLS = ("notebooks/delivery.ipynb",)  # executed here, with its kernel killed and restarted
_folder: tempfile.TemporaryDirectory | None = None


def on_pre_build(config, **kwargs) -> None:
    global _folder
    _folder = tempfile.TemporaryDirectory(prefix="nbworkers-docs-")


@event_priority(50)  # before mkdocs-jupyter makes the notebooks pages: this one too
def on_files(files, config):
    sys.path.insert(0, str(ROOT))
    try:
        from tests.notebook_runner import run
    finally:
        sys.path.remove(str(ROOT))
    for uri in KILLS:
        page = files.get_file_from_path(uri)
        folder = Path(_folder.name) / PurePosixPath(uri).stem
        (folder / "notebooks").mkdir(parents=True)
        nb = nbformat.read(page.abs_src_path, as_version=4)
        os.environ["NBWORKERS_DB"] = str(folder / f"{PurePosixPath(uri).stem}.duckdb")
        run(nb, nb.metadata.kernelspec.name, folder / "notebooks")
        nbformat.write(nb, folder / uri)
        files.remove(page)
        files.append(File(uri, str(folder), config.site_dir, config.use_directory_urls))
    return files


def on_pre_page(page, config, files):
    if _folder is not None and page.file.src_uri.endswith(".ipynb"):
        stem = PurePosixPath(page.file.src_uri).stem
        os.environ["NBWORKERS_DB"] = os.path.join(_folder.name, f"{stem}.duckdb")
    return page


def on_post_build(config, **kwargs) -> None:
    os.environ.pop("NBWORKERS_DB", None)
    if _folder is not None:
        _folder.cleanup()
