"""The panel's Stop button (a choice of runs when several go) and the dashboard's Remove
button (two clicks), clicked the way a front end clicks them."""

from __future__ import annotations

from tests.kernel import click, wait_for


def test_stop_stops_the_run_chosen_and_then_the_one_left(kernel):
    # Given two runs going
    kernel.ok("%%worker w --concurrency 2\nimport time\nwhile True:\n    time.sleep(0.01)")
    kernel.ok("from nbworkers.widgets import panels\np = panels('w')[0]")
    assert kernel.eval("p.stop_button.layout.display") == "none"  # nothing to stop yet
    kernel.ok("ids = [emit(1, 'w'), emit(2, 'w')]")
    wait_for(kernel, "p.stop_choice.options == tuple(ids)")
    assert kernel.eval("p.stop_choice.layout.display") is None
    assert "nw.stop" in kernel.eval("p.stop_button.tooltip")
    # When the second is chosen and Stop clicked
    kernel.ok("p.stop_choice.value = ids[1]")
    click(kernel, "p.stop_button")
    # Then that one is stopped (no retries: a dead letter), and the first still runs
    wait_for(kernel, "[d['id'] for d in nw.dead_letters('w')] == [ids[1]]")
    wait_for(kernel, "p.stop_button.description == f'Stop {ids[0]}'")
    assert kernel.eval("p.stop_choice.layout.display") == "none"
    wait_for(kernel, "p.view.traces[0]['status'] == 'stopped'")
    # When Stop is clicked again: the one left stops, and the button goes
    click(kernel, "p.stop_button")
    wait_for(kernel, "nw.counts('w')['dead'] == 2 and nw.counts('w')['running'] == 0")
    wait_for(kernel, "p.stop_button.layout.display == 'none'")
    assert kernel.eval("p.notice.value") == ""


def test_remove_in_the_dashboard_asks_to_confirm_then_removes(kernel):
    kernel.ok("%%worker w\nevent")
    kernel.ok("%%worker other\nevent")
    kernel.ok("%nbworkers")
    kernel.ok(
        "from nbworkers.widgets import views, panels, Dashboard\n"
        "d = [v for v in views() if isinstance(v, Dashboard)][0]\n"
        "cell_panel = [p for p in panels('w') if p is not d.panel('w')][0]\n"
        "row = d.panel('w')"
    )
    # The cell's panel has no Remove button; the dashboard's row has one
    assert kernel.eval("cell_panel.remove_button.layout.display") == "none"
    assert kernel.eval("row.remove_button.layout.display") is None
    assert "nw.remove" in kernel.eval("row.remove_button.tooltip")
    # A first click only asks; Keep it cancels
    click(kernel, "row.remove_button")
    wait_for(kernel, "row.remove_button.description == 'Confirm: remove w'")
    assert kernel.eval("row.keep_button.layout.display") is None
    click(kernel, "row.keep_button")
    wait_for(kernel, "row.remove_button.description == 'Remove'")
    assert kernel.eval("nw.workers()") == ["w", "other"]
    # Two clicks remove it: it leaves the dashboard, and the cell's panel says removed
    click(kernel, "row.remove_button")
    wait_for(kernel, "row.remove_button.description == 'Confirm: remove w'")
    click(kernel, "row.remove_button")
    wait_for(kernel, "nw.workers() == ['other']")
    wait_for(kernel, "[p.name for p in d.panels_box.children] == ['other']")
    wait_for(kernel, "cell_panel.view.header['badge'] == 'removed'")
    assert kernel.eval("cell_panel.notice.value") == ""
