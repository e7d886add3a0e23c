"""What a notebook user does, through a real ipykernel driven by jupyter_client."""

from __future__ import annotations

import duckdb

from tests.kernel import Kernel, strip_ansi

WAIT = "assert nw.wait(timeout=20)"


def test_load_ext_puts_emit_in_the_namespace_and_nw_shares_the_runtime(kernel):
    kernel.ok("import nbworkers\nassert emit is nbworkers.emit")
    kernel.ok("%%worker w\nevent + 1")
    kernel.ok(f"mid = emit(41, 'w')\n{WAIT}")
    assert kernel.eval("nw.traces('w')[0].result") == 42
    assert kernel.eval("nw.traces('w')[0].message_id == mid")


def test_a_worker_cell_sees_globals_ipython_syntax_event_and_message(kernel):
    kernel.ok("factor = 3")
    reply = kernel.ok(
        "%%worker w --concurrency 2\n"
        "import sys\n"
        "scaled = [factor * i for i in event['xs']]\n"
        "echoed = !echo from-shell\n"
        "%env NBW_SEEN=1\n"
        "(sum(scaled), echoed[0], message.id, message.worker, message.attempt,\n"
        " message.enqueued_at.tzinfo is not None)"
    )
    assert reply.stdout == "" and reply.value is None  # returns at once, shows nothing
    kernel.ok(f"mid = emit({{'xs': [1, 2]}}, 'w')\n{WAIT}")
    assert kernel.eval("nw.traces('w')[0].error") is None
    result = kernel.eval("nw.traces('w')[0].result")
    assert result[:4] == (9, "from-shell", kernel.eval("mid"), "w")
    assert result[4:] == (1, True)
    # Its locals stay private to the run
    assert kernel.eval("'scaled' in globals()") is False


def test_bad_names_and_options_are_usage_errors_and_change_nothing(kernel):
    for line in ["%%worker 'bad name'", "%%worker a/b", "%%worker " + "x" * 65]:
        reply = kernel.run(line + "\nevent")
        assert reply.ename == "UsageError", reply.traceback
        assert "1 to 64 letters" in reply.evalue
    reply = kernel.run("%%worker w --concurrency 0\nevent")
    assert reply.ename == "UsageError" and "--concurrency" in reply.evalue
    reply = kernel.run("%%worker w --bogus\nevent")
    assert reply.ename == "UsageError"
    assert kernel.eval("nw.workers()") == []


def test_rerunning_replaces_code_and_a_syntax_error_keeps_the_old(kernel):
    kernel.ok("%%worker w\n'v1'")
    kernel.ok(f"emit(0, 'w')\n{WAIT}")
    kernel.ok("%%worker w\n'v2'")
    kernel.ok(f"emit(0, 'w')\n{WAIT}")
    assert kernel.eval("nw.traces('w')[0].result") == "v2"
    reply = kernel.run("%%worker w\n'v3' +")
    assert reply.ename == "SyntaxError"
    assert "keeps its previous code" in reply.traceback
    kernel.ok(f"emit(0, 'w')\n{WAIT}")
    assert kernel.eval("nw.traces('w')[0].result") == "v2"


def test_prints_go_to_the_trace_not_into_the_running_cell(kernel):
    kernel.ok("%%worker w\nimport sys\nprint('out', event)\nprint('err', file=sys.stderr)")
    reply = kernel.ok(
        "import time\nfor i in range(20): emit(i, 'w')\n"
        f"{WAIT}\nimport sys\nsys.stdout.flush(); sys.stderr.flush()\nprint('cell done')"
    )
    assert reply.stdout == "cell done\n"
    assert "out" not in reply.stderr and "err" not in reply.stderr
    # Each run's output is in its own trace, both streams, and no other run's
    kept = kernel.eval("[(t.input, t.stdout) for t in nw.traces('w')]")
    assert len(kept) == 10
    assert all(stdout == f"out {event}\nerr\n" for event, stdout in kept), kept


