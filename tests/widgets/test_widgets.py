"""The panels and the dashboard in a real kernel, driven as a front end drives them."""

from __future__ import annotations

import queue
import time

from tests.kernel import click, wait_for

XSS = "<img src=x onerror=alert(1)>"


def test_a_worker_cell_shows_its_panel_with_live_counts(kernel):
    reply = kernel.ok("%%worker w\nevent")
    views = [m for m in reply.outputs if m["msg_type"] == "display_data"]
    assert len(views) == 1
    assert "application/vnd.jupyter.widget-view+json" in views[0]["content"]["data"]
    kernel.ok("from nbworkers.widgets import panels\np = panels('w')[0]")
    assert "running" in kernel.eval("p.status.value")
    kernel.ok("nw.emit_many(range(7), 'w')\nnw.wait()")
    wait_for(kernel, "'done 7' in p.status.value")
    assert kernel.eval("len(p.trace_list.options)") == 7
    assert kernel.eval("p.pause_button.tooltip").startswith("Pause")


def test_pause_and_play_through_front_end_clicks(kernel):
    kernel.ok("%%worker w\nevent\n")
    kernel.ok("from nbworkers.widgets import panels\np = panels('w')[0]")
    click(kernel, "p.pause_button")
    wait_for(kernel, "nw.is_paused('w') and p.pause_button.description == 'Play'")
    assert "paused" in kernel.eval("p.status.value")
    kernel.ok("emit(1, 'w')")
    wait_for(kernel, "'queued 1' in p.status.value")
    click(kernel, "p.pause_button")
    wait_for(kernel, "not nw.is_paused('w') and nw.counts('w')['done'] == 1")
    wait_for(kernel, "'done 1' in p.status.value and 'queued 0' in p.status.value")


def test_trace_browser_shows_a_trace_and_replays_it(kernel):
    kernel.ok("%%worker w\nprint('saw', event)\nevent * 2")
    kernel.ok("from nbworkers.widgets import panels\np = panels('w')[0]")
    kernel.ok("emit(21, 'w')\nnw.wait()")
    wait_for(kernel, "len(p.trace_list.options) == 1")
    kernel.ok("p.trace_list.value = p.trace_list.options[0][1]")
    view = kernel.eval("p.trace_view.value")
    assert "21" in view and "42" in view and "saw 21" in view
    assert "nw.replay(&#x27;w&#x27;, &#x27;t" in kernel.eval("p.replay_code.value")
    click(kernel, "p.replay_button")
    wait_for(kernel, "len(p.trace_list.options) == 2")
    assert kernel.eval("[t.input for t in nw.traces('w')]") == [21, 21]


def test_a_failing_worker_shows_red_counts_and_its_error(kernel):
    kernel.ok("%%worker w\nraise ValueError(f'bad value {event}')")
    kernel.ok("from nbworkers.widgets import panels\np = panels('w')[0]")
    kernel.ok("emit(3, 'w')\nnw.wait()")
    wait_for(kernel, "'failed 1' in p.status.value")
    status = kernel.eval("p.status.value")
    assert "#c62828" in status and "ValueError: bad value 3" in status


def test_a_cron_panel_has_schedule_next_run_and_run_now(kernel):
    kernel.ok("%%cron daily report --at 09:30\n'sent'")
    kernel.ok("from nbworkers.widgets import panels\np = panels('report')[0]")
    status = kernel.eval("p.status.value")
    assert "every day at 09:30" in status and "next run in" in status
    assert kernel.eval("p.run_now_button.layout.display") is None
    assert "schedule does not move" in kernel.eval("p.run_now_button.tooltip")
    click(kernel, "p.run_now_button")
    wait_for(kernel, "nw.counts('report')['done'] == 1")
    wait_for(kernel, "len(p.trace_list.options) == 1 and 'last run' in p.status.value")


def test_a_panel_button_whose_action_fails_shows_the_error_in_the_panel(kernel):
    # Given the panel of a cron that has since been undefined (its cell was renamed)
    kernel.ok("%%cron hourly old\nNone")
    kernel.ok("from nbworkers.widgets import panels\np = panels('old')[0]")
    kernel.ok("nw.api.runtime().undefine('old')")
    # When its Run now button is clicked in the front end
    click(kernel, "p.run_now_button")
    # Then the panel says what went wrong, rather than losing it in a log
    wait_for(kernel, "'no cron named' in p.notice.value")
    assert "NBWorkersError" in kernel.eval("p.notice.value")
    # and the next click that works clears it
    kernel.ok("%%cron hourly old\nNone")
    click(kernel, "p.run_now_button")
    wait_for(kernel, "p.notice.value == ''")


