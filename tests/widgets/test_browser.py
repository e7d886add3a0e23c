"""What a person sees in JupyterLab: the quickstart and a small notebook of checks, run in
headless Chromium driven by Playwright, clicking the panels' real buttons.

Needs /usr/bin/chromium (Debian's ``chromium`` package; ``NBWORKERS_CHROMIUM`` names another)
and ``playwright`` from PyPI; Playwright never downloads a browser here. Without them these tests
skip, except in CI (``CI`` set), where they fail. Screenshots of the panels and the dashboard go
to ``NBWORKERS_SCREENSHOTS`` (default: a temporary folder, printed)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from tests.widgets.lab import start_lab

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("NBWORKERS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
QUICKSTART = Path(__file__).parents[2] / "notebooks" / "quickstart.ipynb"
XSS = "<img src=x onerror=alert(1)>"
RESULT = "<i id=result>result</i>"  # markup a run returns
TIMEOUT_MS = 90_000  # a shared 2-core machine: generous, and only ever reached on failure

# The notebook of checks, in the "Python 3 (nbworkers)" kernel: no %load_ext
CHECKS = [
    "%%worker slow --concurrency 1\nimport time\n\ntime.sleep(0.05)\nevent",
    'for i in range(3):\n    emit(i, "slow")',
    '%%cron hourly tick\n"tick"',
    "%%worker echo\nprint(event)\nevent + RESULT",
    "%%worker hostile\nraise RuntimeError(event)",
    f"RESULT = {RESULT!r}\nemit({XSS!r}, 'echo')\nemit({XSS!r}, 'hostile')",
    'emit({"to": "ada"}, "nobody-yet")\n%nbworkers',
    # flow control: a rate limit, priorities, runs to stop (each sleep is a point a stop
    # lands at) and batches
    "%%worker fetch --rate 2/m --concurrency 3\nimport time\n\nfor _ in range(900):\n"
    "    time.sleep(0.1)",
    'for p in (0, 5, 1, 5):\n    emit(p, "fetch", priority=p)',
    "%%worker load --batch 50 --paused\nlen(event)",
]


def _missing() -> str | None:
    for module in ("playwright", "jupyterlab"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed: pip install -e '.[test]'"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM}: apt-get install chromium (or set NBWORKERS_CHROMIUM)"
    return None


def count(label: str, n: int) -> re.Pattern:
    """A panel's count, e.g. ``queued 3`` (counts are written with thousands separators)."""
    return re.compile(rf"{label} {n:,}(?![\d,])")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    missing = _missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests must run in CI: {missing}")
        pytest.skip(missing)
    root = tmp_path_factory.mktemp("lab")
    notebooks = root / "notebooks"
    notebooks.mkdir()
    shutil.copy(QUICKSTART, notebooks / QUICKSTART.name)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in CHECKS])
    nb.metadata["kernelspec"] = {
        "name": "nbworkers",
        "display_name": "Python 3 (nbworkers)",
        "language": "python",
    }
    nbformat.write(nb, notebooks / "checks.ipynb")
    server = start_lab(root, notebooks)
    yield server
    server.stop()
    assert server.process.returncode is not None