def test_snapshots_dataclasses_and_unpicklable_values(kernel):
    kernel.ok("from dataclasses import dataclass\n@dataclass\nclass Job:\n    path: str")
    kernel.ok("%%worker w\nevent.path.upper()")
    kernel.ok(f"job = Job('a.png')\nemit(job, 'w')\njob.path = 'changed'\n{WAIT}")
    assert kernel.eval("nw.traces('w')[0].result") == "A.PNG"
    reply = kernel.run("import threading\nemit({'lock': threading.Lock()}, 'w')")
    assert reply.ename == "ArgumentTypeError"
    assert "dict" in reply.evalue and "_thread.lock" in reply.evalue
    assert kernel.eval("nw.counts('w')") == {
        "queued": 0,
        "running": 0,
        "done": 1,
        "failed": 0,
        "dead": 0,
        "retried": 0,
        "oldest_age_s": None,
    }


def test_fan_out_from_a_handler_and_emit_many(kernel):
    kernel.ok("%%worker split\nfor i in range(event):\n    emit(i, 'leaf')")
    kernel.ok("%%worker leaf\nevent * 2")
    kernel.ok(f"ids = nw.emit_many([3, 4], 'split')\n{WAIT}")
    assert kernel.eval("len(ids)") == 2
    assert kernel.eval("nw.counts('leaf')['done']") == 7


def test_a_failing_run_keeps_its_traceback_and_the_worker_goes_on(kernel):
    kernel.ok("%%worker w\nif event == 1:\n    1 / 0\nevent")
    kernel.ok(f"nw.emit_many([0, 1, 2], 'w')\n{WAIT}")
    assert kernel.eval("nw.counts('w')") == {
        "queued": 0,
        "running": 0,
        "done": 2,
        "failed": 1,
        "dead": 1,
        "retried": 0,
        "oldest_age_s": None,
    }
    error = kernel.eval("[t.error for t in nw.traces('w') if t.error][0]")
    assert "ZeroDivisionError" in error and "1 / 0" in error


def test_unhandled_messages_run_once_the_worker_is_defined(kernel):
    kernel.ok("emit('early', 'later')\nemit('early2', 'later')")
    assert kernel.eval("nw.unhandled()") == {"later": 2}
    kernel.ok("%%worker later\nevent")
    kernel.ok("assert nw.wait('later', timeout=30)")
    assert kernel.eval("sorted(t.result for t in nw.traces('later'))") == ["early", "early2"]
    assert kernel.eval("nw.unhandled()") == {}


def test_replay_runs_in_the_foreground_and_debug_works(kernel):
    kernel.ok("%%worker w\nprint('handling', event)\nevent['n'] / event['d']")
    kernel.ok(f"emit({{'n': 1, 'd': 0}}, 'w')\n{WAIT}")
    reply = kernel.run("nw.replay('w')")
    assert reply.ename == "ZeroDivisionError"
    assert "handling {'n': 1, 'd': 0}" in reply.stdout
    assert "event['n'] / event['d']" in reply.traceback
    assert kernel.eval("nw.traces('w')[0].replay")
    # %debug opens the post-mortem debugger in the handler's frame
    answers = iter(["p event['d'] + 100", "q"])
    streams = []
    content = kernel.kc.execute_interactive(
        "%debug",
        allow_stdin=True,
        stdin_hook=lambda msg: kernel.kc.input(next(answers)),
        output_hook=lambda m: streams.append(m) if m["msg_type"] == "stream" else None,
        timeout=30,
    )["content"]
    assert content["status"] == "ok"
    printed = strip_ansi("".join(m["content"]["text"] for m in streams))
    assert "<worker w" in printed and "event['n'] / event['d']" in printed
    assert "100" in printed  # the debugger evaluated event['d'] + 100 in the handler's frame
    # After a fix, replay gives the result
    kernel.ok("%%worker w\nevent['n'] / max(event['d'], 1)")
    assert kernel.eval("nw.replay('w')") == 1.0


