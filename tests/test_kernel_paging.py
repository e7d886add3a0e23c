"""Long queues the way a notebook user meets them (issue #20, point 1): a queue much longer than
``NBWorkers.queue_window`` keeps only the window in the kernel's memory, and every message runs
once, in order, in this kernel and in the next one after a kill."""

from __future__ import annotations

from tests.kernel import Kernel


def test_a_long_queue_survives_a_killed_kernel_and_runs_once_in_order_from_a_small_window(
    tmp_path,
):
    db = tmp_path / "q.duckdb"
    k = Kernel(str(tmp_path), env={"NBWORKERS_DB": str(db)})
    in_memory = "len(nbworkers.api.runtime().registry.workers['w'].queue)"
    start = "%config NBWorkers.queue_window = 500\n%load_ext nbworkers\nimport nbworkers as nw"
    try:
        k.ok(start + ", nbworkers.api")
        k.ok("%%worker w --paused --concurrency 1\nseen.append(event)")
        k.ok("seen = []\nnw.emit_many(range(20_000), 'w')\nnw.emit('last', 'w')\nnw.flush()")
        assert k.eval("nw.counts('w')['queued']") == 20_001
        assert k.eval(in_memory) == 500
        k.kill()  # SIGKILL
        k.ok(start + ", nbworkers.api")
        assert k.eval("nw.counts('w')['queued']") == 20_001
        assert k.eval("[m['preview'] for m in nw.messages('w', limit=3)]") == ["0", "1", "2"]
        assert k.eval(in_memory) == 500
        k.ok("seen = []")
        k.ok("%%worker w --concurrency 1\nseen.append(event)")
        k.ok("nw.resume('w')\nassert nw.wait('w', timeout=60)")
        assert k.eval("seen == [*range(20_000), 'last']") is True
        assert k.eval("nw.counts('w')['done']") == 20_001
    finally:
        k.shutdown()
