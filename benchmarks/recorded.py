"""What ``@nw.recorded`` costs, and what it costs workers that do not use it.

1. per call  A small function (returns a 3-key dict) called N times on a thread where a run is
             going on (``CURRENT.run`` set, as ``Dispatch.execute`` does; a new run every 10
             calls): plain; plain plus the copies a recorded call makes of its result, as a
             run's result gets them (``trace.run_result``: a ``preview`` repr and a bounded
             pickle); and recorded. "Beyond its pickle" is recorded - (plain + copies), in
             microseconds. The best of 15 rounds, the three alternating.
2. drain     50,000 messages queued to a paused worker with a trivial handler (no recorded
             call), then the time from ``resume`` to ``wait``: messages/s, in a fresh
             process for each round, alternating this tree and ``--before`` (a checkout
             without recorded calls), 5 rounds each; medians. And the same drain with one
             recorded call per message, on this tree.

Run from the repository root:

    git archive 5c21a91 nbworkers | tar -x -C /tmp/before    # the tree to compare with
    python benchmarks/recorded.py --before /tmp/before
    python benchmarks/recorded.py --quick                    # smaller, no comparison
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

DRAIN = textwrap.dedent(
    """
    import os, sys, tempfile, time
    import nbworkers as nw
    from nbworkers import api

    count, recorded = int(sys.argv[1]), sys.argv[2] == "recorded"
    with tempfile.TemporaryDirectory(prefix="nbworkers-bench-recorded-") as tmp:
        api.use_config(None)
        api.config().db_path = os.path.join(tmp, "bench.duckdb")
        if recorded:
            @nw.recorded
            def now(i):
                return i
            @nw.worker("sink", paused=True)
            def sink(event):
                return now(event)
        else:
            @nw.worker("sink", paused=True)
            def sink(event):
                return event
        for start in range(0, count, 10_000):
            nw.emit_many(range(start, min(count, start + 10_000)), "sink")
        nw.flush()
        t0 = time.perf_counter()
        nw.resume("sink")
        assert nw.wait("sink", 600)
        print(count / (time.perf_counter() - t0))
        nw.shutdown()
    """
)


def drain_rate(tree: Path, count: int, recorded: bool) -> float:
    """Messages/s of one drain in a fresh interpreter importing nbworkers from ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, "-c", DRAIN, str(count), "recorded" if recorded else "plain"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=tree,
    )
    return float(out.stdout.strip().splitlines()[-1])


def per_call(n: int, rounds: int = 15) -> dict[str, float]:
    """Microseconds a call: plain, plain + copies, recorded."""
    sys.path.insert(0, str(ROOT))
    import nbworkers as nw
    from nbworkers.engine.worker import CURRENT, Run
    from nbworkers.trace import run_result

    def fetch(i):
        return {"status": 200, "id": i, "body": "ok"}

    recorded = nw.recorded(fetch)
    run = Run(None, 0, 0.0, 0.0, None, None, None)
    CURRENT.run = run

    def plain_loop():
        for i in range(n):
            fetch(i)

    def copies_loop():
        for i in range(n):
            run_result(fetch(i), 65536)

    def recorded_loop():
        for i in range(n):
            if not i % 10:
                run.calls = None  # a new run every 10 calls: bounded, as a trace is
            recorded(i)

    loops = {"plain": plain_loop, "copies": copies_loop, "recorded": recorded_loop}
    best = dict.fromkeys(loops, float("inf"))
    try:
        for _ in range(rounds):  # alternating, so that a busy moment hits all three alike
            for name, loop in loops.items():
                t0 = time.perf_counter()
                loop()
                best[name] = min(best[name], time.perf_counter() - t0)
        return {name: seconds / n * 1e6 for name, seconds in best.items()}
    finally:
        CURRENT.run = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="a tree without recorded calls to compare")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, a smoke run")
    args = parser.parse_args()
    calls, messages, rounds = (20_000, 10_000, 1) if args.quick else (50_000, 50_000, 5)

    us = per_call(calls)
    print(f"per recorded call ({calls:,} calls, best of 15 alternating rounds, microseconds):")
    print(f"  plain call              {us['plain']:6.2f}")
    print(f"  plain + run_result      {us['copies']:6.2f}   (its repr and pickle)")
    print(f"  recorded call           {us['recorded']:6.2f}")
    print(f"  beyond its pickle       {us['recorded'] - us['copies']:6.2f}")

    after, before, with_calls = [], [], []
    for _ in range(rounds):  # alternating, so that the machine's mood hits both alike
        if args.before is not None:
            before.append(drain_rate(args.before, messages, False))
        after.append(drain_rate(ROOT, messages, False))
        with_calls.append(drain_rate(ROOT, messages, True))
    print(f"drain of {messages:,} messages, {rounds} rounds, median messages/s:")
    if before:
        print(f"  before (no recorded calls)     {statistics.median(before):10,.0f}  {before}")
    print(f"  this tree, no recorded call    {statistics.median(after):10,.0f}")
    print(f"  this tree, one recorded call   {statistics.median(with_calls):10,.0f}")
    if before:
        ratio = statistics.median(after) / statistics.median(before)
        print(f"  no recorded call: this tree / before = {ratio:.3f}")


if __name__ == "__main__":
    main()