def test_pause_survives_rerunning_the_cell_and_restarting_the_kernel(kernel):
    kernel.ok("%%worker w --paused\nevent")
    kernel.ok("emit(1, 'w')\nemit(2, 'w')")
    assert kernel.eval("nw.is_paused('w'), nw.counts('w')['queued']") == (True, 2)
    kernel.ok("%%worker w\nevent")
    assert kernel.eval("nw.wait('w', timeout=0.5), nw.is_paused('w')") == (False, True)
    kernel.restart()
    kernel.ok("%load_ext nbworkers\nimport nbworkers as nw")
    kernel.ok("%%worker w\nevent")
    assert kernel.eval("nw.is_paused('w'), nw.counts('w')['queued']") == (True, 2)
    kernel.ok("nw.resume('w')\nassert nw.wait('w', timeout=10)")
    assert kernel.eval("sorted(t.input for t in nw.traces('w'))") == [1, 2]


def test_messages_survive_a_kernel_killed_right_after_the_emitting_cell(tmp_path):
    db = tmp_path / "q.duckdb"
    k = Kernel(str(tmp_path), env={"NBWORKERS_DB": str(db)})
    try:
        k.ok("%load_ext nbworkers")
        k.ok("%%worker w\nimport time\ntime.sleep(60)")
        k.ok("for i in range(500): emit({'i': i}, 'w')")
        k.kill()  # SIGKILL: no atexit, no flush but the one the cell already did
        con = duckdb.connect(str(db), read_only=True)
        assert con.execute("select count(*) from messages").fetchone()[0] == 500
        con.close()
        # The new kernel delivers them all, the four that were running included
        k.ok("%load_ext nbworkers\nimport nbworkers as nw\nseen = []")
        k.ok("%%worker w\nseen.append(event['i'])")
        k.ok("assert nw.wait('w', timeout=30)")
        assert k.eval("sorted(seen) == list(range(500))")
        assert k.eval("nw.counts('w')['done']") == 500
    finally:
        k.shutdown()


def test_default_file_is_named_after_the_notebook_and_config_lists_options(tmp_path):
    k = Kernel(str(tmp_path), env={"JPY_SESSION_NAME": str(tmp_path / "analysis.ipynb")})
    try:
        k.ok("%load_ext nbworkers\nemit(1, 'x')")
        assert (tmp_path / ".nbworkers" / "analysis.duckdb").exists()
        assert ((tmp_path / ".nbworkers").stat().st_mode & 0o777) == 0o700
        listing = k.ok("%config NBWorkers").stdout
        for option in ["db_path", "default_concurrency", "traces_kept", "flush_interval_s"]:
            assert option in listing
        # Moving to another file keeps the handlers defined
        k.ok("%%worker x\nevent * 2")
        k.ok("%config NBWorkers.db_path = 'other.duckdb'")
        k.ok("import nbworkers as nw\nemit(5, 'x')\nassert nw.wait('x', timeout=10)")
        assert k.eval("nw.traces('x')[0].result") == 10
        assert (tmp_path / "other.duckdb").exists()
        # Moving to a file that cannot be opened says so, and loses no handler: the next
        # file that opens has them
        (tmp_path / "notes.txt").write_text("a file, not a folder")
        reply = k.run("%config NBWorkers.db_path = 'notes.txt/q.duckdb'", timeout=30)
        # (%config reports what the change raised on stderr)
        assert "cannot create the folder" in reply.stderr and "notes.txt" in reply.stderr
        assert k.run("nw.workers()").ename == "NBWorkersError"
        k.ok("%config NBWorkers.db_path = 'third.duckdb'")
        k.ok("emit(6, 'x')\nassert nw.wait('x', timeout=10)")
        assert k.eval("nw.workers()") == ["x"]
        assert k.eval("nw.traces('x')[0].result") == 12
    finally:
        k.shutdown()


def test_a_second_kernel_on_the_same_file_gets_a_clear_message(kernel, tmp_path):
    kernel.ok("emit(1, 'x')")
    other = Kernel(str(tmp_path), env={"NBWORKERS_DB": str(tmp_path / "q.duckdb")})
    try:
        other.ok("%load_ext nbworkers")
        reply = other.run("emit(1, 'x')")
        assert reply.ename == "StoreLockedError"
        assert "in use by another process" in reply.evalue
        assert "NBWorkers.db_path" in reply.evalue
        reply = other.run("%%worker y\nevent")
        assert reply.ename == "UsageError" and "in use by another process" in reply.evalue
        # Pointing it elsewhere fixes it
        other.ok(f"%config NBWorkers.db_path = {str(tmp_path / 'mine.duckdb')!r}\nemit(1, 'x')")
    finally:
        other.shutdown()
    # Nothing was lost in the first kernel: its message is still there, and it goes on
    kernel.ok("emit(2, 'x')")
    assert kernel.eval("nw.unhandled()") == {"x": 2}


