"""What a person sees in JupyterLab: the quickstart and a small notebook of checks, run in
headless Chromium driven by Playwright, clicking the panels' real buttons.

Needs /usr/bin/chromium (Debian's ``chromium`` package; ``NBWORKERS_CHROMIUM`` names another)
and ``playwright`` from PyPI; Playwright never downloads a browser here. Without them these tests
skip, except in CI (``CI`` set), where they fail. Screenshots of the panels and the dashboard are
retaken on every run, into docs/screenshots, the files the README and the documentation show
(``NBWORKERS_SCREENSHOTS`` names another folder)."""

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
PIPELINE = QUICKSTART.with_name("pipeline.ipynb")
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
    "%%worker fetch --rate 2/h --concurrency 3\nimport time\n\nfor _ in range(900):\n"
    "    time.sleep(0.1)",
    'for p in (0, 5, 1, 5):\n    emit(p, "fetch", priority=p)',
    "%%worker load --batch 50 --paused\nlen(event)",
    # the view: times ticking in the browser, progress bars, the timeline, a busy page
    "%%worker held --paused\nevent",
    'emit(1, "held")',
    "%%worker steps\nimport time\n\nfor i in range(60):\n    message.progress(i + 1, 60, "
    'note="steps")\n    time.sleep(0.1)',
    "%%worker rows\nimport time\nfrom tqdm import tqdm\n\nfor _ in tqdm(range(60), "
    'desc="rows", mininterval=0):\n    time.sleep(0.1)',
    'emit(0, "steps")\nemit(0, "rows")',
    "%%worker par --concurrency 3\nimport time\n\ntime.sleep(0.3)\nevent",
    "for i in range(6):\n    emit(i, 'par')",
    "%%worker flow --concurrency 4\nimport time\n\ntime.sleep(0.001)",
    "import nbworkers as nw\n\nnw.emit_many(range(20000), 'flow')",
]
EMIT_STEPS = 14  # the index of the cell that emits to steps and rows


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
    shutil.copy(PIPELINE, notebooks / PIPELINE.name)
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
def shots() -> Path:
    folder = os.environ.get("NBWORKERS_SCREENSHOTS")
    path = Path(folder) if folder else Path(__file__).parents[2] / "docs" / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    print(f"screenshots in {path}")
    return path


