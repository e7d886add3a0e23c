"""Rate limits (--rate 10/s): the token bucket, the gate that holds runs back, the timer that
lets them go, nw.set_rate, and the bucket kept across a restart. Time is a fake clock moved by
hand: no test waits for a token."""

from __future__ import annotations

import random
from collections import deque

import duckdb
import pytest

from nbworkers.engine.policy import Policy
from nbworkers.engine.rate import Rate, next_token_s, parse_rate, take_token
from nbworkers.errors import ArgumentValueError, NBWorkersError
from nbworkers.handlers import from_function
from nbworkers.store import SCHEMA_VERSION
from tests.conftest import Clock
from tests.kernel import Kernel, wait_for
from tests.waiting import wait_until

T0 = 1_000_000.0


# ----- what a rate is -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "count", "period_s"),
    [("10/s", 10, 1.0), ("600/m", 600, 60.0), ("5/h", 5, 3600.0), (" 3 / s ", 3, 1.0)],
)
def test_a_rate_is_a_whole_number_per_second_minute_or_hour(text, count, period_s):
    rate = parse_rate(text)
    assert (rate.count, rate.period_s) == (count, period_s)
    assert str(rate) == f"{count}/{text.strip()[-1]}"
    assert Policy(rate=text).rate == rate


@pytest.mark.parametrize("bad", ["0.5/s", "10", "10/d", "0/s", "-1/s", "s/10", 10, True, "1e3/s"])
def test_a_bad_rate_says_what_a_rate_looks_like(bad):
    with pytest.raises(ArgumentValueError, match=r"rate must look like 10/s, 600/m or 5/h"):
        Policy(rate=bad)


def test_the_bucket_allows_a_burst_then_one_token_a_period_after_each_start():
    rate = Rate(3, "s")
    log = deque()
    for t in (0.0, 0.1, 0.2):
        assert next_token_s(log, rate, T0 + t) is None
        take_token(log, T0 + t)
    # Three started: the next token is back one second after the first start
    assert next_token_s(log, rate, T0 + 0.5) == T0 + 1.0
    assert next_token_s(log, rate, T0 + 1.0) is None  # exactly then, not later


# ----- the engine -------------------------------------------------------------------------------


def _define(rt, name, starts, clock, concurrency=4, **policy):
    def handler(event):
        starts.append((clock(), event))

    rt.define(name, from_function(name, handler), concurrency, policy=Policy(**policy))


def _settled(rt, name):
    """Every run that may start now has started and ended."""
    counts = rt.counts(name)
    return counts["running"] == 0 and (counts["queued"] == 0 or counts["rate_wait_s"] is not None)


def _step(rt, clock, name, now):
    clock.now = now
    rt.run_timers(now)
    assert wait_until(lambda: _settled(rt, name))


def test_at_most_the_rate_starts_however_many_slots_are_free(make_runtime):
    # Given a worker with 4 slots and a rate of 3 a second
    clock = Clock(T0)
    rt = make_runtime(clock=clock)
    starts = []
    _define(rt, "fetch", starts, clock, concurrency=4, rate="3/s")
    # When 10 messages are emitted at once
    rt.emit_many(range(10), "fetch")
    assert wait_until(lambda: _settled(rt, "fetch"))
    # Then a burst of 3 runs, the others stay queued (not running), and say when the next goes
    counts = rt.counts("fetch")
    assert sorted(e for _, e in starts) == [0, 1, 2]
    assert (counts["queued"], counts["running"], counts["done"]) == (7, 0, 3)
    assert counts["rate_wait_s"] == pytest.approx(1.0)
    # No run thread waits in a run for its token
    w = rt.registry.workers["fetch"]
    assert w.running == 0 and not w.runs
    # A moment before the tokens are back, nothing more starts; at that time, 3 more
    _step(rt, clock, "fetch", T0 + 0.999)
    assert len(starts) == 3
    _step(rt, clock, "fetch", T0 + 1.0)
    assert sorted(e for _, e in starts) == [0, 1, 2, 3, 4, 5]
    _step(rt, clock, "fetch", T0 + 2.5)  # 3 more: each token is back a second after its start
    _step(rt, clock, "fetch", T0 + 3.0)
    assert len(starts) == 9
    _step(rt, clock, "fetch", T0 + 3.5)
    assert sorted(e for _, e in starts) == list(range(10))
    assert rt.counts("fetch")["rate_wait_s"] is None