def test_unload_flushes_and_leaves_no_thread(kernel, tmp_path):
    kernel.ok("%%worker w\nevent")
    kernel.ok("emit(1, 'nobody')")
    kernel.ok("%unload_ext nbworkers")
    threads = kernel.eval(
        "[t.name for t in __import__('threading').enumerate() if t.name.startswith('nbworkers')]"
    )
    assert threads == []
    # The emit global left behind says what to do (runs still going used it while it stopped)
    reply = kernel.run("emit(2, 'nobody')")
    assert reply.ename == "NBWorkersError" and "%load_ext nbworkers" in reply.evalue
    kernel.ok("%reload_ext nbworkers")
    assert kernel.eval("nw.unhandled()") == {"nobody": 1}


def test_a_cron_cell_ticks_on_its_own_and_can_be_paused_and_run_now(kernel):
    # (That a "1s" cron runs once every second is checked on a test clock in engine/test_crons.)
    kernel.ok("ticks = []")
    reply = kernel.ok("%%cron 1s ticker\nimport time\nticks.append(time.time())\nmessage.id")
    assert reply.stdout == ""
    kernel.ok(
        "import time\ndeadline = time.time() + 10\n"
        "while len(ticks) < 3 and time.time() < deadline: time.sleep(0.05)"
    )
    assert kernel.eval("len(ticks) >= 3")
    assert kernel.eval("nw.traces('ticker')[0].result.startswith('m')")
    assert kernel.eval("nw.traces('ticker')[0].input") is None
    assert kernel.eval("nw.next_run('ticker').tzinfo is not None")
    kernel.ok("nw.pause('ticker')\nnw.wait('ticker', 5)\nn = len(ticks)\ntime.sleep(1.5)")
    assert kernel.eval("len(ticks) == n and nw.next_run('ticker') is None")
    kernel.ok("nw.run_now('ticker')\nassert nw.wait('ticker', 5)")
    assert kernel.eval("len(ticks) == n + 1")
    # `event` is not defined in a cron
    kernel.ok("%%cron 1s noevent\nevent")
    kernel.ok("assert nw.wait('noevent', 5)")  # its first run is queued by the cell
    assert "NameError" in kernel.eval("nw.traces('noevent')[0].error")


def run_in_cell(kernel: Kernel, code: str, cell_id: str) -> None:
    """Run ``code`` as JupyterLab runs a cell: the request's metadata names the cell."""
    content = {
        "code": code,
        "silent": False,
        "store_history": True,
        "user_expressions": {},
        "allow_stdin": False,
        "stop_on_error": True,
    }
    msg = kernel.kc.session.msg("execute_request", content, metadata={"cellId": cell_id})
    kernel.kc.shell_channel.send(msg)
    while True:
        reply = kernel.kc.get_shell_msg(timeout=60)
        if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            break
    assert reply["content"]["status"] == "ok", reply["content"]


def test_renaming_a_cron_cell_replaces_its_cron_and_leaves_the_old_name_unhandled(kernel):
    # Given a %%cron cell named "first" that has run
    kernel.ok("runs = []")
    run_in_cell(kernel, "%%cron hourly first\nruns.append('first')", "cell-a")
    kernel.ok("assert nw.wait('first', 10)")
    # When the same cell is run again under a new name
    run_in_cell(kernel, "%%cron hourly second\nruns.append('second')", "cell-a")
    kernel.ok("assert nw.wait('second', 10)")
    # Then the cell owns one cron, the new one; the old name is no cron any more
    assert kernel.eval("nw.workers()") == ["second"]
    reply = kernel.run("nw.next_run('first')")
    assert "no cron named 'first'" in reply.evalue
    # and what is sent to the old name waits, unhandled
    kernel.ok("emit(1, 'first')")
    assert kernel.eval("nw.unhandled()") == {"first": 1}
    assert kernel.eval("runs") == ["first", "second"]