def test_everything_shown_is_escaped(kernel):
    kernel.ok(f"%%worker w\nprint({XSS!r})\nraise RuntimeError(event)")
    kernel.ok(f"emit({XSS!r}, 'w')\nemit({XSS!r}, 'nobody')\nnw.wait()")
    kernel.ok(
        "from nbworkers.widgets import panels, Dashboard\np = panels('w')[0]\nd = Dashboard()"
    )
    wait_for(kernel, "len(p.trace_list.options) == 1")
    kernel.ok("p.trace_list.value = p.trace_list.options[0][1]")
    html = kernel.eval(
        "[w.value for v in (p, d) for w in __import__('nbworkers.widgets.panel', "
        "fromlist=['x'])._descendants(v) if isinstance(getattr(w, 'value', None), str)]"
    )
    joined = "\n".join(html)
    assert "&lt;img src=x onerror=alert(1)&gt;" in joined
    assert "<img" not in joined


def test_the_dashboard_lists_workers_crons_and_unhandled_names(kernel):
    kernel.ok("%%worker a\nevent")
    kernel.ok("%%cron hourly c --paused\npass")
    kernel.ok("emit(1, 'nobody')\nemit(2, 'nobody')")
    reply = kernel.ok("%nbworkers")
    assert any(m["msg_type"] == "display_data" for m in reply.outputs)
    kernel.ok(
        "from nbworkers.widgets import views, panels, Dashboard\n"
        "d = [v for v in views() if isinstance(v, Dashboard)][0]"
    )
    assert kernel.eval("[p.name for p in d.panels_box.children]") == ["a", "c"]
    unhandled = kernel.eval("d.unhandled.value")
    assert "nobody" in unhandled and "%%worker nobody" in unhandled and ">2<" in unhandled
    # A worker defined later appears, and its name leaves Unhandled
    kernel.ok("%%worker nobody\nevent")
    wait_for(kernel, "[p.name for p in d.panels_box.children] == ['a', 'c', 'nobody']")
    wait_for(kernel, "'Unhandled: none' in d.unhandled.value")
    # Views stay in sync: pausing from the dashboard's panel shows in the cell's panel
    kernel.ok("d.panel('a').pause_button.click()")
    assert kernel.eval("len(panels('a'))") == 2  # the cell's and the dashboard's
    wait_for(kernel, "all(p.pause_button.description == 'Play' for p in panels('a'))")


def test_a_panel_sends_a_few_comm_messages_a_second_however_fast_messages_flow(kernel):
    # About 1 ms a message on 8 threads: 20,000 messages flow for a few seconds
    kernel.ok("%%worker flow --concurrency 8\nimport time\ntime.sleep(0.001)\nevent")
    kc = kernel.kc
    while True:  # drain what is already on iopub
        try:
            kc.get_iopub_msg(timeout=0.5)
        except queue.Empty:  # nothing left
            break
    started = time.monotonic()
    msg_id = kc.execute("nw.emit_many(range(20000), 'flow')\nassert nw.wait('flow', 120)")
    comm_msgs = 0
    idle = False
    while not idle:
        msg = kc.get_iopub_msg(timeout=120)
        if msg["msg_type"] == "comm_msg":
            comm_msgs += 1
        idle = (
            msg["msg_type"] == "status"
            and msg["content"]["execution_state"] == "idle"
            and msg["parent_header"].get("msg_id") == msg_id
        )
    elapsed = time.monotonic() - started
    reply = kc.get_shell_msg(timeout=10)
    assert reply["content"]["status"] == "ok"
    assert kernel.eval("nw.counts('flow')['done']") == 20000
    # 0.4 s between refreshes, at most two changed widgets each (status and trace list), and
    # the Stop controls: shown, hidden, and their choice of runs at most every 3 s
    allowed = 5 * elapsed + 5 + 4 + elapsed / 3
    print(f"{comm_msgs} comm messages in {elapsed:.2f} s (allowed {allowed:.0f})")
    assert elapsed > 2
    assert elapsed <= comm_msgs <= allowed  # over one update a second, and no faster