def test_starts_never_exceed_the_rate_in_any_window(make_runtime):
    # Given a rate of 5 a second, 60 messages and a clock moving by uneven steps
    clock = Clock(T0)
    rt = make_runtime(clock=clock)
    starts = []
    _define(rt, "api", starts, clock, concurrency=3, rate="5/s")
    rt.emit_many(range(60), "api")
    rng = random.Random(7)
    now = T0
    while rt.counts("api")["queued"]:
        _step(rt, clock, "api", now)
        now += rng.choice([0.05, 0.2, 0.33, 0.5, 0.71, 1.0])
    # Then every message ran once, and no window of one second holds more than 5 starts
    times = sorted(t for t, _ in starts)
    assert sorted(e for _, e in starts) == list(range(60))
    for i, t in enumerate(times):
        assert sum(1 for u in times[i:] if u < t + 1.0) <= 5


def test_set_rate_changes_the_limit_live_and_none_lifts_it(make_runtime):
    clock = Clock(T0)
    rt = make_runtime(clock=clock)
    starts = []
    _define(rt, "f", starts, clock, rate="2/m")
    rt.emit_many(range(10), "f")
    assert wait_until(lambda: _settled(rt, "f"))
    assert len(starts) == 2
    # Raising it lets more start now (two of this minute's 5 are taken)
    rt.set_rate("f", "5/m")
    assert wait_until(lambda: _settled(rt, "f"))
    assert len(starts) == 5
    assert rt.snapshot("f").policy.rate == Rate(5, "m")
    # None lifts it: the rest run at once
    rt.set_rate("f", None)
    assert rt.wait("f", 10)
    assert sorted(e for _, e in starts) == list(range(10))
    assert "rate_wait_s" not in rt.counts("f")


def test_set_rate_refuses_an_unknown_worker_and_a_bad_rate(make_runtime):
    rt = make_runtime()
    with pytest.raises(NBWorkersError, match=r"no worker named 'nope' is defined"):
        rt.set_rate("nope", "5/s")
    rt.define("f", from_function("f", lambda e: e))
    with pytest.raises(ArgumentValueError, match=r"rate must look like 10/s"):
        rt.set_rate("f", "5 per second")
    assert rt.snapshot("f").policy.rate is None


def test_a_paused_worker_waiting_for_a_token_stays_paused(make_runtime):
    clock = Clock(T0)
    rt = make_runtime(clock=clock)
    starts = []
    _define(rt, "f", starts, clock, rate="1/s")
    rt.emit_many(range(3), "f")
    assert wait_until(lambda: _settled(rt, "f"))
    rt.pause("f")
    clock.now = T0 + 5
    rt.run_timers(clock.now)  # its token is back, but the pause holds
    assert rt.wait("f", 0.2) is False
    assert len(starts) == 1 and rt.counts("f")["queued"] == 2
    rt.resume("f")
    assert wait_until(lambda: _settled(rt, "f"))
    assert len(starts) == 2


