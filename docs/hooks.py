"""MkDocs hooks (mkdocs.yml, ``hooks``): the notebooks are executed for the site, each keeping its
queues in a database of its own, named after it, in a fresh folder each build; never in
``notebooks/.nbworkers`` beside a reader's own runs. The pages show what a first run shows.

mkdocs-jupyter executes a notebook as its page is rendered: ``NBWORKERS_DB`` is set just before
(``on_pre_page``). delivery.ipynb kills its own kernel halfway, which mkdocs-jupyter cannot
execute (it is in ``execute_ignore``): it is executed here first, as the tests run it (the cells
after the kill on a new kernel, ``tests/notebook_runner.py``), and its page made from that copy.

The panels are widgets: the pages keep each one's state as the run left it, drawn in the reader's
browser by ipywidgets' HTML manager and anywidget, which load with require.js from their CDNs
(``include_requirejs``). The build fails where a panel would not be drawn: an executed notebook
showing a widget whose state it did not keep (nbconvert would put its plain text in its place),
or a page with widgets and no require.js.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path, PurePosixPath

import nbformat
from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File
from nbconvert.preprocessors import ExecutePreprocessor

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
try:
    from tests.notebook_runner import WIDGET_VIEW, run, views_without_state
finally:
    sys.path.remove(str(ROOT))

KILLS = ("notebooks/delivery.ipynb",)  # executed here, with its kernel killed and restarted
# Under ``mkdocs serve``, an executed copy is kept here and used again on each rebuild while
# neither the notebook nor the code it runs changed (a build always executes it afresh).
SERVE_CACHE = ROOT / ".cache" / "nbworkers-docs"
_folder: tempfile.TemporaryDirectory | None = None
_serving = False


def on_startup(command, dirty, **kwargs) -> None:
    global _serving
    _serving = command == "serve"


def on_config(config):
    _check_executed_notebooks()
    return config


def on_pre_build(config, **kwargs) -> None:
    global _folder
    _folder = tempfile.TemporaryDirectory(prefix="nbworkers-docs-")


def _drawn(nb, name: str) -> None:
    """PluginError if an executed notebook shows a widget whose state it did not keep."""
    missing = views_without_state(nb)
    if missing:
        raise PluginError(
            f"{name}: {len(missing)} of its panels would show as plain text in its page: their "
            f"widget state was not kept ({', '.join(missing[:3])}...). Execute it keeping widget "
            "state (nbclient's store_widget_state, as mkdocs-jupyter and the runner do)."
        )


def _check_executed_notebooks() -> None:
    """mkdocs-jupyter executes and converts a notebook in one call: its execution (nbconvert's
    ExecutePreprocessor) is wrapped, once, to check the notebook it executed."""
    preprocess = ExecutePreprocessor.preprocess
    if getattr(preprocess, "_nbworkers_checks", False):
        return

    def checked(self, nb, resources=None, km=None):
        nb, resources = preprocess(self, nb, resources, km)
        _drawn(nb, (resources or {}).get("metadata", {}).get("name", "a notebook"))
        return nb, resources

    checked._nbworkers_checks = True
    ExecutePreprocessor.preprocess = checked


def _code_key(source: bytes) -> str:
    """What an executed notebook depends on: its text, nbworkers' code (the panels' JavaScript
    included) and the runner's."""
    digest = hashlib.sha256(source)
    for path in [*sorted((ROOT / "nbworkers").rglob("*")), ROOT / "tests" / "notebook_runner.py"]:
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@event_priority(50)  # before mkdocs-jupyter makes the notebooks pages: this one too
def on_files(files, config):
    for uri in KILLS:
        page = files.get_file_from_path(uri)
        folder = Path(_folder.name) / PurePosixPath(uri).stem
        (folder / "notebooks").mkdir(parents=True)
        source = Path(page.abs_src_path).read_bytes()
        cached = SERVE_CACHE / f"{_code_key(source)}.ipynb"
        if _serving and cached.exists():
            shutil.copyfile(cached, folder / uri)
        else:
            nb = nbformat.reads(source.decode("utf-8"), as_version=4)
            os.environ["NBWORKERS_DB"] = str(folder / f"{PurePosixPath(uri).stem}.duckdb")
            run(nb, nb.metadata.kernelspec.name, folder / "notebooks")
            _drawn(nb, uri)
            nbformat.write(nb, folder / uri)
            if _serving:
                SERVE_CACHE.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(folder / uri, cached)
        files.remove(page)
        files.append(File(uri, str(folder), config.site_dir, config.use_directory_urls))
    return files


def on_pre_page(page, config, files):
    if _folder is not None and page.file.src_uri.endswith(".ipynb"):
        stem = PurePosixPath(page.file.src_uri).stem
        os.environ["NBWORKERS_DB"] = os.path.join(_folder.name, f"{stem}.duckdb")
    return page


_REQUIRE_JS = re.compile(r'<script src="[^"]*require[^"]*\.js"')


def on_post_page(output, page, config):
    if WIDGET_VIEW in output and not _REQUIRE_JS.search(output):
        raise PluginError(
            f"{page.file.src_uri}: its panels would be blank: the page has no require.js to load "
            "ipywidgets' HTML manager with (mkdocs-jupyter's include_requirejs: true)."
        )
    return output


def on_post_build(config, **kwargs) -> None:
    os.environ.pop("NBWORKERS_DB", None)
    if _folder is not None:
        _folder.cleanup()
