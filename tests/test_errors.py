"""Errors a user causes: exact names, clear refusals of bad arguments, and tracebacks that show
the user's own line and the message rather than nbworkers' insides."""

from __future__ import annotations

import duckdb
import pytest

from nbworkers.errors import NBWorkersError

# ----- names are exact ------------------------------------------------------------------------

BAD_NAMES = ["resize\n", "resize ", " resize", "resize\t", "resize\r\n", "", "bad name", "a" * 65]

# Every public function that takes a worker or cron name, called with ``name``.
NAME_TAKERS = {
    "emit": lambda nw, name: nw.emit(1, name),
    "emit_many": lambda nw, name: nw.emit_many([1, 2], name),
    "worker": lambda nw, name: nw.worker(name),
    "cron": lambda nw, name: nw.cron("5m", name=name),
    "run_now": lambda nw, name: nw.run_now(name),
    "next_run": lambda nw, name: nw.next_run(name),
    "pause": lambda nw, name: nw.pause(name),
    "resume": lambda nw, name: nw.resume(name),
    "is_paused": lambda nw, name: nw.is_paused(name),
    "pause_reason": lambda nw, name: nw.pause_reason(name),
    "set_concurrency": lambda nw, name: nw.set_concurrency(name, 2),
    "counts": lambda nw, name: nw.counts(name),
    "messages": lambda nw, name: nw.messages(name),
    "purge": lambda nw, name: nw.purge(name),
    "dead_letters": lambda nw, name: nw.dead_letters(name),
    "requeue": lambda nw, name: nw.requeue(name),
    "discard": lambda nw, name: nw.discard(name),
    "traces": lambda nw, name: nw.traces(name),
    "wait": lambda nw, name: nw.wait(name, timeout=0),
    "replay": lambda nw, name: nw.replay(name),
}


@pytest.mark.parametrize("function", NAME_TAKERS)
def test_every_function_taking_a_name_refuses_a_bad_one(fresh_runtime, function):
    nw = fresh_runtime
    nw.worker("resize", paused=True)(lambda event: event)
    # None is a name's default for cron (the function's name) and wait (every worker)
    others = [5, b"resize"] if function in ("cron", "wait") else [None, 5, b"resize"]
    for bad in BAD_NAMES + others:
        with pytest.raises(ValueError, match="is not a valid worker name") as caught:
            NAME_TAKERS[function](nw, bad)
        assert isinstance(caught.value, NBWorkersError), bad
    # Nothing was made under a name that looks like a real worker's
    assert nw.workers() == ["resize"] and nw.unhandled() == {}
    assert nw.counts("resize")["queued"] == 0


def test_a_name_with_a_trailing_newline_is_refused_by_the_magics(kernel):
    kernel.ok("%%worker resize --paused\nevent")
    for cell in ['%%worker "resize "\nevent', '%%cron 5m "report "\npass', "%%worker ''\nevent"]:
        reply = kernel.run(cell)
        assert reply.ename == "UsageError" and "not a valid worker name" in reply.evalue, cell
    reply = kernel.run("emit(1, 'resize\\n')")
    assert reply.ename == "ArgumentValueError", reply.traceback
    assert "'resize\\n' is not a valid worker name" in reply.evalue
    assert kernel.eval("nw.workers(), nw.unhandled()") == (["resize"], {})


# ----- tracebacks: the user's line and the message ----------------------------------------------


def test_an_nbworkers_error_shows_the_users_lines_and_the_message_not_nbworkers_insides(kernel):
    kernel.ok("%%worker w --paused\nevent")
    kernel.ok("def look(name):\n    return nw.messages(name, limit=-1)")
    reply = kernel.run("x = 1\nlook('w')")
    shown = reply.traceback
    assert reply.ename == "ArgumentValueError", shown
    assert "nbworkers/" not in shown and "site-packages" not in shown, shown
    lines = shown.splitlines()
    assert "----> 2 look('w')" in lines, shown
    assert "----> 2     return nw.messages(name, limit=-1)" in lines, shown
    assert lines[-1] == f"ArgumentValueError: {reply.evalue}", shown
    assert "limit" in reply.evalue
    # An error nbworkers raises for a state, not an argument, reads the same way
    reply = kernel.run("nw.run_now('w')")
    assert reply.ename == "NBWorkersError" and "nbworkers/" not in reply.traceback
    assert reply.traceback.splitlines()[-1] == "NBWorkersError: " + reply.evalue
    assert "----> 1 nw.run_now('w')" in reply.traceback


