"""The panel's failure groups: the biggest groups of dead letters by cause, with a Requeue and
a Discard button each, driven as a front end drives them in a real kernel."""

from __future__ import annotations

import re

from tests.kernel import click, wait_for

RAISE = "if isinstance(event, int):\n    raise ValueError(f'negative {event}')\n"
CELL = "%%worker w\n" + RAISE + "event['text']"


def test_the_panel_shows_each_group_with_its_count(kernel):
    kernel.ok(CELL)
    kernel.ok("from nbworkers.widgets import panels\np = panels('w')[0]")
    kernel.ok("nw.emit_many([{}] * 1200 + [-1, -2], 'w')\nnw.wait('w', timeout=60)")
    wait_for(kernel, "p.failure_groups.rows[1].layout.display is None")
    first = kernel.eval("p.failure_groups.rows[0].label.value")
    second = kernel.eval("p.failure_groups.rows[1].label.value")
    assert "1,200</b> \u00d7 KeyError: &#x27;text&#x27; at line 3" in first
    # (its title is the first failure's: -1 or -2, whichever run thread failed first)
    assert re.search(r"2</b> \u00d7 ValueError: negative -[12] at line 2", second)
    assert kernel.eval("p.failure_groups.rows[2].layout.display") == "none"
    assert kernel.eval("p.failure_groups.rows[0].fingerprint") == kernel.eval(
        "nw.failures('w')[0].fingerprint"
    )


def test_requeue_one_group_after_the_fix_and_discard_another_from_the_panel(kernel):
    kernel.ok(CELL)
    kernel.ok("from nbworkers.widgets import panels\np = panels('w')[0]")
    kernel.ok("nw.emit_many([{}] * 3 + [-1, -2], 'w')\nnw.wait('w', timeout=60)")
    wait_for(kernel, "p.failure_groups.rows[1].layout.display is None")
    # When the cell is fixed for the KeyError and that group's Requeue is clicked
    kernel.ok("%%worker w\n" + RAISE + "event")
    kernel.ok("p = next(q for q in panels('w') if q is not p)")  # the new cell's panel
    # (clicked once it shows the drained counts, as a user clicks what they see: the panel
    # follows within 0.4 s, later on a loaded machine)
    wait_for(kernel, "'<b>3</b> \u00d7 KeyError' in p.failure_groups.rows[0].label.value")
    wait_for(kernel, "p.failure_groups.rows[1].layout.display is None")
    click(kernel, "p.failure_groups.rows[0].requeue_button")
    # Then its three dead letters ran; the ValueError group is left, now the only row
    wait_for(kernel, "nw.counts('w')['done'] == 3")
    wait_for(kernel, "p.failure_groups.rows[1].layout.display == 'none'")
    assert "ValueError" in kernel.eval("p.failure_groups.rows[0].label.value")
    # And its Discard drops the rest
    click(kernel, "p.failure_groups.rows[0].discard_button")
    wait_for(kernel, "nw.counts('w')['dead'] == 0 and nw.failures('w') == []")
    wait_for(kernel, "p.failure_groups.rows[0].layout.display == 'none'")
    assert kernel.eval("p.notice.value") == ""
