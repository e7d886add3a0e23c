"""The panel's failure groups: the biggest groups of dead letters by cause, with a Requeue and
a Discard button each, driven as a front end drives them in a real kernel."""

from __future__ import annotations

import re

from tests.kernel import send_custom, wait_for

RAISE = "if isinstance(event, int):\n    raise ValueError(f'negative {event}')\n"
CELL = "%%worker w\n" + RAISE + "event['text']"
GROUPS = "p.view.header['failures']"  # what the browser view is sent (widgets/state.py)


def test_the_panel_shows_each_group_with_its_count(kernel):
    kernel.ok(CELL)
    kernel.ok("from nbworkers.widgets import panels\np = panels('w')[0]")
    kernel.ok("nw.emit_many([{}] * 1200 + [-1, -2], 'w')\nnw.wait('w', timeout=60)")
    wait_for(kernel, f"len({GROUPS}) == 2")
    first, second = kernel.eval(GROUPS)
    assert (first["count"], first["title"]) == (1200, "KeyError: 'text' at line 3")
    # (its title is the first failure's: -1 or -2, whichever run thread failed first)
    assert second["count"] == 2
    assert re.fullmatch(r"ValueError: negative -[12] at line 2", second["title"])
    assert first["fingerprint"] == kernel.eval("nw.failures('w')[0].fingerprint")


def test_requeue_one_group_after_the_fix_and_discard_another_from_the_panel(kernel):
    kernel.ok(CELL)
    kernel.ok("from nbworkers.widgets import panels\np = panels('w')[0]")
    kernel.ok("nw.emit_many([{}] * 3 + [-1, -2], 'w')\nnw.wait('w', timeout=60)")
    wait_for(kernel, f"len({GROUPS}) == 2")
    # When the cell is fixed for the KeyError and that group's Requeue is clicked
    kernel.ok("%%worker w\n" + RAISE + "event")
    kernel.ok("p = next(q for q in panels('w') if q is not p)")  # the new cell's panel
    # (clicked once it shows the groups, as a user clicks what they see: the panel follows
    # within 0.4 s, later on a loaded machine)
    wait_for(kernel, f"len({GROUPS}) == 2 and {GROUPS}[0]['count'] == 3")
    key_error = kernel.eval(f"{GROUPS}[0]['fingerprint']")
    send_custom(kernel, "p.view", {"action": "requeue-group", "group": key_error})
    # Then its three dead letters ran; the ValueError group is left, now the only row
    wait_for(kernel, "nw.counts('w')['done'] == 3")
    wait_for(kernel, f"len({GROUPS}) == 1")
    assert kernel.eval(f"{GROUPS}[0]['title']").startswith("ValueError")
    # And its Discard drops the rest
    value_error = kernel.eval(f"{GROUPS}[0]['fingerprint']")
    send_custom(kernel, "p.view", {"action": "discard-group", "group": value_error})
    wait_for(kernel, "nw.counts('w')['dead'] == 0 and nw.failures('w') == []")
    wait_for(kernel, f"{GROUPS} == []")
    assert kernel.eval("p.notice.value") == ""
