"""Live values in real JupyterLab: select a trace in a worker's panel, press "Live values" (from
the keyboard), and see the handler's lines with their values and the branch not taken faded.

Slow (a JupyterLab server and Chromium): marked ``browser`` like tests/test_browser.py, and
skipped the same way without Chromium or Playwright. Saves its screenshot as live-values.png
beside the browser suite's (docs/screenshots, or ``NBWORKERS_SCREENSHOTS``), the one
docs/trace-driven.md shows."""

from __future__ import annotations

import re

import nbformat
import pytest

from tests.widgets.test_browser import Notebook, browser, lab, shots  # noqa: F401 - fixtures

pytestmark = pytest.mark.browser

CELLS = [
    "%%worker orders\n"
    "total = 0\n"
    "for item in event['items']:\n"
    "    total += item['price'] * item['qty']\n"
    "if total > 100:\n"
    "    discount = total * 0.1\n"
    "else:\n"
    "    discount = 0\n"
    "print('order total', total)\n"
    "total - discount",
    "emit({'items': [{'price': 12.5, 'qty': 2}, {'price': 3, 'qty': 5}]}, 'orders')",
]


def test_live_values_show_beside_lines_and_fade_those_not_reached(browser, lab, shots):  # noqa: F811
    from playwright.sync_api import expect

    nb_path = lab.root / "live.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in CELLS])
    nb.metadata["kernelspec"] = {
        "name": "nbworkers",
        "display_name": "Python 3 (nbworkers)",
        "language": "python",
    }
    nbformat.write(nb, nb_path)
    page = Notebook(browser, lab, nb_path.name)
    try:
        page.wait_for_kernel("Python 3 (nbworkers)")
        page.run_all()
        assert page.error_outputs() == []
        panel = page.panel("orders")
        traces = panel.locator(".nbw-traces tr.nbw-row")
        expect(traces).to_have_count(1)
        traces.first.click()
        button = panel.locator(".nbw-live-values")
        expect(button).to_be_enabled()
        expect(button).to_have_attribute("title", re.compile(r"^Run the current code on this"))
        # Reached from the keyboard: focused, then Enter
        button.focus()
        page.page.keyboard.press("Enter")
        view = panel.locator(".nbw-live-view")
        lines = view.locator(".nbw-live-line")
        expect(lines).to_have_count(9)

        def values(n: int):  # the values beside line n + 1
            return lines.nth(n).locator("td").nth(2)

        # A value beside an assignment; the loop's count; the branch not taken, faded
        expect(values(0)).to_have_text("total = 0")
        expect(values(2)).to_contain_text("total = 40.0")
        expect(values(2)).to_contain_text("\u00d72")
        faded = view.locator(".nbw-live-unreached")
        expect(faded).to_have_count(1)
        expect(faded).to_contain_text("discount = total * 0.1")
        expect(faded).to_have_css("opacity", "0.4")
        expect(values(6)).to_have_text("discount = 0")
        expect(values(7)).to_have_text("\u00bb order total 40.0")
        expect(values(8)).to_have_text("\u2192 40.0")
        # The loop's kept runs open from its count
        values(2).locator("summary").click()
        runs = values(2).locator(".nbw-live-run")
        expect(runs).to_have_count(2)
        expect(runs.nth(0)).to_have_text("run 1: total = 25.0")
        panel.locator(".nbw-live-view").screenshot(path=shots / "live-values.png")
        assert page.dialogs == []
    finally:
        page.close()
