"""MkDocs hooks (mkdocs.yml, ``hooks``): the notebooks are executed for the site, each keeping its
queues in a database of its own, named after it, in a fresh folder each build; never in
``notebooks/.nbworkers`` beside a reader's own runs. The pages show what a first run shows.

mkdocs-jupyter executes a notebook as its page is rendered: ``NBWORKERS_DB`` is set just before
(``on_pre_page``). delivery.ipynb kills its own kernel halfway, which mkdocs-jupyter cannot
execute (it is in ``execute_ignore``): it is executed here first, as the tests run it (the cells
after the kill on a new kernel, ``tests/notebook_runner.py``), and its page made from that copy.

The panels are widgets: the pages keep each one's state as the run left it, drawn in the reader's
browser by ipywidgets' HTML manager and anywidget, which load with require.js from their CDNs
(``include_requirejs``). ``on_post_page`` fails the build if a page shows a widget whose state was
not kept, or has no require.js to draw it with: such a panel would be blank.
"""

from __future__ import annotations

import html
import json
import os
import re
import sys
import tempfile
from pathlib import Path, PurePosixPath

import nbformat
from mkdocs.exceptions import PluginError
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


VIEW, STATE = (
    re.compile(rf'<script type="application/vnd.jupyter.widget-{kind}\+json">(.*?)</script>', re.S)
    for kind in ("view", "state")
)


def widgets_missing(output: str) -> list[str]:
    """What keeps a page's widgets from being drawn: views whose model's state is not in the page,
    or no require.js. Empty when every widget can be drawn (or there are none)."""
    views = [json.loads(html.unescape(v))["model_id"] for v in VIEW.findall(output)]
    if not views:
        return []
    states = STATE.findall(output)
    kept = json.loads(html.unescape(states[0]))["state"] if states else {}
    missing = [f"no state kept for widget {m}" for m in views if m not in kept]
    if not re.search(r'<script src="[^"]*require[^"]*\.js"', output):
        missing.append("no require.js script (mkdocs-jupyter's include_requirejs)")
    return missing


def on_post_page(output, page, config):
    missing = widgets_missing(output) if page.file.src_uri.endswith(".ipynb") else []
    if missing:
        raise PluginError(
            f"{page.file.src_uri}: its panels would be blank: {'; '.join(missing)}. "
            "Keep widget state when executing (mkdocs-jupyter does) and include_requirejs: true."
        )
    return output


def on_post_build(config, **kwargs) -> None:
    os.environ.pop("NBWORKERS_DB", None)
    if _folder is not None:
        _folder.cleanup()
