"""Where a handler runs: threads, a process pool, or a Dask cluster, on the same workloads.

    python benchmarks/executors.py [--quick]      # needs the dask extra: pip install -e ".[dask]"

Prints, for each executor:
- CPU-heavy: messages/s for a pure-Python handler of about 50 ms (one core each), concurrency
  2, while a pure-Python loop runs in the notebook's own thread ("busy"), how fast that loop
  goes meanwhile, as a share of its speed with an idle runtime (threads share the GIL with it;
  processes do not), and messages/s again with the notebook idle ("idle");
- trivial: messages/s for a handler that returns its event (the cost of sending a run out and
  its outcome back);
- and, beside the idle figures, the executor's own baseline on the same work and concurrency:
  ``concurrent.futures.ProcessPoolExecutor`` (submit every task, then each result) for
  processes, and raw ``client.submit`` + ``client.gather`` on the same cluster for Dask (every
  task in flight at once);
- for Dask, trivial runs at 2, 4, 8 and 16 tasks in flight (``--concurrency``), beside raw
  ``client.submit`` + ``result`` with as many in flight.

The Dask rows use a ``distributed.LocalCluster`` with two single-threaded worker processes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from nbworkers import api, handlers
from nbworkers.engine.policy import Policy

HEAVY = "s = 0\nfor i in range(event):\n    s += i * i\ns"


def heavy(n: int) -> int:
    """HEAVY as a function, for the baselines."""
    s = 0
    for i in range(n):
        s += i * i
    return s


def identity(event):
    return event


def baseline(executor: str, fn, events: list, client) -> float | None:
    """Tasks per second of ``executor``'s own API on ``events`` at concurrency 2 (None for
    threads, whose baseline is the in-memory bound of benchmarks/core.py)."""
    if executor == "processes":
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(2) as pool:
            pool.submit(fn, events[0]).result()  # warm-up: the processes start
            t0 = time.perf_counter()
            futures = [pool.submit(fn, e) for e in events]
            for f in futures:
                f.result()
            return len(events) / (time.perf_counter() - t0)
    if executor == "dask":
        client.submit(fn, events[0], pure=False).result()  # warm-up
        t0 = time.perf_counter()
        client.gather([client.submit(fn, e, pure=False) for e in events])
        return len(events) / (time.perf_counter() - t0)
    return None


def dask_in_flight(client, fn, events: list, in_flight: int) -> float:
    """Tasks per second of raw ``client.submit`` + ``result`` with ``in_flight`` tasks at a
    time (threads each submitting one and waiting for it, as a worker's run threads do)."""
    import threading

    def loop(part):
        for e in part:
            client.submit(fn, e, pure=False).result()

    threads = [
        threading.Thread(target=loop, args=(events[i::in_flight],)) for i in range(in_flight)
    ]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(events) / (time.perf_counter() - t0)


def loop_rate(seconds: float) -> float:
    """Iterations per second of a pure-Python loop on this thread, for ``seconds``."""
    n, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(1000):
            n += 1
    return n / seconds


def calibrate() -> int:
    """A loop count that takes about 50 ms here, timed as a handler runs it: in a function."""
    n = 1_000_000
    t0 = time.perf_counter()
    heavy(n)
    return int(n * 0.05 / (time.perf_counter() - t0))


def run(executor: str, source: str, events: list, concurrency: int, busy: bool):
    rt = api.runtime()
    name = f"{executor}-{len(rt.workers())}"
    handler = handlers.from_cell(name, source, {"__name__": "__main__"})
    rt.define(name, handler, concurrency, policy=Policy(executor=executor))
    # Warm-up: a first run starts processes (or the cluster's import of nbworkers)
    rt.emit(events[0], name)
    assert rt.wait(name, 120)
    t0 = time.perf_counter()
    rt.emit_many(events, name)
    notebook = None
    if busy:
        n = 0
        while rt.counts(name)["queued"] or rt.counts(name)["running"]:
            for _ in range(1000):
                n += 1
        notebook = n / (time.perf_counter() - t0)
    assert rt.wait(name, 600)
    elapsed = time.perf_counter() - t0
    failed = rt.counts(name)["failed"]
    assert failed == 0, rt.traces(name)[0].error
    return len(events) / elapsed, notebook


def _or_dash(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    args = parser.parse_args()
    heavy_n = 8 if args.quick else 40
    trivial_n = {"threads": 20_000, "processes": 5_000, "dask": 500}
    if args.quick:
        trivial_n = {k: v // 20 for k, v in trivial_n.items()}

    folder = tempfile.mkdtemp(prefix="nbworkers-bench-")
    api.config().db_path = os.path.join(folder, "bench.duckdb")
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise SystemExit(
            'benchmarks/executors.py runs Dask too: pip install -e ".[dask]" (distributed)'
        ) from None

    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    )
    client = Client(cluster)
    api.use_dask(client)
    count = calibrate()
    idle = loop_rate(1.0)
    print(f"nbworkers executors, {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(f"CPU-heavy handler: {count:,} iterations (~50 ms), {heavy_n} messages, concurrency 2")
    print(
        f"{'executor':<10} {'heavy, busy':>12} {'notebook loop':>14} {'heavy, idle':>12} "
        f"{'(baseline)':>11} {'trivial msg/s':>14} {'(baseline)':>11}"
    )
    for executor in ("threads", "processes", "dask"):
        heavy_busy, notebook = run(executor, HEAVY, [count] * heavy_n, 2, busy=True)
        heavy_idle, _ = run(executor, HEAVY, [count] * heavy_n, 2, busy=False)
        trivial_events = list(range(trivial_n[executor]))
        trivial, _ = run(executor, "event", trivial_events, 2, busy=False)
        heavy_base = baseline(executor, heavy, [count] * heavy_n, client)
        trivial_base = baseline(executor, identity, trivial_events, client)
        print(
            f"{executor:<10} {heavy_busy:>12.1f} {notebook / idle:>13.0%} {heavy_idle:>12.1f} "
            f"{_or_dash(heavy_base, '.1f'):>11} {trivial:>14,.0f} "
            f"{_or_dash(trivial_base, ',.0f'):>11}",
            flush=True,
        )
    # Dask: each run is one task in flight, and --concurrency says how many. Raw Dask at the
    # same number in flight, and nbworkers with more.
    events = list(range(trivial_n["dask"]))
    print(f"dask, trivial runs/s by tasks in flight ({len(events)} messages):")
    print(f"{'in flight':>10} {'nbworkers':>10} {'raw Dask':>9} {'ratio':>6}")
    for in_flight in (2, 4, 8, 16):
        ours, _ = run("dask", "event", events, in_flight, busy=False)
        raw = dask_in_flight(client, identity, events, in_flight)
        print(f"{in_flight:>10} {ours:>10,.0f} {raw:>9,.0f} {ours / raw:>6.2f}", flush=True)
    api.shutdown()
    cluster.close()


if __name__ == "__main__":
    main()
