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

Run from the repository root:

    python benchmarks/failures.py                   # 3 rounds of 50,000 messages
    python benchmarks/failures.py --messages 200000 --rounds 1
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
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