def test_the_bucket_holds_across_a_restart(make_runtime):
    # Given 3 runs started (the bucket of 3/s empty) when the kernel stopped
    clock = Clock(T0)
    rt = make_runtime(clock=clock)
    starts = []
    _define(rt, "f", starts, clock, rate="3/s")
    rt.emit_many(range(8), "f")
    assert wait_until(lambda: _settled(rt, "f"))
    assert len(starts) == 3
    rt.stop()
    # When a new runtime opens the file half a second later and the cell runs again
    clock2 = Clock(T0 + 0.5)
    rt2 = make_runtime(clock=clock2)
    _define(rt2, "f", starts, clock2, rate="3/s")
    assert wait_until(lambda: _settled(rt2, "f"))
    # Then nothing starts until the tokens taken before the restart are back
    assert len(starts) == 3
    assert rt2.counts("f")["rate_wait_s"] == pytest.approx(0.5)
    _step(rt2, clock2, "f", T0 + 1.0)
    assert sorted(e for _, e in starts) == list(range(6))


def test_the_file_keeps_only_the_starts_of_the_last_period(make_runtime, tmp_path):
    clock = Clock(T0)
    rt = make_runtime(clock=clock)
    starts = []
    _define(rt, "f", starts, clock, rate="2/s")
    rt.emit_many(range(6), "f")
    for now in (T0, T0 + 1, T0 + 2):
        _step(rt, clock, "f", now)
    rt.flush()
    rt.stop()
    con = duckdb.connect(str(tmp_path / "q.duckdb"), read_only=True)
    try:
        kept = con.execute("select started_at from rate_starts order by 1").fetchall()
    finally:
        con.close()
    assert [t for (t,) in kept] == [T0 + 2, T0 + 2]


def test_a_version_3_file_opens_and_gains_the_new_table_and_column(make_runtime, tmp_path):
    # Given a file as nbworkers with schema 3 left it: no rate_starts, no traces.message_seqs
    rt = make_runtime()
    rt.define("f", from_function("f", lambda e: e))
    rt.emit(1, "f")
    assert rt.wait("f", 10)
    rt.stop()
    con = duckdb.connect(str(tmp_path / "q.duckdb"))
    con.execute("DROP TABLE rate_starts")
    con.execute("ALTER TABLE traces DROP COLUMN message_seqs")
    con.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    con.close()
    # When it is opened again, then it has them, says version 4 and keeps its traces
    rt2 = make_runtime()
    assert [t.input for t in rt2.traces("f")] == [1]
    rt2.stop()
    con = duckdb.connect(str(tmp_path / "q.duckdb"), read_only=True)
    try:
        assert con.execute("select count(*) from rate_starts").fetchone() == (0,)
        assert con.execute("select message_seqs from traces").fetchall() == [(None,)]
        version = "select value from meta where key = 'schema_version'"
        assert con.execute(version).fetchone() == (str(SCHEMA_VERSION),)
    finally:
        con.close()


# ----- in a notebook ----------------------------------------------------------------------------


def test_rate_option_of_the_magic_and_its_errors(kernel):
    kernel.ok("%%worker fetch --rate 2/s\nevent")
    assert kernel.eval("str(nw.api.runtime().snapshot('fetch').policy.rate)") == "2/s"
    reply = kernel.run("%%worker fetch --rate 0.5/s\nevent")
    assert reply.ename == "UsageError"
    assert "--rate must look like 10/s, 600/m or 5/h" in reply.evalue
    assert "0.5/s is 30/m" in reply.evalue
    # The worker kept its rate; set_rate changes it live, and refuses what it cannot use
    kernel.ok("nw.set_rate('fetch', '600/m')")
    assert kernel.eval("str(nw.api.runtime().snapshot('fetch').policy.rate)") == "600/m"
    reply = kernel.run("nw.set_rate('nope', '1/s')")
    assert reply.ename == "NBWorkersError" and "no worker named 'nope'" in reply.evalue
    kernel.ok("@nw.worker('api', rate='5/h')\ndef api(event):\n    return event")
    assert kernel.eval("str(nw.api.runtime().snapshot('api').policy.rate)") == "5/h"