def test_a_handler_calling_nbworkers_wrongly_has_its_own_line_in_the_trace(kernel):
    kernel.ok("%%worker w\nx = event\nnw.counts(None)")
    kernel.ok("emit(1, 'w')\nassert nw.wait('w', timeout=20)")
    error = kernel.eval("nw.traces('w')[0].error")
    assert "nbworkers/" not in error, error
    assert "nw.counts(None)" in error and 'File "<worker w #' in error, error
    assert error.splitlines()[-1].startswith(
        "nbworkers.errors.ArgumentValueError: None is not a valid"
    ), error
    # Replayed in a cell, it shows the cell's line and the handler's
    reply = kernel.run("nw.replay('w')")
    assert "nbworkers/" not in reply.traceback, reply.traceback
    assert "----> 1 nw.replay('w')" in reply.traceback
    assert "----> 2 nw.counts(None)" in reply.traceback


# ----- bad arguments across the public API ------------------------------------------------------

# (call, the error it raises, words its message must hold); ``nw`` has worker "w" and cron "c"
BAD_CALLS = [
    ("nw.emit(1, 'w', key=5)", TypeError, "key must be a string"),
    ("nw.emit(1, 'w', delay=-1)", ValueError, "delay must be seconds"),
    ("nw.emit(1, 'w', delay=True)", ValueError, "delay must be seconds"),
    ("nw.emit(1, 'w', delay='5')", ValueError, "delay must be seconds"),
    ("nw.emit(1, 'w', at='tomorrow')", TypeError, "at must be a datetime"),
    ("nw.emit(1, 'w', delay=1, at=datetime.now())", ValueError, "not both"),
    ("nw.emit(threading.Lock(), 'w')", TypeError, "cannot be snapshotted"),
    ("nw.emit_many(None, 'w')", TypeError, "emit_many: events must be"),
    ("nw.emit_many(5, 'w')", TypeError, "emit_many: events must be"),
    ("nw.emit_many('abc', 'w')", TypeError, "nw.emit(value, name)"),
    ("nw.worker('w', concurrency=0)(print)", ValueError, "at least 1"),
    ("nw.worker('w', concurrency=True)(print)", ValueError, "at least 1"),
    ("nw.worker('w', concurrency=2.5)(print)", ValueError, "at least 1"),
    ("nw.worker('w', paused='no')", TypeError, "paused must be True or False"),
    ("nw.worker('w', retries=-1)", ValueError, "retries must be a whole number"),
    ("nw.worker('w', retries=True)", ValueError, "retries must be a whole number"),
    ("nw.worker('w', backoff=None)", ValueError, "backoff must be a number"),
    ("nw.worker('w', timeout=0)", ValueError, "timeout must be a number"),
    ("nw.worker('w', timeout='5')", ValueError, "timeout must be a number"),
    ("nw.worker('w', executor='gpu')", ValueError, "executor must be one of"),
    ("nw.worker('w')(None)", TypeError, "must be a function"),
    ("nw.worker(print)", TypeError, "@nw.worker('resize')"),
    ("nw.cron(print)", TypeError, "@nw.cron('daily')"),
    ("nw.cron(None)", ValueError, "is not a cron interval"),
    ("nw.cron(5)", ValueError, "is not a cron interval"),
    ("nw.cron('daily', at=930)", TypeError, "at must be a time of day"),
    ("nw.cron('daily', at='25:00')", ValueError, "at= '25:00' is not a time of day"),
    ("nw.cron('30s', name='c', tz='Europe/Berlin')", ValueError, "tz= goes with at= or a cron"),
    ("nw.cron('daily --at 09:30', name='c')", ValueError, "takes at= as a keyword, not --at"),
    ("nw.cron('daily', paused=1)", TypeError, "paused must be True or False"),
    ("nw.cron('daily', name='c', timeout=-1)", ValueError, "timeout must be a number"),
    ("nw.cron('daily')(lambda: None)", ValueError, "give name="),
    ("nw.cron('daily', name='c')(5)", TypeError, "must be a function"),
    ("nw.set_concurrency('w', 0)", ValueError, "at least 1"),
    ("nw.set_concurrency('w', None)", ValueError, "at least 1"),
    ("nw.set_concurrency('c', 2)", NBWorkersError, "crons run one at a time"),
    ("nw.run_now('w')", NBWorkersError, "'w' is a worker, not a cron"),
    ("nw.next_run('w')", NBWorkersError, "'w' is a worker, not a cron"),
    ("nw.run_now('nothing')", NBWorkersError, "no cron named 'nothing'"),
    ("nw.emit(1, 'c')", ValueError, "'c' is a cron, which gets no event"),
    ("nw.emit_many([1], 'c')", ValueError, "'c' is a cron, which gets no event"),
    ("nw.messages('w', limit=-1)", ValueError, "limit must be"),
    ("nw.messages('w', limit=True)", ValueError, "limit must be"),
    ("nw.messages('w', limit='10')", ValueError, "limit must be"),
    ("nw.messages('w', limit=1.5)", ValueError, "limit must be"),
    ("nw.cancel(12)", ValueError, "ids look like m123"),
    ("nw.cancel('t12')", ValueError, "ids look like m123"),
    ("nw.cancel(None)", ValueError, "ids look like m123"),
    ("nw.requeue('w', ids=['m1'])", NBWorkersError, "has no dead letters"),
    ("nw.requeue('w', ids=5)", TypeError, "ids must be"),
    ("nw.discard('w', ids=5)", TypeError, "ids must be"),
    ("nw.discard('w', ids=[5])", NBWorkersError, "has no dead letters"),
    ("nw.on_failure(None)", TypeError, "needs a function"),
    ("nw.wait('w', timeout=-1)", ValueError, "timeout must be"),
    ("nw.wait('w', timeout='5')", ValueError, "timeout must be"),
    ("nw.wait('w', timeout=True)", ValueError, "timeout must be"),
    ("nw.replay('w')", NBWorkersError, "no trace to replay"),
    ("nw.replay('w', 'm3')", ValueError, "ids look like t123"),
    ("nw.replay('c')", NBWorkersError, "no trace to replay"),
    ("nw.sql(None)", TypeError, "the query must be a string"),
    ("nw.sql('select $1', params=5)", TypeError, "params must be a list"),
    ("nw.sql('delete from messages')", NBWorkersError, "one SELECT"),
    ("nw.use_dask(None)", TypeError, "give a distributed.Client"),
]