def test_cron_usage_errors_and_one_cron_per_cell(kernel):
    reply = kernel.run("%%cron sometimes\npass")
    assert reply.ename == "UsageError" and "every-minute, hourly" in reply.evalue
    reply = kernel.run("%%cron daily r --at 25:00\npass")
    assert reply.ename == "UsageError" and "HH:MM" in reply.evalue
    reply = kernel.run('%%cron "0 9 * * MON-FRI" standup\npass')
    assert reply.status == "ok", reply.traceback
    assert kernel.eval("nw.next_run('standup').hour") == 9
    # Re-running the same cell (no name) replaces its cron and never adds a second one
    first = kernel.ok("%%cron daily --at 09:30\npass").stdout
    assert "every day at 09:30" in first
    second = kernel.ok("%%cron daily --at 09:30\npass")
    assert first == second.stdout and second.stderr == ""
    assert kernel.eval("len([w for w in nw.workers() if w.startswith('cron-')])") == 1
    # Without a cell id (this client sends none, as nbconvert and nbclient), another cell of
    # the same interval takes that name: it says so, and what to do (it was silent)
    other = kernel.ok("%%cron daily --at 09:30\n'another cell'")
    assert "cron 'cron-daily' now runs this cell's code, in place of another cell's" in (
        other.stderr
    ), other.stderr
    assert "Give each a NAME: %%cron daily NAME" in other.stderr
    # (and another line of the same body: at another time)
    later = kernel.ok("%%cron daily --at 18:00\n'another cell'")
    assert "cron 'cron-daily' now runs this cell's code" in later.stderr, later.stderr


def test_an_option_read_at_start_changed_while_nbworkers_runs_says_when_it_applies(kernel):
    # Before anything starts nbworkers, an option is taken silently, and applies
    assert kernel.ok("%config NBWorkers.traces_kept = 3").stderr == ""
    kernel.ok("%%worker w\nevent")
    kernel.ok("nw.emit_many(range(5), 'w')\nassert nw.wait('w', 30)")
    assert kernel.eval("len(nw.traces('w'))") == 3
    # Once it runs, a change says it waits for the next start, and what to do (it was silent)
    said = kernel.ok("%config NBWorkers.traces_kept = 20").stderr
    assert "NBWorkers.traces_kept = 20 applies when nbworkers starts again" in said, said
    assert "%reload_ext nbworkers" in said
    # An option that applies at once says nothing
    assert kernel.ok("%config NBWorkers.max_processes = 2").stderr == ""


def test_a_time_zone_refused_by_config_leaves_reload_ext_working(kernel):
    # (found in review: IPython keeps a refused value in the shell's config, and the next
    # %reload_ext failed on it, leaving nbworkers unloaded)
    reply = kernel.run('%config NBWorkers.timezone = "Mars/Olympus"')
    assert "'Mars/Olympus' is not a time zone" in reply.stderr
    reloaded = kernel.ok("%reload_ext nbworkers")
    assert "NBWorkers.timezone keeps its default" in reloaded.stderr, reloaded.stderr
    kernel.ok("%%worker w\nevent")
    kernel.ok("emit(1, 'w')\nassert nw.wait('w', 30)")


def test_a_bad_option_left_out_at_load_keeps_the_command_lines_good_ones(tmp_path):
    # (found in review: an option of the kernel's command line is a string until traitlets
    # loads it, and the check of each option dropped it with the bad one)
    k = Kernel(str(tmp_path), extra_args=["--NBWorkers.queue_window=7"])
    try:
        k.ok("%load_ext nbworkers")
        k.run('%config NBWorkers.traces_kept = "x"')
        said = k.ok("%reload_ext nbworkers").stderr
        assert "NBWorkers.traces_kept keeps its default" in said, said
        assert "queue_window" not in said, said
        current = "[c for c in get_ipython().configurables if type(c).__name__ == 'NBWorkers'][0]"
        assert k.eval(f"({current}.queue_window, {current}.traces_kept)") == (7, 10)
    finally:
        k.shutdown()
