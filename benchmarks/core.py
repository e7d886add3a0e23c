"""Core performance benchmarks for nbworkers, each figure checked against its target.

Every measurement runs on a fresh runtime backed by a DuckDB *file* in a new temporary
directory (traces are always on), and shuts that runtime down afterwards. Measured:

1. drain    100,000 messages are queued to a paused worker (``emit_many`` in chunks of
            10,000, then ``nw.flush()``); the time from ``nw.resume`` to ``nw.wait``
            returning True gives messages/s. Trivial handler, default concurrency (4).
            Target >= 20,000 msg/s.
2. emit     ``nw.emit({"i": i}, "sink")`` 200,000 times in a plain loop to a paused worker,
            timing the loop only. Target >= 100,000 emits/s. The ``nw.flush()`` that
            follows is timed separately (informational).
3. latency  emit -> handler start on an idle runtime: ``perf_counter`` just before
            ``emit`` vs. at handler entry, one message at a time (each after the previous
            run finished, then ~2 ms idle). p50 target <= 2 ms; p99 reported. Measured
            twice: with the worker's run thread waiting, and with no thread yet (run
            threads start on demand and end when idle: ``idle_thread_s`` is made tiny and
            each emit waits until the last one ended, so every message starts one).
4. idle CPU 20 trivial, unpaused workers; after 1 s of settling, process CPU time over
            5 s of sleeping, as % of one core. Target <= 1 %.
5. memory   1,000,000 messages processed in rounds (``emit_many`` 20,000, ``nw.wait``).
            RSS growth from after the first round to the end: target <= 50 MB. DuckDB
            file size (+ .wal) after the first round vs. after a final flush: the file
            must not grow without bound (final <= 4 x first + 5 MB).

Run from the repository root:

    python benchmarks/core.py                 # full run (a few minutes at most)
    python benchmarks/core.py --quick         # ~10x smaller sizes, a smoke run
    python benchmarks/core.py --json benchmarks/results/core.json
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import duckdb

import nbworkers as nw
from nbworkers import api

MB = 1024 * 1024


@dataclass
class Sizes:
    """How big each measurement is; ``--quick`` shrinks them about tenfold."""

    drain_messages: int = 100_000
    drain_chunk: int = 10_000
    emit_count: int = 200_000
    latency_samples: int = 300
    latency_warmup: int = 20
    idle_workers: int = 20
    idle_settle_s: float = 1.0
    idle_measure_s: float = 5.0
    memory_messages: int = 1_000_000
    memory_round: int = 20_000

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            drain_messages=10_000,
            drain_chunk=1_000,
            emit_count=20_000,
            latency_samples=50,
            latency_warmup=5,
            idle_settle_s=0.5,
            idle_measure_s=1.0,
            memory_messages=100_000,
        )


@dataclass
class Figure:
    """One measured figure; ``passed`` is None for figures that have no target."""

    name: str
    value: float
    unit: str
    target: str = ""
    passed: bool | None = None
    note: str = ""


@dataclass
class Measurement:
    """What one benchmark function returns: its figures and any extra raw data."""

    figures: list[Figure]
    extra: dict = field(default_factory=dict)


# ----- helpers ------------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_runtime(tag: str) -> Iterator[str]:
    """Point nbworkers at a new DuckDB file in a new temp dir; shut the runtime down after."""
    api.shutdown()
    api.use_config(None)
    with tempfile.TemporaryDirectory(prefix=f"nbworkers-bench-{tag}-") as tmp:
        path = os.path.join(tmp, "bench.duckdb")
        api.config().db_path = path
        try:
            yield path
        finally:
            api.shutdown()
            api.use_config(None)


def db_size(path: str) -> int:
    """Bytes of the DuckDB file plus its write-ahead log, if any."""
    total = 0
    for name in (path, path + ".wal"):
        if os.path.exists(name):
            total += os.path.getsize(name)
    return total


def wal_size(path: str) -> int:
    """Bytes of the DuckDB write-ahead log (0 when there is none)."""
    wal = path + ".wal"
    return os.path.getsize(wal) if os.path.exists(wal) else 0


def rss_bytes() -> int:
    """Resident set size of this process (VmRSS), after a full garbage collection."""
    gc.collect()
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, linearly interpolated."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def nproc() -> str:
    """What ``nproc`` prints (CPUs available to this process)."""
    exe = shutil.which("nproc")
    if exe:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            return subprocess.run([exe], capture_output=True, text=True, check=True).stdout.strip()
    return str(len(os.sched_getaffinity(0)))


def at_least(value: float, target: float, unit: str) -> tuple[str, bool]:
    return f">= {target:,.0f} {unit}", value >= target


def at_most(value: float, target: float, unit: str) -> tuple[str, bool]:
    return f"<= {target:g} {unit}", value <= target


def log(text: str) -> None:
    print(f"  .. {text}", flush=True)


# ----- measurements -------------------------------------------------------------------------


def bench_drain(sizes: Sizes) -> Measurement:
    """Queue N messages to a paused worker, then time resume -> wait() == True."""
    n, chunk = sizes.drain_messages, sizes.drain_chunk
    with fresh_runtime("drain"):

        @nw.worker("drain", paused=True)
        def handler(event):
            return event["i"] + 1

        t0 = time.perf_counter()
        for start in range(0, n, chunk):
            nw.emit_many([{"i": i} for i in range(start, min(start + chunk, n))], "drain")
        nw.flush()
        queue_s = time.perf_counter() - t0
        queued = nw.counts("drain")["queued"]
        log(f"drain: queued {queued:,} in {queue_s:.2f} s (emit_many + flush)")

        t0 = time.perf_counter()
        nw.resume("drain")
        finished = nw.wait("drain", timeout=300)
        drain_s = time.perf_counter() - t0
        counts = nw.counts("drain")

    rate = n / drain_s
    target, ok = at_least(rate, 20_000, "msg/s")
    note = f"{n:,} msgs in {drain_s:.2f} s"
    if not finished or counts["done"] != n:
        ok = False
        note += f"; wait()={finished}, counts={counts}"
    return Measurement(
        [
            Figure("drain throughput (conc. 4)", rate, "msg/s", target, ok, note),
            Figure("  queueing (emit_many + flush)", n / queue_s, "msg/s", note=f"{queue_s:.2f} s"),
        ],
        {"queued_before_resume": queued, "counts_after": counts, "drain_s": drain_s},
    )


def bench_emit(sizes: Sizes) -> Measurement:
    """Time a plain loop of single ``emit`` calls to a paused worker, then the flush."""
    n = sizes.emit_count
    with fresh_runtime("emit"):

        @nw.worker("sink", paused=True)
        def sink(event):
            return event

        emit = nw.emit
        t0 = time.perf_counter()
        for i in range(n):
            emit({"i": i}, "sink")
        loop_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        nw.flush()
        flush_s = time.perf_counter() - t0
        queued = nw.counts("sink")["queued"]

    rate = n / loop_s
    target, ok = at_least(rate, 100_000, "emits/s")
    note = f"{n:,} emits in {loop_s:.2f} s"
    if queued != n:
        ok = False
        note += f"; queued={queued:,}"
    return Measurement(
        [
            Figure("emit rate (single emits)", rate, "emits/s", target, ok, note),
            Figure("  nw.flush() after the loop", flush_s * 1000, "ms", note="informational"),
        ],
        {"loop_s": loop_s, "flush_s": flush_s, "queued": queued},
    )


def _latencies(sizes: Sizes, tag: str, cold: bool) -> tuple[list[float], dict]:
    """emit -> handler start, one message at a time, each after the previous run finished.
    ``cold``: run threads end as soon as they are idle, and each emit waits until none is
    left, so every message starts a thread (a worker that had nothing to do for a while)."""
    total = sizes.latency_warmup + sizes.latency_samples
    starts: list[float] = []
    sent: list[float] = []
    with fresh_runtime(tag):
        if cold:
            api.config().idle_thread_s = 0.001

        @nw.worker(tag)
        def lat(event):
            starts.append(time.perf_counter())

        def run_threads() -> int:
            return sum(t.name.startswith(f"nbworkers-run-{tag}-") for t in threading.enumerate())

        emit, wait, clock = nw.emit, nw.wait, time.perf_counter
        for i in range(total):
            if cold:
                deadline = time.monotonic() + 10
                while run_threads() and time.monotonic() < deadline:
                    time.sleep(0.001)
                if run_threads():
                    raise RuntimeError("latency (no thread): a run thread did not end")
            sent.append(clock())
            emit({"i": i}, tag)
            if not wait(tag, timeout=10):
                raise RuntimeError(f"latency: run {i} did not finish within 10 s")
            time.sleep(0.002)
        counts = nw.counts(tag)

    if len(starts) != total:
        raise RuntimeError(f"latency: {len(starts)} handler starts for {total} emits")
    samples = [(s - e) * 1000 for e, s in zip(sent, starts, strict=True)][sizes.latency_warmup :]
    return samples, counts


def _latency_figures(samples: list[float], label: str, sizes: Sizes) -> list[Figure]:
    p50, p99 = percentile(samples, 50), percentile(samples, 99)
    target, ok = at_most(p50, 2, "ms")
    note = f"{len(samples)} samples ({sizes.latency_warmup} warm-up dropped)"
    return [
        Figure(f"latency emit->start p50{label}", p50, "ms", target, ok, note),
        Figure(f"latency emit->start p99{label}", p99, "ms", note=f"max {max(samples):.3f} ms"),
    ]


def bench_latency(sizes: Sizes) -> Measurement:
    """emit -> handler start on an otherwise idle runtime whose run thread is waiting."""
    samples, counts = _latencies(sizes, "lat", cold=False)
    return Measurement(
        _latency_figures(samples, "", sizes), {"samples_ms": samples, "counts": counts}
    )


def bench_cold_latency(sizes: Sizes) -> Measurement:
    """emit -> handler start when the worker holds no thread (its threads ended idle)."""
    samples, counts = _latencies(sizes, "cold", cold=True)
    return Measurement(
        _latency_figures(samples, " (no thread yet)", sizes),
        {"samples_ms": samples, "counts": counts},
    )


def bench_idle_cpu(sizes: Sizes) -> Measurement:
    """Process CPU time while 20 defined, unpaused workers have nothing to do."""
    with fresh_runtime("idle"):
        for k in range(sizes.idle_workers):
            nw.worker(f"idle-{k}")(lambda event: event)
        nw.flush()
        threads = threading.active_count()
        time.sleep(sizes.idle_settle_s)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        time.sleep(sizes.idle_measure_s)
        cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0

    pct = 100 * cpu_s / wall_s
    target, ok = at_most(pct, 1, "% core")
    note = f"{cpu_s * 1000:.1f} ms CPU / {wall_s:.1f} s; {threads} threads"
    return Measurement(
        [Figure(f"idle CPU ({sizes.idle_workers} workers)", pct, "% core", target, ok, note)],
        {"cpu_s": cpu_s, "wall_s": wall_s, "threads": threads},
    )


def bench_memory(sizes: Sizes) -> Measurement:
    """RSS growth and file size over many rounds of emit_many + wait."""
    rounds = max(1, sizes.memory_messages // sizes.memory_round)
    per_round = sizes.memory_round
    history: list[dict] = []
    with fresh_runtime("memory") as path:

        @nw.worker("mem")
        def mem(event):
            return event["i"] + 1

        t_start = time.perf_counter()
        rss_first = size_first = wal_first = 0
        for r in range(rounds):
            base = r * per_round
            nw.emit_many([{"i": base + i} for i in range(per_round)], "mem")
            if not nw.wait("mem", timeout=120):
                raise RuntimeError(f"memory: round {r} did not finish within 120 s")
            if r == 0:
                nw.flush()
                rss_first, size_first, wal_first = rss_bytes(), db_size(path), wal_size(path)
            history.append(
                {"round": r + 1, "rss": rss_bytes(), "db": db_size(path), "wal": wal_size(path)}
            )
        run_s = time.perf_counter() - t_start
        nw.flush()
        rss_end, size_end, wal_end = rss_bytes(), db_size(path), wal_size(path)
        counts = nw.counts("mem")
        api.shutdown()  # checkpoints the WAL into the file; the size after it is informational
        size_closed = db_size(path)

    total = rounds * per_round
    growth = (rss_end - rss_first) / MB
    rss_target, rss_ok = at_most(growth, 50, "MB")
    # DuckDB's WAL grows to its 16 MiB checkpoint threshold and folds back into the file, a
    # sawtooth. Bounded means: the second half of the rounds peaks no higher than the first.
    half = len(history) // 2 or 1
    peak_first_half = max(h["db"] for h in history[:half])
    peak_second_half = max(h["db"] for h in history[half:] or history)
    limit = 1.25 * peak_first_half + 2 * MB
    size_ok = peak_second_half <= limit
    done_ok = counts["done"] == total
    peak_rss = max(h["rss"] for h in history)
    return Measurement(
        [
            Figure(
                "RSS growth (1st round -> end)",
                growth,
                "MB",
                rss_target,
                rss_ok and done_ok,
                f"{rss_first / MB:.1f} -> {rss_end / MB:.1f} MB, peak {peak_rss / MB:.1f} MB"
                + ("" if done_ok else f"; counts={counts}"),
            ),
            Figure(
                "DuckDB file after 1st round",
                size_first / MB,
                "MB",
                note=f"file + .wal (wal {wal_first / MB:.2f} MB)",
            ),
            Figure(
                "DuckDB file peak, 2nd half",
                peak_second_half / MB,
                "MB",
                f"<= {limit / MB:.1f} MB (1st half peak x1.25+2)",
                size_ok,
                f"file + .wal; 1st half peak {peak_first_half / MB:.1f} MB; "
                f"at end {size_end / MB:.1f} MB (wal {wal_end / MB:.2f} MB)",
            ),
            Figure(
                "  DuckDB file after shutdown",
                size_closed / MB,
                "MB",
                note="checkpointed, informational",
            ),
            Figure(
                "  mixed emit_many+process rate",
                total / run_s,
                "msg/s",
                note=f"{total:,} msgs, {rounds} rounds, {run_s:.1f} s",
            ),
        ],
        {"history": history, "counts": counts, "run_s": run_s},
    )


BENCHMARKS: list[tuple[str, Callable[[Sizes], Measurement]]] = [
    ("drain", bench_drain),
    ("emit", bench_emit),
    ("latency", bench_latency),
    ("cold_latency", bench_cold_latency),
    ("idle_cpu", bench_idle_cpu),
    ("memory", bench_memory),
]


# ----- reporting ----------------------------------------------------------------------------


def environment() -> dict:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "duckdb": duckdb.__version__,
        "nbworkers": nw.__version__,
        "nproc": nproc(),
        "platform": platform.platform(),
    }


def format_value(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def print_table(figures: list[Figure]) -> None:
    rows = [("figure", "value", "unit", "target", "result", "note")]
    for f in figures:
        result = "-" if f.passed is None else ("PASS" if f.passed else "MISS")
        rows.append((f.name, format_value(f.value), f.unit, f.target, result, f.note))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for k, row in enumerate(rows):
        cells = [
            row[0].ljust(widths[0]),
            row[1].rjust(widths[1]),
            row[2].ljust(widths[2]),
            row[3].ljust(widths[3]),
            row[4].ljust(widths[4]),
            row[5],
        ]
        print("  ".join(cells).rstrip())
        if k == 0:
            print("  ".join("-" * w for w in [*widths, 4]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="about 10x smaller sizes")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    args = parser.parse_args(argv)

    sizes = Sizes.quick() if args.quick else Sizes()
    env = environment()
    print(
        f"nbworkers {env['nbworkers']} core benchmarks{' (--quick)' if args.quick else ''}: "
        f"Python {env['python']} ({env['implementation']}), duckdb {env['duckdb']}, "
        f"nproc {env['nproc']}, {env['platform']}",
        flush=True,
    )

    figures: list[Figure] = []
    results: dict[str, dict] = {}
    t_all = time.perf_counter()
    for name, bench in BENCHMARKS:
        print(f"[{name}]", flush=True)
        t0 = time.perf_counter()
        try:
            measurement = bench(sizes)
        except Exception as exc:  # noqa: BLE001 - report the failure, run the other benchmarks
            api.shutdown()
            api.use_config(None)
            figure = Figure(name, float("nan"), "", "runs", False, f"{type(exc).__name__}: {exc}")
            measurement = Measurement([figure])
        elapsed = time.perf_counter() - t0
        log(f"{name} took {elapsed:.1f} s")
        figures.extend(measurement.figures)
        results[name] = {
            "seconds": elapsed,
            "figures": [asdict(f) for f in measurement.figures],
            "extra": measurement.extra,
        }
    total_s = time.perf_counter() - t_all

    print()
    print_table(figures)
    judged = [f for f in figures if f.passed is not None]
    missed = [f.name.strip() for f in judged if not f.passed]
    print()
    print(
        f"{len(judged) - len(missed)}/{len(judged)} targets met in {total_s:.0f} s"
        + (f"; MISS: {', '.join(missed)}" if missed else "")
    )

    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(
                {
                    "environment": env,
                    "quick": args.quick,
                    "sizes": asdict(sizes),
                    "total_s": total_s,
                    "results": results,
                },
                f,
                indent=2,
            )
        print(f"results written to {args.json}")
    return 0 if not missed else 1


if __name__ == "__main__":
    sys.exit(main())