class Notebook:
    """One notebook open in its own page, with what it showed that a person would notice."""

    def __init__(self, browser, lab, name: str):
        self.app = lab.app  # "jupyterlab", or "notebook" (Notebook 7)
        self.lab = lab
        self.context = browser.new_context(viewport={"width": 1100, "height": 900})
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", self._on_dialog)
        self.page.on("pageerror", lambda exc: self.errors.append(f"{exc}\n{exc.stack}"))
        self.page.goto(lab.notebook_url(name))

    def _on_dialog(self, dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def wait_for_kernel(self, display_name: str) -> None:
        from playwright.sync_api import expect

        if self.app == "notebook":
            expect(self.page.locator(".jp-KernelName")).to_have_text(display_name)
            self.lab.wait_kernel_idle()  # Notebook 7 shows no execution state to wait on
            return
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
        if self.app == "notebook":
            return  # every cell has run (Notebook 7 has no execution indicator)
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


def select(row) -> None:
    """Click a row of a traces table and see it selected. Once in CI, on a loaded machine, a
    click in Notebook 7 did not select (not reproduced here in 50 runs under load; the likely
    cause is a layout shift between mouse-down and mouse-up, which makes no click). A person
    clicks again; so does this, and prints that it did."""
    from playwright.sync_api import expect

    for attempt in range(3):
        row.click()
        try:
            expect(row).to_have_class(re.compile(r"\bnbw-selected\b"), timeout=5_000)
            return
        except AssertionError:
            print(f"click {attempt + 1} on {row} did not select it; clicking again")
    expect(row).to_have_class(re.compile(r"\bnbw-selected\b"))


@pytest.fixture(scope="module")
def checks(browser, lab):
    """checks.ipynb, opened and run top to bottom once for the tests below."""
    nb = Notebook(browser, lab, "checks.ipynb")
    nb.wait_for_kernel("Python 3 (nbworkers)")
    nb.run_all()
    yield nb
    nb.close()


def quickstart_panel(nb):
    """The quickstart run top to bottom: its wordcount panel, every message done, and the
    first row of its traces table clicked."""
    from playwright.sync_api import expect

    nb.wait_for_kernel("Python 3 (nbworkers)")
    nb.run_all()
    assert nb.error_outputs() == []
    panel = nb.panel("wordcount")
    status = panel.locator(".nbw-status")
    expect(status).to_contain_text("▶ running")
    # Every emitted message is done, and the panel says so: 20, one failure, then 5
    expect(status).to_have_text(count("done", 25))
    expect(status).to_have_text(count("queued", 0))
    # Clicking a trace in the table shows its input
    traces = panel.locator(".nbw-traces tr.nbw-row")
    expect(traces).to_have_count(10)
    select(traces.first)
    view = panel.locator(".nbw-trace-view")
    expect(view).to_contain_text("input")
    expect(view).to_contain_text("{'text': '")
    return panel


def test_quickstart_shows_live_panels_a_trace_and_the_dashboard(browser, lab, shots):
    from playwright.sync_api import expect

    nb = Notebook(browser, lab, QUICKSTART.name)
    try:
        panel = quickstart_panel(nb)
        expect(panel.locator(".nbw-status")).to_have_text(count("failed", 1))
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


@pytest.fixture(scope="module")
def notebook7(tmp_path_factory, lab):
    """Notebook 7 serving a copy of the quickstart (``lab`` checked what both need): a folder
    of its own, so that its kernel opens its own queue file beside it."""
    root = tmp_path_factory.mktemp("notebook7")
    notebooks = root / "notebooks"
    notebooks.mkdir()
    shutil.copy(QUICKSTART, notebooks / QUICKSTART.name)
    server = start_lab(root, notebooks, app="notebook")
    yield server
    server.stop()


def test_the_quickstart_in_notebook_7(browser, notebook7, shots):
    from playwright.sync_api import expect

    nb = Notebook(browser, notebook7, QUICKSTART.name)
    try:
        panel = quickstart_panel(nb)
        status = panel.locator(".nbw-status")
        # The pipeline and a button that acts: Pause, then Play
        expect(nb.page.locator(".nbw-dashboard .nbw-graph .nbw-node")).not_to_have_count(0)
        button = panel.locator(".nbw-pause")
        button.click()
        expect(status).to_contain_text("❚❚ paused")
        button.click()
        expect(status).to_contain_text("▶ running")
        panel.screenshot(path=shots / "notebook7-panel.png")
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
    expect(panel.locator(".nbw-traces tr.nbw-row")).to_have_count(3)
    button.click()
    expect(button).to_have_text("Pause")
    expect(status).to_contain_text("▶ running")
    expect(status).to_have_text(count("done", 6))
    expect(status).to_have_text(count("queued", 0))
    expect(panel.locator(".nbw-traces tr.nbw-row")).to_have_count(6)


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
    expect(panel.locator(".nbw-traces tr.nbw-row")).to_have_count(2)
    select(panel.locator(".nbw-traces tr.nbw-row").first)
    expect(panel.locator(".nbw-trace-view")).to_contain_text("(no input: a cron run)")
    panel.screenshot(path=shots / "cron-panel.png")


def test_html_in_an_event_a_result_an_output_and_a_traceback_shows_as_text(checks, shots):
    from playwright.sync_api import expect

    panel = checks.panel("echo")
    traces = panel.locator(".nbw-traces tr.nbw-row")
    expect(traces).to_have_count(1)
    expect(traces.locator(".nbw-input")).to_have_text(f"'{XSS}'")
    traces.first.press("Enter")  # a row is chosen with the keyboard too
    view = panel.locator(".nbw-trace-view")
    expect(view).to_contain_text(f"'{XSS}'")  # the input, as its repr
    expect(view).to_contain_text(f"'{XSS}{RESULT}'")  # the result
    expect(view).to_contain_text(f"printed{XSS}")
    # Send again, clicked: the same input runs again as a new message, a new row
    panel.locator(".nbw-replay").click()
    expect(traces).to_have_count(2)
    expect(traces.nth(0).locator(".nbw-input")).to_have_text(f"'{XSS}'")
    expect(panel.locator(".nbw-status")).to_have_text(count("done", 2))
    # Live values of it: the values beside the lines, as text too
    panel.locator(".nbw-live-values").click()
    live = panel.locator(".nbw-live-view")
    expect(live.locator(".nbw-live-line")).to_have_count(2)
    expect(live.locator(".nbw-live-line").nth(0)).to_contain_text(f"» {XSS}")
    expect(live.locator(".nbw-live-line").nth(1)).to_contain_text(f"'{XSS}{RESULT}'")
    failed = checks.panel("hostile")
    expect(failed.locator(".nbw-status")).to_contain_text(f"latest error: RuntimeError: {XSS}")
    traces = failed.locator(".nbw-traces tr.nbw-row")
    expect(traces).to_have_count(1)
    select(traces.first)
    expect(failed.locator(".nbw-trace-view")).to_contain_text(f"RuntimeError: {XSS}")
    # its dead letter's group, by cause: the title as text, with Requeue and Discard
    group = failed.locator(".nbw-failure")
    expect(group).to_have_count(1)
    expect(group).to_contain_text(f"1 \u00d7 RuntimeError: {XSS} at line 1")
    expect(group.locator("button")).to_have_text(["Requeue", "Discard"])
    expect(group.locator("button").first).to_have_attribute("title", re.compile("nw.requeue"))
    failed.screenshot(path=shots / "failure-groups.png")
    assert checks.page.locator("img[src='x'], #result").count() == 0
    assert checks.dialogs == []


def test_the_dashboard_lists_an_unknown_worker_under_unhandled(checks):
    from playwright.sync_api import expect

    dashboard = checks.page.locator(".nbw-dashboard")
    expect(dashboard.locator(".nbw-panel .nbw-status b")).to_have_text(
        ["slow", "tick", "echo", "hostile", "fetch", "load", "held", "steps", "rows", "par", "flow"]
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
    expect(status).to_contain_text("rate 2/h")
    expect(status).to_contain_text("rate limit 2/h: waiting for it, the next run may start in")
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


def test_relative_times_tick_in_the_browser(checks):
    from playwright.sync_api import expect

    # A paused worker with a message: nothing changes in the kernel, the page still ticks
    times = checks.panel("held").locator(".nbw-times")
    expect(times).to_have_text(re.compile(r"^oldest queued \d+ s ago$"))
    first = times.text_content()
    expect(times).not_to_have_text(first)  # a second later, computed in the browser
    expect(times).to_have_text(re.compile(r"^oldest queued \d+ s ago$"))


def bar_width(bar) -> float:
    return float(bar.evaluate("el => parseFloat(el.style.width) || 0"))


def test_progress_bars_move_for_message_progress_and_tqdm(checks, shots):
    from playwright.sync_api import expect

    # Both runs take 6 s: each bar is seen, then seen to grow (both read first, so that a
    # slow page does not see the second run only once it ended). The runs of Run All (the
    # cell ran there too) end first: one run line each.
    fills = {}
    for name in ("steps", "rows"):
        fills[name] = checks.panel(name).locator(".nbw-run .nbw-progress-bar .nbw-bar-fill")
        expect(fills[name]).to_have_count(0)
    checks.run_cell(EMIT_STEPS)
    for name in ("steps", "rows"):
        panel = checks.panel(name)
        expect(fills[name]).to_have_count(1)
        expect(panel.locator(".nbw-run .nbw-progress-text")).to_contain_text(name)
    before = {name: bar_width(fill) for name, fill in fills.items()}
    for name, fill in fills.items():
        assert before[name] < 100, f"{name}'s run was seen only at its end"
        checks.page.wait_for_function(
            "([el, before]) => parseFloat(el.style.width) > before",
            arg=[fill.element_handle(), before[name]],
        )
    checks.panel("steps").screenshot(path=shots / "progress.png")
    # Once ended, the trace keeps its progress (Run All's run, or this one if it ended too)
    panel = checks.panel("steps")
    row = panel.locator(".nbw-traces tr.nbw-row")
    expect(row).not_to_have_count(0)
    select(row.first)
    expect(panel.locator(".nbw-trace-view .nbw-progress-text")).to_have_text(
        "60 of 60 (100 %) · steps"
    )


def test_the_traces_table_colours_an_error_row(checks):
    from playwright.sync_api import expect

    row = checks.panel("hostile").locator(".nbw-traces tr.nbw-row").first
    expect(row).to_have_class(re.compile(r"\bnbw-row-error\b"))
    expect(row.locator(".nbw-outcome")).to_have_text("ERROR")
    ok = checks.panel("echo").locator(".nbw-traces tr.nbw-row .nbw-outcome").first
    error_colour = row.locator(".nbw-outcome").evaluate("el => getComputedStyle(el).color")
    ok_colour = ok.evaluate("el => getComputedStyle(el).color")
    assert error_colour != ok_colour
    red, green, blue = map(int, re.findall(r"\d+", error_colour)[:3])
    assert red > 2 * green and red > 2 * blue, error_colour
    took = row.locator("td.nbw-num").first
    assert took.evaluate("el => getComputedStyle(el).textAlign") == "right"
    expect(took).to_have_text(re.compile(r"^\d+(\.\d+)? (µs|ms|s)$"))


def test_the_timeline_shows_parallel_lanes(checks, shots):
    from playwright.sync_api import expect

    panel = checks.panel("par")
    expect(panel.locator(".nbw-traces tr.nbw-row")).to_have_count(6)
    bars = panel.locator(".nbw-timeline rect.nbw-tl-ok")
    expect(bars).to_have_count(6)
    lanes = {bars.nth(i).get_attribute("data-lane") for i in range(6)}
    assert lanes == {"0", "1", "2"}
    expect(panel.locator(".nbw-timeline-lanes")).to_have_text("3 lanes: at most 3 at once")
    panel.locator(".nbw-timeline").screenshot(path=shots / "timeline.png")


def test_pause_answers_while_20000_messages_flow(checks):
    # (the bound is a loaded machine's, not the half second it takes here: a test that times
    # the answer to the half second would fail on a stall of CI's machine)
    from playwright.sync_api import expect

    panel = checks.panel("flow")
    status = panel.locator(".nbw-status")
    expect(status).to_have_text(count("done", 20000))  # the first 20,000, from Run All
    checks.run_cell(len(CHECKS) - 1)  # 20,000 more: they flow while every panel updates
    expect(status).not_to_have_text(count("done", 20000))
    # the drain bar says how fast and when it will be empty
    expect(panel.locator(".nbw-drain-text")).to_have_text(
        re.compile(r"^[\d,]+ left · [\d.,]+ msg/s · empty in ~\d+ (s|min)$")
    )
    button = panel.locator(".nbw-pause")
    button.click()
    expect(button).to_have_text("Play", timeout=3000)
    expect(status).to_contain_text("❚❚ paused", timeout=3000)
    button.click()
    expect(status).to_have_text(count("done", 40000))


def luminance(css_colour: str) -> float:
    red, green, blue = (int(v) for v in re.findall(r"\d+", css_colour)[:3])
    return (0.2126 * red + 0.7152 * green + 0.0722 * blue) / 255


def test_the_dark_theme_shows_the_panels_in_its_colours(checks, shots):
    from playwright.sync_api import expect

    page = checks.page

    def choose_theme(name: str) -> None:
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Settings$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Theme$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(rf"^{name}$")).click()

    panel = checks.panel("echo")
    select(panel.locator(".nbw-traces tr.nbw-row").first)
    block = panel.locator(".nbw-block pre").first
    expect(block).to_be_visible()
    assert luminance(panel.locator(".nbw-view").evaluate("e => getComputedStyle(e).color")) < 0.3
    choose_theme("JupyterLab Dark")
    try:
        expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "false")
        # Light text on dark blocks: the panel follows JupyterLab's own colours
        page.wait_for_function(
            "el => getComputedStyle(el).color.match(/\\d+/g).slice(0, 3).every(v => +v > 150)",
            arg=panel.locator(".nbw-view").element_handle(),
        )
        text = panel.locator(".nbw-view").evaluate("e => getComputedStyle(e).color")
        ground = block.evaluate("e => getComputedStyle(e).backgroundColor")
        assert luminance(text) > 0.6 and luminance(ground) < 0.3, (text, ground)
        panel.screenshot(path=shots / "dark-theme.png")
    finally:
        choose_theme("JupyterLab Light")
        expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "true")


