"""MkDocs hooks (mkdocs.yml, ``hooks``): each notebook executed for the site keeps its queues
in a database of its own, named after it, in a fresh folder each build (``NBWORKERS_DB``, set
before its page is rendered, which is when mkdocs-jupyter runs it); never in
``notebooks/.nbworkers`` beside a reader's own runs. The pages show what a first run shows."""

from __future__ import annotations

import os
import tempfile
from pathlib import PurePosixPath

_folder: tempfile.TemporaryDirectory | None = None


def on_pre_build(config, **kwargs) -> None:
    global _folder
    _folder = tempfile.TemporaryDirectory(prefix="nbworkers-docs-")


def on_pre_page(page, config, files):
    if _folder is not None and page.file.src_uri.endswith(".ipynb"):
        stem = PurePosixPath(page.file.src_uri).stem
        os.environ["NBWORKERS_DB"] = os.path.join(_folder.name, f"{stem}.duckdb")
    return page


def on_post_build(config, **kwargs) -> None:
    os.environ.pop("NBWORKERS_DB", None)
    if _folder is not None:
        _folder.cleanup()
