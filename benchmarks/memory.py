"""Memory flat in queue length (issue #20, point 1): the kernel's memory with 10,000 to
10,000,000 queued messages, the time to open such a file, and the drain rate from it.

For each N, two fresh processes on one DuckDB file in a new temporary folder:

1. **queue**: a paused worker gets N messages ``{"i": i}`` (``emit_many`` in chunks of
   100,000, each flushed); RSS is read before and after (after a collection and
   ``SETTLE_S`` seconds: DuckDB's allocator hands memory back seconds later), and the time
   of 1,000 ``nw.counts`` calls (which must not grow with N).
2. **open**: a new process opens the file (the time of the first ``nw.counts``, which opens
   it and reads each worker's window), reads RSS, resumes the worker and times the first
   ``min(N, 200,000)`` runs (messages/s: the drain rate at N queued).

Each worker keeps ``NBWorkers.queue_window`` ready messages (50,000) in memory; the others
stay in the file and are read back as the window drains (engine/paging.py). The targets: RSS
grows by at most 64 bytes per queued message beyond the window (measured between the two
largest N), 10,000,000 queued within 1 GiB RSS in all, the drain rate at 10,000,000 within
25 % of the rate at 10,000, and opening a file with 10,000,000 queued in under 3 s.

Run from the repository root:

    python benchmarks/memory.py                        # 10,000, 1,000,000, 10,000,000
    python benchmarks/memory.py --sizes 10000 1000000  # quicker
    python benchmarks/memory.py --sizes 2000 6000 --window 1000 --settle 0   # a smoke run
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import nbworkers as nw
from nbworkers import api

CHUNK = 100_000
DRAINED = 200_000  # runs timed from a long queue
SETTLE_S = 5
WINDOW = 0  # --window: NBWorkers.queue_window (0: its default)


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _use(path: str) -> None:
    api.shutdown()
    api.use_config(None)
    api.config().db_path = path
    if WINDOW:
        api.config().queue_window = WINDOW


def queue_step(path: str, n: int) -> dict:
    """Queue ``n`` messages to a paused worker; RSS before and after, and counts' cost."""
    _use(path)
    nw.workers()  # opens the file: the empty runtime's memory is the baseline
    gc.collect()
    before = _rss_mib()

    @nw.worker("load", paused=True)
    def load(event):
        return event["i"]

    t0 = time.perf_counter()
    for start in range(0, n, CHUNK):
        nw.emit_many([{"i": i} for i in range(start, min(start + CHUNK, n))], "load")
        nw.flush()
    queue_s = time.perf_counter() - t0
    gc.collect()
    time.sleep(SETTLE_S)
    after = _rss_mib()
    with api.runtime().registry.lock:
        in_memory = len(api.runtime().registry.workers["load"].queue)
    t0 = time.perf_counter()
    for _ in range(1000):
        counts = nw.counts("load")
    counts_us = (time.perf_counter() - t0) * 1000
    assert counts["queued"] == n, counts
    api.shutdown()
    return {
        "rss_before": before,
        "rss_queued": after,
        "queue_s": queue_s,
        "counts_us": counts_us,
        "in_memory": in_memory,
    }


def open_step(path: str, n: int) -> dict:
    """Open the file with ``n`` queued; the time, RSS, and the drain rate of the first runs."""
    _use(path)
    t0 = time.perf_counter()
    counts = nw.counts("load")  # opens the file
    open_s = time.perf_counter() - t0
    assert counts["queued"] == n, counts
    gc.collect()
    rss_open = _rss_mib()

    @nw.worker("load")
    def load(event):
        return event["i"]

    target = min(n, DRAINED)
    t0 = time.perf_counter()
    nw.resume("load")  # paused by the queue step, which the file keeps
    while nw.counts("load")["done"] < target:
        time.sleep(0.002)
    drain_s = time.perf_counter() - t0
    done = nw.counts("load")["done"]
    rss_drain = _rss_mib()
    api.shutdown()
    return {"open_s": open_s, "rss_open": rss_open, "rate": done / drain_s, "rss_drain": rss_drain}


def run_size(n: int, options: list[str]) -> dict:
    folder = tempfile.mkdtemp(prefix="nbw-paging-")
    path = os.path.join(folder, "q.duckdb")
    try:
        got = {"n": n}
        for step in ("queue", "open"):
            out = subprocess.run(
                [sys.executable, __file__, "--step", step, path, str(n), *options],
                capture_output=True,
                text=True,
                check=False,
            )
            if out.returncode:
                raise SystemExit(f"{step} {n:,} failed:\n{out.stderr}")
            got.update(json.loads(out.stdout.splitlines()[-1]))
        got["file_mib"] = os.path.getsize(path) / 2**20
        return got
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000, 10_000_000])
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--window", type=int, default=0, help="NBWorkers.queue_window")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before RSS")
    parser.add_argument("--step", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    global WINDOW, SETTLE_S
    WINDOW, SETTLE_S = args.window, args.settle
    options = ["--window", str(args.window), "--settle", str(args.settle)]
    if args.step:
        step, path, n = args.step
        figures = (queue_step if step == "queue" else open_step)(path, int(n))
        print(json.dumps(figures))
        return 0
    print(f"python {sys.version.split()[0]} on {platform.machine()}, {os.cpu_count()} CPUs")
    heads = ("queued", "RSS empty", "RSS queued", "queue s", "counts us", "file MiB")
    heads += ("open s", "RSS open", "drain/s")
    print(" ".join(f"{h:>11}" for h in heads))
    rows = []
    for n in sorted(args.sizes):
        r = run_size(n, options)
        rows.append(r)
        print(
            f"{n:>11,} {r['rss_before']:>11.0f} {r['rss_queued']:>11.0f} {r['queue_s']:>11.1f} "
            f"{r['counts_us']:>11.1f} {r['file_mib']:>11.0f} {r['open_s']:>11.2f} "
            f"{r['rss_open']:>11.0f} {r['rate']:>11,.0f}"
        )
    if len(rows) >= 2:
        small, big, second = rows[0], rows[-1], rows[-2]
        per = (big["rss_queued"] - second["rss_queued"]) * 2**20 / (big["n"] - second["n"])
        print(
            f"RSS per queued message beyond the window, {second['n']:,} -> {big['n']:,}: "
            f"{per:.0f} bytes (target: at most 64)"
        )
        print(
            f"RSS with {big['n']:,} queued: {big['rss_queued']:.0f} MiB while queueing, "
            f"{big['rss_open']:.0f} MiB once opened anew (target: under 1,024)"
        )
        print(
            f"drain rate with {big['n']:,} queued / with {small['n']:,}: "
            f"{big['rate'] / small['rate']:.2f} (target: at least 0.75)"
        )
        print(f"opening {big['n']:,} queued: {big['open_s']:.2f} s (target: under 3)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