def test_the_dashboard_draws_the_pipeline_with_its_edges_counted(browser, lab, shots):
    from playwright.sync_api import expect

    nb = Notebook(browser, lab, PIPELINE.name)
    try:
        nb.wait_for_kernel("Python 3 (nbworkers)")
        nb.run_all()
        assert nb.error_outputs() == []
        graph = nb.page.locator(".nbw-dashboard .nbw-graph")
        for name in ("fetch", "words", "catalog", "tally"):
            expect(graph.locator(f'.nbw-node[data-name="{name}"]')).to_have_count(1)
        # fetch's runs emitted to words and catalog, words' fan-in to tally: counted edges
        for source, target in (("fetch", "words"), ("fetch", "catalog"), ("words", "tally")):
            edge = graph.locator(f'.nbw-edge[data-from="{source}"][data-to="{target}"]')
            expect(edge).to_have_count(1)
            expect(edge.locator("title")).to_have_text(
                re.compile(rf"^{source} → {target}: [\d,]+ messages? emitted by its runs$")
            )
        # (the view's own element: the graph inside is drawn again as counts change)
        pipeline = nb.page.locator(".nbw-dashboard .nbw-pipeline")
        pipeline.scroll_into_view_if_needed()
        pipeline.screenshot(path=shots / "pipeline.png")
        assert nb.dialogs == []
    finally:
        nb.close()