@pytest.fixture(scope="module")
def browser(lab):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = os.environ.get("NBWORKERS_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    print(f"screenshots in {path}")
    return path


class Notebook:
    """One notebook open in its own page, with what it showed that a person would notice."""

    def __init__(self, browser, lab, name: str):
        self.context = browser.new_context(viewport={"width": 1100, "height": 900})
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", self._on_dialog)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.goto(lab.notebook_url(name))

    def _on_dialog(self, dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def wait_for_kernel(self, display_name: str) -> None:
        from playwright.sync_api import expect

        expect(self.page.locator(".jp-Toolbar-kernelName")).to_have_text(display_name)
        expect(self.page.locator(".jp-Notebook-ExecutionIndicator")).to_have_attribute(
            "data-status", "idle"
        )
        assert self.page.locator(".jp-Dialog").count() == 0, "JupyterLab opened a dialog"

    def run_all(self) -> None:
        """Run > Run All Cells, then wait until every code cell has its execution count."""
        from playwright.sync_api import expect

        self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        label = self.page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$"))
        self.page.locator(".lm-Menu-item").filter(has=label).click()
        # A check cell whose input is hidden shows a placeholder prompt that never gets its
        # count: wait on the visible cells' prompts, then for the kernel to be idle.
        self.page.wait_for_function(
            """() => {
                const prompts = [...document.querySelectorAll(
                    '.jp-CodeCell .jp-InputPrompt:not(.jp-Placeholder-prompt)')];
                return prompts.length > 0
                    && prompts.every(p => /^\\[\\d+\\]:$/.test(p.textContent.trim()));
            }"""
        )
        expect(self.page.locator(".jp-Notebook-ExecutionIndicator")).to_have_attribute(
            "data-status", "idle"
        )

    def cell(self, index: int):
        return self.page.locator(".jp-Notebook .jp-Cell").nth(index)

    def run_cell(self, index: int) -> None:
        """Select cell ``index`` and press Ctrl+Enter, as a person would; wait until it ran."""
        prompt = self.cell(index).locator(".jp-InputPrompt")
        before = prompt.text_content().strip()
        prompt.click()
        self.page.keyboard.press("Control+Enter")
        self.page.wait_for_function(
            """([el, before]) => /^\\[\\d+\\]:$/.test(el.textContent.trim())
                && el.textContent.trim() !== before""",
            arg=[prompt.element_handle(), before],
        )

    def panel(self, name: str):
        """The panel of ``name`` under its (first) cell; the dashboard's panels come later."""
        title = self.page.locator(".nbw-status b").filter(
            has_text=re.compile(rf"^{re.escape(name)}$")
        )
        return self.page.locator(".jp-Cell .nbw-panel").filter(has=title).first

    def error_outputs(self) -> list[str]:
        shown = self.page.locator('.jp-OutputArea-output[data-mime-type*="stderr"]')
        return [shown.nth(i).inner_text() for i in range(shown.count())]

    def close(self) -> None:
        if self.errors:
            print("errors in the page:", *self.errors, sep="\n")
        self.context.close()


@pytest.fixture(scope="module")
def checks(browser, lab):
    """checks.ipynb, opened and run top to bottom once for the tests below."""
    nb = Notebook(browser, lab, "checks.ipynb")
    nb.wait_for_kernel("Python 3 (nbworkers)")
    nb.run_all()
    yield nb
    nb.close()


def test_quickstart_shows_live_panels_a_trace_and_the_dashboard(browser, lab, shots):
    from playwright.sync_api import expect

    nb = Notebook(browser, lab, QUICKSTART.name)
    try:
        nb.wait_for_kernel("Python 3 (ipykernel)")
        nb.run_all()
        assert nb.error_outputs() == []
        panel = nb.panel("wordcount")
        status = panel.locator(".nbw-status")
        expect(status).to_contain_text("▶ running")
        # Every emitted message is done, and the panel says so: 20, one failure, then 5
        expect(status).to_have_text(count("done", 25))
        expect(status).to_have_text(count("failed", 1))
        expect(status).to_have_text(count("queued", 0))
        # Clicking a trace in the list shows its input
        traces = panel.locator(".nbw-traces select")
        expect(traces.locator("option")).to_have_count(10)
        traces.select_option(index=0)
        view = panel.locator(".nbw-trace-view")
        expect(view).to_contain_text("input")
        expect(view).to_contain_text("{'text': '")
        expect(panel.locator(".nbw-replay")).to_be_enabled()
        panel.screenshot(path=shots / "worker-panel.png")
        # The dashboard: a panel per worker, and the name nobody handles under Unhandled
        dashboard = nb.page.locator(".nbw-dashboard")
        expect(dashboard.locator(".nbw-panel .nbw-status b")).to_have_text(
            ["wordcount", "send-email"]
        )
        unhandled = dashboard.locator(".nbw-unhandled")
        expect(unhandled).to_contain_text("nobody-yet")
        expect(unhandled).to_contain_text("%%worker nobody-yet")
        dashboard.screenshot(path=shots / "dashboard.png")
        assert nb.dialogs == []
    finally:
        nb.close()


def test_pause_holds_messages_and_play_runs_them(checks):
    from playwright.sync_api import expect

    panel = checks.panel("slow")
    status = panel.locator(".nbw-status")
    button = panel.locator(".nbw-pause")
    expect(status).to_have_text(count("done", 3))
    expect(status).to_have_text(count("queued", 0))
    button.click()
    expect(button).to_have_text("Play")
    expect(status).to_contain_text("❚❚ paused")
    checks.run_cell(1)  # emits 3 more
    expect(status).to_have_text(count("queued", 3))
    expect(status).to_have_text(count("running", 0))
    expect(status).to_have_text(count("done", 3))
    expect(panel.locator(".nbw-traces option")).to_have_count(3)
    button.click()
    expect(button).to_have_text("Pause")
    expect(status).to_contain_text("▶ running")
    expect(status).to_have_text(count("done", 6))
    expect(status).to_have_text(count("queued", 0))
    expect(panel.locator(".nbw-traces option")).to_have_count(6)


def test_a_cron_panel_shows_its_schedule_and_runs_now(checks, shots):
    from playwright.sync_api import expect

    panel = checks.panel("tick")
    status = panel.locator(".nbw-status")
    expect(status).to_contain_text("cron")
    expect(status).to_contain_text("every hour")
    expect(status).to_contain_text("next run in")
    expect(status).to_have_text(count("done", 1))  # an interval cron runs once when defined
    run_now = panel.locator(".nbw-run-now")
    expect(run_now).to_be_visible()
    run_now.click()
    expect(status).to_have_text(count("done", 2))
    expect(panel.locator(".nbw-traces option")).to_have_count(2)
    panel.locator(".nbw-traces select").select_option(index=0)
    expect(panel.locator(".nbw-trace-view")).to_contain_text("(no input: a cron run)")
    panel.screenshot(path=shots / "cron-panel.png")


def test_html_in_an_event_a_result_an_output_and_a_traceback_shows_as_text(checks, shots):
    from playwright.sync_api import expect

    panel = checks.panel("echo")
    traces = panel.locator(".nbw-traces select")
    expect(traces.locator("option")).to_have_count(1)
    traces.select_option(index=0)
    view = panel.locator(".nbw-trace-view")
    expect(view).to_contain_text(f"'{XSS}'")  # the input, as its repr
    expect(view).to_contain_text(f"'{XSS}{RESULT}'")  # the result
    expect(view).to_contain_text(f"printed{XSS}")
    failed = checks.panel("hostile")
    expect(failed.locator(".nbw-status")).to_contain_text(f"latest error: RuntimeError: {XSS}")
    traces = failed.locator(".nbw-traces select")
    expect(traces.locator("option")).to_have_count(1)
    traces.select_option(index=0)
    expect(failed.locator(".nbw-trace-view")).to_contain_text(f"RuntimeError: {XSS}")
    # its dead letter's group, by cause: the title as text, with Requeue and Discard
    group = failed.locator(".nbw-failure:visible")  # (rows for more groups stay hidden)
    expect(group).to_have_count(1)
    expect(group).to_contain_text(f"1 \u00d7 RuntimeError: {XSS} at line 1")
    expect(group.locator("button")).to_have_text(["Requeue", "Discard"])
    failed.screenshot(path=shots / "failure-groups.png")
    assert checks.page.locator("img[src='x'], #result").count() == 0
    assert checks.dialogs == []


def test_the_dashboard_lists_an_unknown_worker_under_unhandled(checks):
    from playwright.sync_api import expect

    dashboard = checks.page.locator(".nbw-dashboard")
    expect(dashboard.locator(".nbw-panel .nbw-status b")).to_have_text(
        ["slow", "tick", "echo", "hostile", "fetch", "load"]
    )
    unhandled = dashboard.locator(".nbw-unhandled")
    expect(unhandled).to_contain_text("Unhandled")
    row = unhandled.locator("tr", has_text="nobody-yet")
    expect(row.locator("td")).to_have_text(
        ["nobody-yet", "1", re.compile(r"^\d+ (s|min) ago$"), "%%worker nobody-yet"]
    )
    assert checks.error_outputs() == []


def test_a_rate_limited_worker_shows_its_rate_priorities_and_stops_a_run(checks, shots):
    from playwright.sync_api import expect

    panel = checks.panel("fetch")
    status = panel.locator(".nbw-status")
    # Two of four start (the rate's burst), the higher priorities first; two wait for a token
    expect(status).to_have_text(count("running", 2))
    expect(status).to_have_text(count("queued", 2))
    expect(status).to_contain_text("rate 2/m")
    expect(status).to_contain_text("waiting for rate limit (2/m)")
    expect(status).to_contain_text("ready by priority (higher first)")
    panel.screenshot(path=shots / "flow-panel.png")
    # Stop: a choice of the two runs going, then the button
    choice = panel.locator(".nbw-stop-choice select")
    expect(choice.locator("option")).to_have_count(2)
    stop = panel.locator(".nbw-stop")
    expect(stop).to_be_visible()
    stop.click()
    expect(status).to_have_text(count("running", 1))
    expect(status).to_have_text(count("dead", 1))
    expect(status).to_contain_text("latest error: Stopped: nw.stop(")
    # A batch worker says its batch size
    expect(checks.panel("load").locator(".nbw-status")).to_contain_text("batches of 50 (wait 1 s)")
    assert checks.dialogs == [] and checks.error_outputs() == []
