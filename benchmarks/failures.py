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
fresh process each, with and without handing freed memory back (engine/memory.py): N messages
fail, the cell is fixed, their group is requeued and drains; RSS at the start, after the
failing drain, and after the second drain (``nw.wait`` returned: a quiet moment).

Run from the repository root:

    python benchmarks/failures.py                   # 3 rounds of 50,000 messages
    python benchmarks/failures.py --messages 200000 --rounds 1
    python benchmarks/failures.py --memory --messages 200000
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


def memory_day(n: int, trim: bool, chunk: int = 10_000) -> None:
    """One process's day: print its RSS at each step as ``step MiB`` lines."""
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
    print(f"start {_rss_mib():.0f}")
    for start in range(0, n, chunk):
        nw.emit_many([{"i": i} for i in range(start, min(start + chunk, n))], "load")
    nw.resume("load")
    assert nw.wait("load", timeout=900)
    print(f"failed {_rss_mib():.0f}")
    fixed.append(True)
    nw.requeue("load", group=nw.failures("load")[0].fingerprint)
    assert nw.wait("load", timeout=900) and nw.counts("load")["done"] == n
    print(f"drained {_rss_mib():.0f}")
    api.shutdown()
    shutil.rmtree(folder, ignore_errors=True)


def memory_main(n: int) -> int:
    print(f"RSS (MiB) through {n:,} failures, a requeue of their group and its drain")
    print(f"{'':<22} {'start':>6} {'failed':>7} {'drained':>8}")
    for trim in (False, True):
        out = subprocess.run(
            [sys.executable, __file__, "--memory-day", str(n)] + ([] if trim else ["--no-trim"]),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        mib = dict(line.split() for line in out.splitlines() if line.strip())
        label = "memory handed back" if trim else "memory kept (before)"
        print(f"{label:<22} {mib['start']:>6} {mib['failed']:>7} {mib['drained']:>8}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--memory", action="store_true", help="RSS through a day of failures")
    parser.add_argument("--memory-day", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--no-trim", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_day:
        memory_day(args.memory_day, trim=not args.no_trim)
        return 0
    if args.memory:
        return memory_main(args.messages)
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
