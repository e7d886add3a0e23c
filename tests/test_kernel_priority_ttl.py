"""Priorities and expiry the way a notebook user meets them, through a real kernel:
emit(..., priority=), %%worker NAME --ttl S, emit(..., ttl=), and a kernel killed and
started again on the same file."""

from __future__ import annotations

from tests.kernel import Kernel, wait_for


def test_a_paused_worker_resumed_runs_higher_priority_first(kernel):
    kernel.ok("seen = []")
    kernel.ok("%%worker w --paused --concurrency 1\nseen.append((event, message.priority))")
    kernel.ok("for i, p in enumerate([0, 5, -1, 5, 2, 0]): emit(i, 'w', priority=p)")
    assert kernel.eval("[m['priority'] for m in nw.messages('w')]") == [5, 5, 2, 0, 0, -1]
    kernel.ok("nw.resume('w')\nassert nw.wait('w', timeout=30)")
    assert kernel.eval("[e for e, _ in seen]") == [1, 3, 4, 0, 5, 2]
    assert kernel.eval("[p for _, p in seen]") == [5, 5, 2, 0, 0, -1]


def test_a_bad_priority_or_ttl_says_what_to_give_and_enqueues_nothing(kernel):
    reply = kernel.run("emit(1, 'w', priority=1.5)")
    assert reply.ename == "ArgumentTypeError" and "whole number" in reply.evalue
    reply = kernel.run("nw.emit_many([1, 2], 'w', priority=5000)")
    assert reply.ename == "ArgumentValueError" and "-1,000 to 1,000" in reply.evalue
    reply = kernel.run("emit(1, 'w', ttl=0)")
    assert reply.ename == "ArgumentValueError" and "ttl must be seconds above 0" in reply.evalue
    reply = kernel.run("%%worker w --ttl 0\nevent")
    assert reply.ename == "UsageError" and "--ttl must be a number of seconds" in reply.evalue
    assert kernel.eval("nw.counts('w')['queued']") == 0


def test_worker_ttl_from_the_magic_expires_what_waits_too_long(kernel):
    kernel.ok("%%worker quote --paused --ttl 0.5\nevent")
    kernel.ok("stale = emit('old price', 'quote')\nfresh = emit('new', 'quote', ttl=3600)")
    wait_for(kernel, "nw.counts('quote')['dead'] == 1", timeout=15)
    letters = kernel.eval(
        "[(d['id'] == stale, d['reason'], d['error'].split(';')[0]) "
        "for d in nw.dead_letters('quote')]"
    )
    assert letters[0][:2] == (True, "expired")
    assert "past its time to live of 0.5 s (its worker's --ttl)" in letters[0][2]
    counts = kernel.eval("nw.counts('quote')")
    assert (counts["queued"], counts["failed"], counts["dead"], counts["expired"]) == (1, 0, 1, 1)
    assert kernel.eval("[m['id'] == fresh for m in nw.messages('quote')]") == [True]
    # Requeued, it may run again (a fresh time to live); resumed, both run
    kernel.ok("nw.requeue('quote')\nnw.resume('quote')\nassert nw.wait('quote', timeout=30)")
    assert kernel.eval("sorted(t.input for t in nw.traces('quote'))") == ["new", "old price"]


def test_priority_order_and_expiries_survive_a_killed_kernel(tmp_path):
    db = tmp_path / "q.duckdb"
    k = Kernel(str(tmp_path), env={"NBWORKERS_DB": str(db)})
    try:
        k.ok("%load_ext nbworkers\nimport nbworkers as nw\nseen = []")
        k.ok("%%worker w --paused --concurrency 1\nseen.append(event)")
        k.ok(
            "for i, p in enumerate([0, 3, -2, 3, 1]): emit(i, 'w', priority=p)\n"
            "soon = emit('soon', 'w', ttl=1)\n"
            "later = emit('later', 'w', ttl=3600, priority=9)\n"
            "nw.flush()"
        )
        k.kill()  # SIGKILL: nothing written but what the cell flushed
        # The new kernel expires what outlived its ttl, even before the cell runs again
        k.ok("%load_ext nbworkers\nimport nbworkers as nw\nseen = []")
        wait_for(k, "nw.counts('w')['dead'] == 1", timeout=15)
        assert k.eval("[(d['preview'], d['reason']) for d in nw.dead_letters('w')]") == [
            ("'soon'", "expired")
        ]
        k.ok("%%worker w --concurrency 1\nseen.append(event)")
        k.ok("nw.resume('w')\nassert nw.wait('w', timeout=30)")
        assert k.eval("seen") == ["later", 1, 3, 4, 0, 2]
    finally:
        k.shutdown()


def test_flow_control_errors_speak_the_users_language(kernel):
    # A magic option's error names the option and never offers None, which a magic cannot take
    for cell, option in [
        ("%%worker w --ttl -1\nevent", "--ttl"),
        ("%%worker w --batch 0\nevent", "--batch"),
        ("%%worker w --timeout -2\nevent", "--timeout"),
    ]:
        reply = kernel.run(cell)
        assert reply.ename == "UsageError" and reply.evalue.startswith(option), reply.evalue
        assert "None" not in reply.evalue, reply.evalue
    # A rate quoted as in a shell is the rate
    kernel.ok("%%worker fetch --paused --rate '10/s'\nevent")
    kernel.ok('%%worker fetch2 --paused --rate "5/m"\nevent')
    rates = "[str(nw.api.runtime().snapshot(n).policy.rate) for n in ('fetch', 'fetch2')]"
    assert kernel.eval(rates) == ["10/s", "5/m"]
    # ttl of the wrong type is a TypeError, as priority's is
    for bad in ["True", "'5'"]:
        reply = kernel.run(f"emit(1, 'w', ttl={bad})")
        assert reply.ename == "ArgumentTypeError", reply.evalue
        assert "ttl must be a number of seconds" in reply.evalue
    # emit_many names the event that cannot be snapshotted, and queues none of them
    reply = kernel.run("nw.emit_many([1, lambda: 2, 3], 'fetch')")
    assert reply.ename == "ArgumentTypeError"
    assert reply.evalue.startswith("emit_many: events[1]"), reply.evalue
    assert kernel.eval("nw.counts('fetch')['queued']") == 0
