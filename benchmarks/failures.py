"""A failing drain against a successful one (issue #22: a failing run should cost about what a
successful one does; the target is a failing drain at least half the successful drain's rate).

Each drain runs on a fresh runtime backed by a DuckDB file in a new temporary folder (traces
on, default concurrency 4, no retries). N messages ``{"i": i, "text": ...}`` are queued to a
paused worker (``emit_many`` in chunks of 10,000, then ``nw.flush()``); the time from
``nw.resume`` to ``nw.wait`` returning True and ``nw.flush()`` (every dead letter on disk)
gives messages/s. The successful handler returns ``event["i"] + 1``; the failing one reads a
key the event lacks, ``event["texts"]``, with the message's own value in the error
(``KeyError: 'texts'`` would be the same text every time, an unfair help to any cache): it
raises ``KeyError(f"texts of {i}")``, one failure group of N dead letters. Rounds alternate
which drain goes first; the figures are each one's median.

With ``--memory``, instead: the kernel's resident memory (RSS) through a day of failures, in a
fresh process for 10,000 and for N messages: they all fail, emitted 10,000 at a time, each
chunk drained before the next (queued messages still live in memory, issue 20; RSS once all
failed: dead letters live on disk, so it should not grow with N), the cell is fixed and their
group requeued (seconds; the N new messages are queued in memory) and drained (RSS:
``nw.wait`` returned, a quiet moment that hands freed memory back, engine/memory.py), then
they all fail again and the group is discarded (seconds, RSS after).
Each RSS is read 15 s after its step: DuckDB's allocator hands memory back seconds later.
``--no-trim`` leaves freed memory with the process, to compare.

Run from the repository root:

    python benchmarks/failures.py                   # 3 rounds of 50,000 messages
    python benchmarks/failures.py --messages 200000 --rounds 1
    python benchmarks/failures.py --memory --messages 1000000   # 10,000 and 1,000,000
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import nbworkers as nw
from nbworkers import api


def drain(n: int, failing: bool, chunk: int = 10_000) -> float:
    """Queue ``n`` messages to a paused worker, then time resume -> wait() and flush."""
    folder = tempfile.mkdtemp(prefix="nbw-failures-")
    api.shutdown()
    api.use_config(None)
    api.config().db_path = os.path.join(folder, "q.duckdb")
    try:
        if failing:

            @nw.worker("load", paused=True)
            def fails(event):
                if "texts" not in event:
                    raise KeyError(f"texts of {event['i']}")

        else:

            @nw.worker("load", paused=True)
            def works(event):
                return event["i"] + 1

        for start in range(0, n, chunk):
            nw.emit_many([{"i": i} for i in range(start, min(start + chunk, n))], "load")
        nw.flush()
        t0 = time.perf_counter()
        nw.resume("load")
        finished = nw.wait("load", timeout=900)
        nw.flush()
        seconds = time.perf_counter() - t0
        counts = nw.counts("load")
        groups = nw.failures("load")
    finally:
        api.shutdown()
        api.use_config(None)
        shutil.rmtree(folder, ignore_errors=True)
    expected = ("dead", n) if failing else ("done", n)
    if not finished or counts[expected[0]] != n or len(groups) != int(failing):
        raise SystemExit(f"the drain did not end as it should: {counts}, {len(groups)} groups")
    return n / seconds


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# Seconds to wait before reading RSS: DuckDB's allocator hands memory back from a background
# thread, seconds after a batch (store/database.py).
SETTLE_S = 15


def memory_day(n: int, trim: bool, chunk: int = 10_000) -> None:
    """One process's day: print each step's RSS (MiB) or seconds as ``step value`` lines."""
    folder = tempfile.mkdtemp(prefix="nbw-memory-")
    api.config().db_path = os.path.join(folder, "q.duckdb")
    fixed = []

    @nw.worker("load", paused=True)
    def load(event):
        if not fixed:
            raise KeyError(f"texts of {event['i']}")
        return event["i"]

    if not trim:
        api.runtime().trimmer._trim = None

    def fail_all() -> None:
        # A chunk at a time, each drained before the next: queued messages still live in
        # memory (issue 20), dead letters no longer, and this measures the dead letters.
        nw.resume("load")
        for start in range(0, n, chunk):
            nw.emit_many([{"i": i} for i in range(start, min(start + chunk, n))], "load")
            assert nw.wait("load", timeout=3600)
        assert nw.counts("load")["dead"] == n
        assert [g.count for g in nw.failures("load")] == [n]  # one group, counted exactly

    print(f"start {_rss_mib():.0f}")
    fail_all()
    time.sleep(SETTLE_S)
    print(f"failed {_rss_mib():.0f}")
    fixed.append(True)
    t0 = time.perf_counter()
    nw.requeue("load", group=nw.failures("load")[0].fingerprint)
    print(f"requeue_s {time.perf_counter() - t0:.1f}")
    assert nw.wait("load", timeout=3600) and nw.counts("load")["done"] == n
    time.sleep(SETTLE_S)
    print(f"drained {_rss_mib():.0f}")
    fixed.clear()
    fail_all()
    t0 = time.perf_counter()
    assert nw.discard("load", group=nw.failures("load")[0].fingerprint) == n
    print(f"discard_s {time.perf_counter() - t0:.1f}")
    time.sleep(SETTLE_S)
    print(f"discarded {_rss_mib():.0f}")
    api.shutdown()
    shutil.rmtree(folder, ignore_errors=True)


def memory_main(sizes: list[int], trim: bool = True) -> int:
    print(
        "RSS (MiB) of a fresh process through N failures (one group), a requeue of the group "
        "after the fix and its drain, then N failures again and a discard of the group"
    )
    steps = ("start", "failed", "requeue_s", "drained", "discard_s", "discarded")
    heads = ("start", "failed", "requeue s", "drained", "discard s", "discarded")
    print(f"{'dead letters':>12} " + " ".join(f"{h:>9}" for h in heads))
    for n in sizes:
        out = subprocess.run(
            [sys.executable, __file__, "--memory-day", str(n)] + ([] if trim else ["--no-trim"]),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        got = dict(line.split() for line in out.splitlines() if line.strip())
        print(f"{n:>12,} " + " ".join(f"{got[step]:>9}" for step in steps))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--memory", action="store_true", help="RSS through a day of failures")
    parser.add_argument("--memory-day", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--no-trim", action="store_true", help="keep freed memory (to compare)")
    args = parser.parse_args(argv)
    if args.memory_day:
        memory_day(args.memory_day, trim=not args.no_trim)
        return 0
    if args.memory:
        return memory_main([10_000, args.messages], trim=not args.no_trim)
    n = args.messages
    print(f"python {sys.version.split()[0]} on {platform.machine()}, {os.cpu_count()} CPUs")
    rates: dict[bool, list[float]] = {False: [], True: []}
    for round_ in range(args.rounds):
        for failing in (False, True) if round_ % 2 == 0 else (True, False):
            rates[failing].append(drain(n, failing))
            kind = "failing" if failing else "ok"
            print(f"  round {round_ + 1}: {kind:>7} {rates[failing][-1]:,.0f} msg/s")
    ok, bad = statistics.median(rates[False]), statistics.median(rates[True])
    print(f"successful drain: {ok:,.0f} msg/s (median of {args.rounds}, {n:,} messages)")
    print(f"failing drain:    {bad:,.0f} msg/s (one failure group of {n:,} dead letters)")
    print(f"failing / successful: {bad / ok:.2f} (target: at least 0.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