def test_the_dashboard_opens_in_the_side_area(checks, shots):
    from playwright.sync_api import expect

    cell = checks.cell(6)  # %nbworkers: run again, with --side
    editor = cell.locator(".cm-content")
    editor.click()
    checks.page.keyboard.press("Control+a")
    checks.page.keyboard.type('emit({"to": "ada"}, "nobody-yet")\n%nbworkers --side')
    checks.run_cell(6)
    side = checks.page.locator("#jp-right-stack .nbw-dashboard")
    expect(side).to_have_count(1)
    expect(side.locator(".nbw-graph .nbw-node")).not_to_have_count(0)
    expect(side.locator(".nbw-unhandled")).to_contain_text("nobody-yet")
    assert checks.error_outputs() == []


def test_the_views_pure_functions_in_the_browser(checks):
    """The module's exported functions, run in Chromium as the panels run them."""
    from nbworkers.widgets.view import ESM

    results = checks.page.evaluate(
        """async (source) => {
            const url = "data:text/javascript;base64,"
                + btoa(String.fromCharCode(...new TextEncoder().encode(source)));
            const m = await import(url);
            return {
                durations: [0.0000123, 0.000999, 0.0009996, 0.0123, 0.99999, 2.5, 119.99, 600]
                    .map(m.duration),
                ago: [59.4, 60, 3 * 86400].map(m.ago),
                relative: [m.relative(100, 40), m.relative(40, 100), m.relative(100, 99.8)],
                lanes: m.lanes([{start: 0, end: 2}, {start: 1, end: 3}, {start: 2, end: 4},
                                {start: 2.5, end: 5}]).placed.map((r) => r.lane),
                drained: m.drain([[0, 10, 0, 0, 0], [5, 5, 2, 3, 0], [10, 0, 0, 10, 0]]),
                draining: m.drain([[0, 0, 0, 5, 0], [5, 5, 2, 8, 0], [10, 3, 1, 12, 0]]),
                rate: m.recentRate([[0, 0, 0, 0, 0], [0.2, 0, 0, 0, 1]], 4),
                layers: m.layers(["a", "b", "c", "d"], [{from: "a", to: "b"},
                    {from: "b", to: "c"}, {from: "c", to: "a"}, {from: "d", to: "d"}]),
                num: m.num(1234567),
            };
        }""",
        ESM,
    )
    assert results["durations"] == [
        "12 µs",
        "999 µs",
        "1.00 ms",
        "12.3 ms",
        "1.00 s",
        "2.50 s",
        "2 min",
        "10 min",
    ]
    assert results["ago"] == ["59 s", "1 min", "3 d"]
    assert results["relative"] == ["in 1 min", "1 min ago", "now"]
    assert results["lanes"] == [0, 1, 0, 2]  # a run takes the first lane free when it starts
    # a backlog drained: the bar full; draining: the share done since the queue was empty
    assert results["drained"] == {"rate": 1, "left": 0, "fraction": 1}
    assert results["draining"]["left"] == 4 and results["draining"]["rate"] == 0.7
    assert abs(results["draining"]["fraction"] - 7 / 11) < 1e-9
    assert results["rate"] == 1  # one failure in 0.2 s is not 5 a second
    assert results["layers"] == {"a": 0, "b": 1, "c": 2, "d": 0}  # a cycle stops, no loop
    assert results["num"] == "1,234,567"
