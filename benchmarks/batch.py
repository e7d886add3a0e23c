"""Batches against single messages: the drain of N trivial messages, with ``--batch`` and
without, in the same run.

Each drain runs on a fresh runtime backed by a DuckDB file in a new temporary folder (traces
on). N messages are queued to a paused worker (``emit_many`` in chunks of 10,000, then
``nw.flush()``); the time from ``nw.resume`` to ``nw.wait`` returning True (and the last batch
on disk: ``nw.flush()``) gives messages/s. The handler is trivial: one message returns
``event["i"] + 1``; a batch returns the list of those. Default concurrency (4). A batch of 500
waits 0 s for more (``batch_wait=0``): every batch but the last is full anyway.

Run from the repository root:

    python benchmarks/batch.py                  # 100,000 messages, batches of 500
    python benchmarks/batch.py --messages 20000 --batch 100
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time

import nbworkers as nw
from nbworkers import api


def drain(n: int, batch: int | None, chunk: int = 10_000) -> dict:
    """Queue ``n`` messages to a paused worker, then time resume -> wait() and flush."""
    folder = tempfile.mkdtemp(prefix="nbw-batch-")
    api.shutdown()
    api.use_config(None)
    api.config().db_path = os.path.join(folder, "q.duckdb")
    try:
        if batch is None:

            @nw.worker("load", paused=True)
            def one(event):
                return event["i"] + 1

        else:

            @nw.worker("load", paused=True, batch=batch, batch_wait=0)
            def many(events):
                return [e["i"] + 1 for e in events]

        for start in range(0, n, chunk):
            nw.emit_many([{"i": i} for i in range(start, min(start + chunk, n))], "load")
        nw.flush()
        t0 = time.perf_counter()
        nw.resume("load")
        finished = nw.wait("load", timeout=600)
        nw.flush()
        seconds = time.perf_counter() - t0
        counts = nw.counts("load")
        traces = len(nw.traces("load"))
    finally:
        api.shutdown()
        api.use_config(None)
        shutil.rmtree(folder, ignore_errors=True)
    if not finished or counts["done"] != n:
        raise SystemExit(f"the drain did not finish: wait()={finished}, counts={counts}")
    return {"seconds": seconds, "rate": n / seconds, "traces_kept": traces}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args(argv)
    n = args.messages
    print(f"python {sys.version.split()[0]} on {platform.machine()}, {os.cpu_count()} CPUs")
    single = drain(n, None)
    rate = single["rate"]
    print(f"no batch:        {n:,} messages in {single['seconds']:.2f} s = {rate:,.0f} msg/s")
    batched = drain(n, args.batch)
    print(
        f"--batch {args.batch:<7} {n:,} messages in {batched['seconds']:.2f} s = "
        f"{batched['rate']:,.0f} msg/s ({n // args.batch:,} runs)"
    )
    print(f"speed-up: {batched['rate'] / single['rate']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