@pytest.fixture
def nw(fresh_runtime):
    fresh_runtime.worker("w", paused=True)(lambda event: event)
    fresh_runtime.cron("weekly", name="c", paused=True)(lambda: None)
    return fresh_runtime


def test_bad_arguments_get_clear_errors_and_change_nothing(nw):
    import threading  # noqa: F401 - names the calls use
    from datetime import datetime  # noqa: F401

    nw.emit("kept", "w")
    for call, error, words in BAD_CALLS:
        with pytest.raises(error) as caught:
            eval(call)
        message = str(caught.value)
        assert words in message, (call, message)
        # Every one is an NBWorkersError, so IPython shows it without nbworkers' frames
        assert isinstance(caught.value, NBWorkersError), (call, type(caught.value))
    assert sorted(nw.workers()) == ["c", "w"] and nw.unhandled() == {}
    assert [m["preview"] for m in nw.messages("w")] == ["'kept'"]
    assert nw.runtime().snapshot("w").concurrency == 4 and nw.is_paused("w")


def test_messages_an_older_version_queued_under_a_name_now_refused_stay_reachable(
    make_runtime, tmp_path
):
    # Before names were exact, emit(x, 'resize\n') was accepted and its message is in the
    # file. The new check must not make it unreachable: it can be counted and purged.
    rt = make_runtime()
    rt.emit(1, "resize")
    rt.stop()
    con = duckdb.connect(str(tmp_path / "q.duckdb"))
    con.execute("update messages set worker = 'resize' || chr(10)")
    con.close()
    rt = make_runtime()
    assert rt.counts("resize\n")["queued"] == 1
    assert len(rt.messages("resize\n")) == 1
    assert rt.purge("resize\n") == 1
    rt.flush()
    with pytest.raises(ValueError, match="not a valid worker name"):
        rt.emit(2, "resize\n")  # new messages under it are still refused