def test_a_rate_limited_drain_survives_a_killed_kernel_within_its_limit(tmp_path):
    # Given a worker allowed 3 starts a minute, writing each start to a file, and 6 messages
    log = tmp_path / "starts.txt"
    k = Kernel(str(tmp_path), env={"NBWORKERS_DB": str(tmp_path / "q.duckdb")})
    cell = (
        "%%worker fetch --rate 3/m --concurrency 4\n"
        "with open(LOG, 'a') as f:\n"
        "    f.write(f'{time.time()} {event}\\n')\n"
    )
    setup = f"%load_ext nbworkers\nimport nbworkers as nw, time\nLOG = {str(log)!r}"
    try:
        k.ok(setup)
        k.ok(cell)
        k.ok("ids = nw.emit_many(range(6), 'fetch')")
        # When the first burst of 3 has run (the next may start only a minute after it), the
        # kernel is killed
        wait_for(k, "nw.counts('fetch')['done'] == 3 and nw.counts('fetch')['running'] == 0")
        k.ok("nw.flush()")
        k.kill()
        # Then the new kernel, its cell run again, keeps the limit: the 3 left wait
        k.ok(setup)
        k.ok(cell)
        counts = k.eval("nw.counts('fetch')")
        assert (counts["queued"], counts["running"]) == (3, 0)
        assert 30 < counts["rate_wait_s"] <= 60
        # and drain once the tokens are back, each message run once
        k.ok("assert nw.wait('fetch', timeout=120)", timeout=150)
        assert k.eval("nw.counts('fetch')['done']") == 6  # counts are kept in the file
    finally:
        k.shutdown()
    starts = sorted(
        (float(t), int(e)) for t, e in (line.split() for line in log.read_text().splitlines())
    )
    assert sorted(e for _, e in starts) == list(range(6))
    times = [t for t, _ in starts]
    # No window of a minute holds more than 3 starts (checked over 50 s, for the handler's own
    # lag on a loaded machine: a kernel that forgot the limit starts the rest seconds after the
    # first burst)
    for i, t in enumerate(times):
        assert sum(1 for u in times[i:] if u < t + 50.0) <= 3


def test_the_panel_shows_the_rate_the_batch_and_the_wait_for_a_token(make_runtime):
    from nbworkers.widgets.state import facts, notices

    clock = Clock(T0)
    rt = make_runtime(clock=clock)
    starts = []
    _define(rt, "f", starts, clock, rate="1/m")
    rt.emit_many(range(3), "f")
    assert wait_until(lambda: _settled(rt, "f"))
    snap = rt.snapshot("f")
    assert "rate 1/m" in facts(snap)
    waiting = "rate limit 1/m: waiting for it, the next run may start in 60.0 s"
    assert {"text": waiting, "tone": "warn"} in notices(snap)
    rt.define("b", from_function("b", lambda events: None), policy=Policy(batch=500))
    assert "batches of 500 (wait 1 s)" in facts(rt.snapshot("b"))


def test_a_worker_waiting_for_a_token_holds_no_thread_and_starts_none(make_runtime):
    # Given run threads that end after 50 ms with nothing to do, and a rate of 1 an hour
    clock = Clock(T0)
    rt = make_runtime(clock=clock, idle_thread_s=0.05)
    starts = []
    _define(rt, "f", starts, clock, concurrency=4, rate="1/h")
    spawned = []
    spawn = rt.registry.spawn

    def counting_spawn(target, name, *args):
        spawned.append(name)
        return spawn(target, name, *args)

    rt.registry.spawn = counting_spawn
    rt.emit_many(range(5), "f")
    w = rt.registry.workers["f"]
    # When the one run the bucket allows has ended and its threads have nothing to do
    assert wait_until(lambda: len(starts) == 1 and not w.live)
    before = len(spawned)
    # Then, for as long as the token is not back, no run thread starts again (and none waits)
    assert rt.wait("f", 0.5) is False
    assert len(spawned) == before and not w.live
    assert len(starts) == 1
