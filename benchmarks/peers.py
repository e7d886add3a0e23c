"""nbworkers against its peers on one workload, plus nbworkers' scaling and busy-kernel figures.

Systems (``pip install -e ".[bench]"`` installs the peers; each runs in-process, in a fresh temp
dir, with 4 consumer threads):

- nbworkers      ``Runtime`` on a DuckDB file, traces on, concurrency 4
- huey           huey 3 ``SqliteHuey`` (results off, its fastest setting), ``Consumer`` with 4
                 thread workers (it polls: 0.1 s, x1.15 per empty poll, up to 10 s)
- persist-queue  ``SQLiteAckQueue`` (multithreading=True); 4 threads ``get`` (blocks on its
                 put event), run the handler, ``ack``
- queuack        ``DuckQueue`` (DuckDB) with 4 workers (``start_workers``, default 1 s poll);
                 ``enqueue(..., check_backpressure=False)`` skips its per-enqueue count query
- memory         ``queue.Queue`` of pickles, 4 threads: no durability, the in-memory bound
- memory-1       the same with 1 consumer thread (no lock contention between consumers), shown
                 for reference
- celery, celery-threads, rq, dramatiq: networked, on a redis-server the benchmark starts, with
                 worker processes started by each system's own command (benchmarks/redis_peers/
                 says how; ``--skip redis`` leaves them out)

Workload, one system at a time, in rounds that alternate the order of the systems:

1. drain    N ``{"i": i}`` messages are queued with consumers stopped (batch APIs where the
            system has one), then the time from starting the consumers until the trivial
            handler (``event["i"] + 1``) has run N times; for nbworkers, until ``rt.wait``
            returns and ``rt.flush`` has put the acks on disk (the peers commit each ack before
            the next message). Slow peers drain fewer messages so that a round stays under
            30 s; the table says how many.
2. emit     a plain Python loop of single enqueues of ``{"i": i}``, consumers stopped.
3. latency  consumers running and idle; one message at a time, ``perf_counter`` just before
            the enqueue vs. at handler entry, then 2 ms idle; p50 and p99 over every round's
            samples (warm-up dropped).

Then nbworkers alone:

4. dispatch a handler that sleeps 10 ms, concurrency 8: throughput vs. the ideal 800 msg/s.
5. flat     drain rate (to ``rt.wait`` and ``rt.flush``) with 10,000, 100,000 and 1,000,000
            messages queued, on a ``Runtime`` with ``max_queued=2,000,000`` (the storm guard
            pauses a worker with more than its default 1,000,000 queued). In 3 rounds, each
            draining every size (order alternating; 5 drains of 10,000 a round), after a warm-up
            drain; each drain starts from a stopped (checkpointed) and reopened database. A
            size's figure is its median over all its drains. Also the process's CPU time per
            message (every thread, DuckDB's included) and the voluntary context switches per
            message (threads that blocked: what the machine's other load multiplies).
            Within the largest drain, both over each tenth as the queue shrinks: a scan per
            claim would make the first tenths (queue long) cost more than the last (short).
            ``rt.counts`` cost at each queue length, and the time to open a database holding
            1,000,000 queued messages (``Runtime(path)`` after ``stop``, the slowest of the
            rounds; the full ``gc.collect()`` right after it is timed too, as it traverses what
            was loaded).
6. busy     in-process: the main thread runs a CPU-bound pure-Python loop (what a cell does)
            with no runtime, with an idle runtime (5 workers defined, nothing queued), and
            with a busy one (a backlog draining, and a probe emitting every 20 ms whose
            emit -> start latency is measured).

Run from the repository root:

    python benchmarks/peers.py                        # full run (about 5 minutes)
    python benchmarks/peers.py --quick                # smaller sizes, one round
    python benchmarks/peers.py --json benchmarks/results/peers.json
    python benchmarks/peers.py --quick --systems nbworkers,memory --skip flat
    python benchmarks/peers.py --profile drain        # for py-spy: see benchmarks/profile.py
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import json
import logging
import os
import pickle
import platform
import queue
import signal
import statistics
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

from redis_peers import (
    FULL_SIZES,
    QUICK_SIZES,
    REDIS_PEERS,
    redis_missing,
    redis_targets,
    redis_versions,
)

from nbworkers.engine import Runtime
from nbworkers.engine.settings import Settings
from nbworkers.handlers import from_function

HIGHEST = pickle.HIGHEST_PROTOCOL
WORKER = "bench"
THREADS = 4
LATENCY_GAP_S = 0.002


# ----- the systems ------------------------------------------------------------------------


class Peer:
    """One queue system driven the same way as every other: ``open`` with a handler
    (consumers stopped), ``prequeue`` / ``emit_loop`` / ``emit_one``, ``start`` the
    consumers, ``close``."""

    name = ""
    setup = ""

    def open(self, tmp: str, handler: Callable, threads: int = THREADS) -> None:
        raise NotImplementedError

    def prequeue(self, n: int) -> None:
        """Queue ``{"i": 0}`` .. ``{"i": n-1}``, with the fastest API the system has."""
        self.emit_loop(n)

    def emit_loop(self, n: int) -> None:
        """Single enqueues of ``{"i": i}`` in a plain loop (timed by the caller)."""
        raise NotImplementedError

    def emit_one(self, value) -> None:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def drained(self, done: threading.Event, timeout: float) -> bool:
        """Wait until the prequeued messages have all run (``done`` is set by the handler
        at the last one)."""
        return done.wait(timeout)

    def close(self) -> None:
        raise NotImplementedError


def prequeue(rt: Runtime, n: int) -> None:
    """Queue ``n`` messages to nbworkers' worker with ``emit_many``, 10,000 at a time."""
    for start in range(0, n, 10_000):
        rt.emit_many([{"i": i} for i in range(start, min(start + 10_000, n))], WORKER)
    rt.flush(300)


class NBWorkersPeer(Peer):
    name = "nbworkers"
    setup = "Runtime on a DuckDB file, traces on, concurrency 4"

    def __init__(self, **runtime_options):
        self.options = runtime_options
        self.flush_s: float | None = None

    def open(self, tmp, handler, threads=THREADS):
        self._reopen_args = (os.path.join(tmp, "nbworkers.duckdb"), handler, threads)
        self.rt = Runtime(self._reopen_args[0], Settings(**self.options))
        self.rt.define(WORKER, from_function(WORKER, handler), threads, paused=True)

    def reopen(self):
        """Stop (which checkpoints the file: the WAL is empty) and open the database again."""
        path, handler, threads = self._reopen_args
        self.rt.stop(60)
        gc.collect()
        t0 = time.perf_counter()
        self.rt = Runtime(path, Settings(**self.options))
        self.open_s = time.perf_counter() - t0
        self.rt.define(WORKER, from_function(WORKER, handler), threads, paused=True)

    def prequeue(self, n):
        prequeue(self.rt, n)

    def emit_loop(self, n):
        emit = self.rt.emit
        for i in range(n):
            emit({"i": i}, WORKER)

    def emit_one(self, value):
        self.rt.emit(value, WORKER)

    def start(self):
        self.rt.resume(WORKER)

    def drained(self, done, timeout):
        # Until the acks are on disk, as for the peers, whose acks commit one by one.
        if not self.rt.wait(WORKER, timeout):
            return False
        self.rt.flush(timeout)
        return done.is_set()

    def close(self):
        self.rt.stop()


class HueyPeer(Peer):
    name = "huey"
    setup = "SqliteHuey (results off), Consumer with 4 thread workers"

    def open(self, tmp, handler, threads=THREADS):
        from huey import SqliteHuey

        self.huey = SqliteHuey("bench", filename=os.path.join(tmp, "huey.db"), results=False)
        self.task = self.huey.task(name="bench")(handler)
        self.threads = threads
        self.consumer = None

    def emit_loop(self, n):
        task = self.task
        for i in range(n):
            task({"i": i})

    def emit_one(self, value):
        self.task(value)

    def start(self):
        from huey.consumer import Consumer

        # Consumer.start installs its own signal handlers: put ours back afterwards.
        self._signals = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        if hasattr(signal, "SIGHUP"):
            self._signals[signal.SIGHUP] = signal.getsignal(signal.SIGHUP)
        self.consumer = Consumer(self.huey, workers=self.threads, worker_type="thread")
        self.consumer.start()

    def close(self):
        if self.consumer is not None:
            self.consumer.stop(graceful=True)
            for signum, handler in self._signals.items():
                signal.signal(signum, handler)
        self.huey.storage.close()


class PersistQueuePeer(Peer):
    name = "persist-queue"
    setup = "SQLiteAckQueue, 4 threads get + handler + ack"

    def open(self, tmp, handler, threads=THREADS):
        from persistqueue import SQLiteAckQueue

        self.q = SQLiteAckQueue(os.path.join(tmp, "pq"), multithreading=True, auto_commit=True)
        self.handler = handler
        self.threads_n = threads
        self.stop_flag = threading.Event()
        self.threads: list[threading.Thread] = []

    def emit_loop(self, n):
        put = self.q.put
        for i in range(n):
            put({"i": i})

    def emit_one(self, value):
        self.q.put(value)

    def _consume(self):
        from persistqueue.exceptions import Empty

        q, handler, stop = self.q, self.handler, self.stop_flag
        while not stop.is_set():
            try:
                item = q.get(block=True, timeout=0.2, raw=True)
            except Empty:
                continue
            handler(item["data"])
            q.ack(id=item["pqid"])

    def start(self):
        for k in range(self.threads_n):
            t = threading.Thread(target=self._consume, name=f"pq-{k}", daemon=True)
            t.start()
            self.threads.append(t)

    def close(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(10)


_queuack_handler: Callable | None = None


def _queuack_job(event):
    """queuack pickles the function by reference: a module-level one that calls the
    current handler."""
    return _queuack_handler(event)


class QueuackPeer(Peer):
    name = "queuack"
    setup = "DuckQueue, start_workers(4), check_backpressure=False"

    def open(self, tmp, handler, threads=THREADS):
        global _queuack_handler
        from queuack import DuckQueue

        _queuack_handler = handler
        quiet = logging.getLogger("peers.queuack")
        quiet.setLevel(logging.CRITICAL)
        quiet.propagate = False
        self.q = DuckQueue(os.path.join(tmp, "queuack.duckdb"), workers_num=None, logger=quiet)
        self.threads = threads

    def prequeue(self, n):
        for start in range(0, n, 1_000):
            jobs = [(_queuack_job, ({"i": i},), {}) for i in range(start, min(start + 1_000, n))]
            self.q.enqueue_batch(jobs)

    def emit_loop(self, n):
        enqueue = self.q.enqueue
        for i in range(n):
            enqueue(_queuack_job, args=({"i": i},), check_backpressure=False)

    def emit_one(self, value):
        self.q.enqueue(_queuack_job, args=(value,), check_backpressure=False)

    def start(self):
        self.q.start_workers(num_workers=self.threads, concurrency=1, daemon=True)

    def close(self):
        self.q.stop_workers()
        self.q.close()


class MemoryPeer(Peer):
    name = "memory"
    setup = "queue.Queue of pickles, 4 threads (no durability)"

    def open(self, tmp, handler, threads=THREADS):
        self.q: queue.Queue = queue.Queue()
        self.handler = handler
        self.threads_n = threads
        self.threads: list[threading.Thread] = []

    def emit_loop(self, n):
        put, dumps = self.q.put, pickle.dumps
        for i in range(n):
            put(dumps({"i": i}, HIGHEST))

    def emit_one(self, value):
        self.q.put(pickle.dumps(value, HIGHEST))

    def _consume(self):
        get, loads, handler = self.q.get, pickle.loads, self.handler
        while True:
            data = get()
            if data is None:
                return
            handler(loads(data))

    def start(self):
        for k in range(self.threads_n):
            t = threading.Thread(target=self._consume, name=f"mem-{k}", daemon=True)
            t.start()
            self.threads.append(t)

    def close(self):
        for _ in self.threads:
            self.q.put(None)
        for t in self.threads:
            t.join(10)


class MemoryOneThreadPeer(MemoryPeer):
    name = "memory-1"
    setup = "queue.Queue of pickles, 1 thread (no durability, no lock contention)"

    def open(self, tmp, handler, threads=THREADS):
        super().open(tmp, handler, 1)


PEERS: dict[str, Callable[[], Peer]] = {
    "nbworkers": NBWorkersPeer,
    "huey": HueyPeer,
    "persist-queue": PersistQueuePeer,
    "queuack": QueuackPeer,
    "memory": MemoryPeer,
    "memory-1": MemoryOneThreadPeer,
    **REDIS_PEERS,
}


@dataclass
class Plan:
    """Messages per measurement for one system (slow peers get fewer: a round < 30 s)."""

    drain: int
    emit: int
    latency: int | None = None  # samples per round; None: Sizes.latency_samples


FULL_PLANS = {
    "nbworkers": Plan(100_000, 200_000),
    "huey": Plan(20_000, 20_000),
    "persist-queue": Plan(15_000, 15_000),
    "queuack": Plan(300, 600, latency=50),
    "memory": Plan(100_000, 200_000),
    "memory-1": Plan(100_000, 200_000),
    **{name: Plan(*sizes) for name, sizes in FULL_SIZES.items()},
}
QUICK_PLANS = {
    "nbworkers": Plan(10_000, 20_000),
    "huey": Plan(2_000, 2_000),
    "persist-queue": Plan(2_000, 2_000),
    "queuack": Plan(200, 200),
    "memory": Plan(10_000, 20_000),
    "memory-1": Plan(10_000, 20_000),
    **{name: Plan(*sizes) for name, sizes in QUICK_SIZES.items()},
}


@dataclass
class Sizes:
    rounds: int = 3
    latency_samples: int = 60  # per round
    latency_warmup: int = 5
    dispatch_messages: int = 2_400
    flat_sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    flat_rounds: int = 3
    counts_calls: int = 20_000
    busy_cell_s: float = 1.0  # the CPU loop's length with no runtime
    busy_repeats: int = 5
    busy_backlog: int = 300_000

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            rounds=1,
            latency_samples=50,
            latency_warmup=3,
            dispatch_messages=800,
            flat_sizes=(10_000, 100_000),
            flat_rounds=1,
            counts_calls=5_000,
            busy_cell_s=0.3,
            busy_repeats=3,
            busy_backlog=100_000,
        )


# ----- helpers --------------------------------------------------------------------------------


def load() -> str:
    """The 1, 5 and 15 minute load averages, as ``uptime`` shows them."""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def log(text: str) -> None:
    print(f"  .. [load {load()}] {text}", flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@contextlib.contextmanager
def opened(peer: Peer, handler: Callable, threads: int = THREADS) -> Iterator[Peer]:
    with tempfile.TemporaryDirectory(prefix=f"peers-{peer.name}-") as tmp:
        peer.open(tmp, handler, threads)
        try:
            yield peer
        finally:
            peer.close()
    gc.collect()


def counting_handler(n: int) -> tuple[Callable, threading.Event]:
    """A trivial handler that sets the returned event at its ``n``-th call."""
    done = threading.Event()
    calls = itertools.count(1)

    def handler(event):
        if next(calls) >= n:
            done.set()
        return event["i"] + 1

    return handler, done


def marking_handler(n: int, every: int) -> tuple[Callable, threading.Event, list[tuple]]:
    """``counting_handler`` that also notes ``perf_counter`` and the process's CPU time
    (``process_time``, every thread) at every ``every``-th call."""
    done = threading.Event()
    calls = itertools.count(1)
    marked: list[tuple[float, float]] = []

    def handler(event):
        k = next(calls)
        if k % every == 0:
            marked.append((time.perf_counter(), time.process_time()))
        if k >= n:
            done.set()
        return event["i"] + 1

    return handler, done, marked


# ----- the peer workload ----------------------------------------------------------------------


def measure_drain(make: Callable[[], Peer], n: int) -> dict:
    handler, done = counting_handler(n)
    with opened(make(), handler) as peer:
        t0 = time.perf_counter()
        peer.prequeue(n)
        queue_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        peer.start()
        ok = peer.drained(done, 600)
        drain_s = time.perf_counter() - t0
    if not ok:
        raise RuntimeError(f"{peer.name}: {n:,} messages did not drain within 600 s")
    extra = {}
    if getattr(peer, "drain_s", None):  # worker processes: first handler start to the last
        drain_s, extra = peer.drain_s, peer.drain_extra
    return {"n": n, "rate": n / drain_s, "seconds": drain_s, "queue_s": queue_s, **extra}


def measure_emit(make: Callable[[], Peer], n: int) -> dict:
    handler, _ = counting_handler(n)
    with opened(make(), handler) as peer:
        t0 = time.perf_counter()
        peer.emit_loop(n)
        loop_s = time.perf_counter() - t0
        extra = {}
        if isinstance(peer, NBWorkersPeer):
            t0 = time.perf_counter()
            peer.rt.flush(300)
            extra["flush_s"] = time.perf_counter() - t0
    return {"n": n, "rate": n / loop_s, "seconds": loop_s, **extra}


def measure_latency(make: Callable[[], Peer], samples: int, warmup: int) -> dict:
    started = threading.Event()
    starts: list[float] = []

    def handler(event):
        starts.append(time.perf_counter())
        started.set()
        return event["i"] + 1

    sent: list[float] = []
    with opened(make(), handler) as peer:
        if hasattr(peer, "latency_ms"):  # handlers in worker processes time their own start
            ms = peer.latency_ms(warmup + samples, LATENCY_GAP_S)[warmup:]
            return {"samples_ms": ms, "p50": percentile(ms, 50), "p99": percentile(ms, 99)}
        peer.start()
        time.sleep(0.2)  # let every consumer reach its idle wait
        clock = time.perf_counter
        for i in range(warmup + samples):
            started.clear()
            sent.append(clock())
            peer.emit_one({"i": i})
            if not started.wait(30):
                raise RuntimeError(f"{peer.name}: message {i} did not start within 30 s")
            time.sleep(LATENCY_GAP_S)
    ms = [(s - e) * 1000 for e, s in zip(sent, starts, strict=True)][warmup:]
    return {"samples_ms": ms, "p50": percentile(ms, 50), "p99": percentile(ms, 99)}


def run_peers(names: list[str], plans: dict[str, Plan], sizes: Sizes) -> dict:
    """Every system, one at a time, ``rounds`` times; odd rounds go in reverse order."""
    raw: dict[str, dict[str, list]] = {n: {"drain": [], "emit": [], "latency": []} for n in names}
    for r in range(sizes.rounds):
        order = names if r % 2 == 0 else list(reversed(names))
        print(f"[round {r + 1}/{sizes.rounds}: {', '.join(order)}]", flush=True)
        for name in order:
            make, plan = PEERS[name], plans[name]
            t_round = time.perf_counter()
            load_before = load()
            d = measure_drain(make, plan.drain)
            e = measure_emit(make, plan.emit)
            samples = plan.latency or sizes.latency_samples
            lat = measure_latency(make, samples, sizes.latency_warmup)
            round_s = time.perf_counter() - t_round
            for key, value in (("drain", d), ("emit", e), ("latency", lat)):
                value["load"] = load_before
                raw[name][key].append(value)
            log(
                f"{name}: drain {d['rate']:,.0f}/s ({d['n']:,} in {d['seconds']:.2f} s), "
                f"emit {e['rate']:,.0f}/s ({e['n']:,}), latency p50 {lat['p50']:.3f} ms "
                f"p99 {lat['p99']:.3f} ms; round {round_s:.1f} s"
            )
    summary = {}
    for name in names:
        drains = [d["rate"] for d in raw[name]["drain"]]
        emits = [e["rate"] for e in raw[name]["emit"]]
        pooled = [x for lat in raw[name]["latency"] for x in lat["samples_ms"]]
        summary[name] = {
            "setup": PEERS[name].setup,
            "drain_n": plans[name].drain,
            "emit_n": plans[name].emit,
            "drain": statistics.median(drains),
            "drain_all": drains,
            "emit": statistics.median(emits),
            "emit_all": emits,
            "p50": percentile(pooled, 50),
            "p99": percentile(pooled, 99),
            "latency_samples": len(pooled),
        }
    if "nbworkers" in raw:
        # Ratios to nbworkers within each round (the two ran minutes apart at most), then the
        # median over rounds: steadier on a shared machine than a ratio of medians.
        base = raw["nbworkers"]
        for name in names:
            for key in ("drain", "emit"):
                per_round = [
                    mine["rate"] / theirs["rate"]
                    for mine, theirs in zip(raw[name][key], base[key], strict=True)
                ]
                summary[name][f"{key}_ratio"] = statistics.median(per_round)
                summary[name][f"{key}_ratios"] = per_round
    return {"summary": summary, "rounds": raw}


# ----- nbworkers alone ------------------------------------------------------------------------


def measure_dispatch(sizes: Sizes) -> dict:
    """Concurrency 8, handlers sleeping 10 ms: no dispatcher should stand in the way."""
    n = sizes.dispatch_messages
    done = threading.Event()
    calls = itertools.count(1)

    def handler(event):
        time.sleep(0.010)
        if next(calls) >= n:
            done.set()

    peer = NBWorkersPeer()
    with opened(peer, handler, threads=8):
        peer.prequeue(n)
        t0 = time.perf_counter()
        peer.start()
        ok = peer.drained(done, 120)
        seconds = time.perf_counter() - t0
    if not ok:
        raise RuntimeError("dispatch: did not finish within 120 s")
    return {"n": n, "rate": n / seconds, "seconds": seconds, "ideal": 800.0, "load": load()}


def time_counts(rt: Runtime, calls: int) -> float:
    """Microseconds per ``rt.counts`` call."""
    counts = rt.counts
    t0 = time.perf_counter()
    for _ in range(calls):
        counts(WORKER)
    return (time.perf_counter() - t0) / calls * 1e6


def blocking_events() -> int:
    """Voluntary context switches of every thread of this process so far: each is a thread
    that blocked (on the GIL, a lock, a condition or I/O), the cost that the machine's other
    load multiplies."""
    total = 0
    for task in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError), open(f"/proc/self/task/{task}/status") as f:
            for line in f:
                if line.startswith("voluntary_ctxt_switches"):
                    total += int(line.split()[1])
    return total


def flat_drain(n: int, sizes: Sizes, options: dict) -> dict:
    """One drain of ``n`` queued messages, started from a checkpointed, reopened database."""
    handler, done, marked = marking_handler(n, max(1, n // 10))
    peer = NBWorkersPeer(**options)
    with opened(peer, handler):
        t0 = time.perf_counter()
        peer.prequeue(n)
        queue_s = time.perf_counter() - t0
        # Every size starts alike: a 10,000-message prequeue leaves ~0.7 MB in the WAL, so the
        # 1 MB checkpoint fell inside its short drain now and then (+1.2 s once), while the
        # larger prequeues had just checkpointed.
        peer.reopen()
        t_gc = time.perf_counter()
        gc.collect()  # the first full collection traverses everything that was loaded
        open_gc_s = time.perf_counter() - t_gc
        counts_us = time_counts(peer.rt, sizes.counts_calls)
        switches0 = blocking_events()
        t0, cpu0 = time.perf_counter(), time.process_time()
        peer.start()
        if not peer.drained(done, 600):
            raise RuntimeError(f"flat: {n:,} did not drain")
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        switches = blocking_events() - switches0
        # The last run is the last mark. What follows it, the group commit of the last acks
        # (30 - 60 ms), costs the same whatever the queue's length: it is a fifth of a 10,000
        # drain and nothing of a 1,000,000 one, so the flat-cost rate stops at the last run.
        runs_s = marked[-1][0] - t0
        # Rate and CPU per message over each tenth of the drain, as the queue shrinks.
        edges = [(t0, cpu0), *marked]
        tenth = n // 10
        pairs = list(itertools.pairwise(edges))
        counts_empty_us = time_counts(peer.rt, sizes.counts_calls)
    return {
        "rate": n / runs_s,
        "rate_durable": n / seconds,
        "final_commit_s": seconds - runs_s,
        "cpu_us": cpu / n * 1e6,
        "blocked": switches / n,
        "tenths": [tenth / (b[0] - a[0]) for a, b in pairs],
        "tenths_cpu_us": [(b[1] - a[1]) / tenth * 1e6 for a, b in pairs],
        "counts_us": counts_us,
        "counts_empty_us": counts_empty_us,
        "queue_s": queue_s,
        "open_s": peer.open_s,
        "open_gc_s": open_gc_s,
        "load": load(),
    }


def measure_flat(sizes: Sizes) -> dict:
    """Drain rate and counts() cost at several queue lengths; open time with the largest."""
    options = {"max_queued": 2_000_000}
    order = sorted(sizes.flat_sizes)
    small = order[0]
    # The machine's other load comes and goes over tens of seconds: one 20 s drain of the
    # largest size against medians of short ones compared two different moments (spreads of
    # 1.23 - 1.60 between runs). So every round drains every size, the order alternating, and
    # each size's figure is its median over rounds; short drains repeat within a round.
    repeats = {n: max(1, min(5, 100_000 // n)) for n in order}
    runs: dict[int, list[dict]] = {n: [] for n in order}
    per_round: list[dict[int, float]] = []
    flat_drain(small, sizes, options)  # warm-up: imports, allocator, DuckDB caches
    for r in range(sizes.flat_rounds):
        rates = {}
        for n in order if r % 2 == 0 else reversed(order):
            drains = [flat_drain(n, sizes, options) for _ in range(repeats[n])]
            runs[n] += drains
            rates[n] = statistics.median(d["rate"] for d in drains)
            log(
                f"flat: round {r + 1}, {n:,} queued: {rates[n]:,.0f} msg/s "
                f"(median of {len(drains)}), CPU "
                f"{statistics.median(d['cpu_us'] for d in drains):.1f} us/msg, blocked "
                f"{statistics.median(d['blocked'] for d in drains):.2f} times/msg"
            )
        per_round.append(rates)
    rows = []
    for n in order:
        drains = runs[n]
        last = drains[-1]
        row = {
            "n": n,
            "rate": statistics.median(d["rate"] for d in drains),
            "rates": [d["rate"] for d in drains],
            "rate_durable": statistics.median(d["rate_durable"] for d in drains),
            "final_commit_s": statistics.median(d["final_commit_s"] for d in drains),
            "cpu_us": statistics.median(d["cpu_us"] for d in drains),
            "cpu_us_all": [d["cpu_us"] for d in drains],
            "blocked": statistics.median(d["blocked"] for d in drains),
            "tenths": last["tenths"],
            "tenths_cpu_us": last["tenths_cpu_us"],
            "queue_s": last["queue_s"],
            "counts_us": statistics.median(d["counts_us"] for d in drains),
            "counts_empty_us": last["counts_empty_us"],
        }
        rows.append(row)
        log(
            f"flat: {n:,} queued: drain {row['rate']:,.0f}/s (median of {len(drains)}), "
            f"CPU {row['cpu_us']:.1f} us/msg, counts {row['counts_us']:.2f} us "
            f"({row['counts_empty_us']:.2f} us empty)"
        )
    # Opening the largest database, timed in each of its drains: the slowest counts.
    biggest = runs[order[-1]]
    open_s = max(d["open_s"] for d in biggest)
    gc_s = max(d["open_gc_s"] for d in biggest)
    log(
        f"flat: opening a database with {order[-1]:,} queued took {open_s:.2f} s at most "
        f"(+ GC {gc_s:.2f} s)"
    )
    rates = [r["rate"] for r in rows]
    cpus = [r["cpu_us"] for r in rows]
    tenths = rows[-1]["tenths"]
    tenths_cpu = rows[-1]["tenths_cpu_us"]
    return {
        "rows": rows,
        "tenths_n": rows[-1]["n"],
        "tenths": tenths,
        "tenths_cpu_us": tenths_cpu,
        "spread": max(rates) / min(rates),
        "round_spreads": [max(r.values()) / min(r.values()) for r in per_round],
        "rounds": len(per_round),
        "cpu_spread": max(cpus) / min(cpus),
        # CPU per message with the queue long (first 3 tenths) vs. short (last 3).
        "cpu_long_vs_short": statistics.median(tenths_cpu[:3]) / statistics.median(tenths_cpu[-3:]),
        "counts_spread": max(r["counts_us"] for r in rows) / min(r["counts_us"] for r in rows),
        "open_n": order[-1],
        "open_s": open_s,
        "open_gc_s": gc_s,
        "max_queued": options["max_queued"],
    }


def cpu_loop(n: int) -> int:
    """What a busy cell does: pure-Python arithmetic, holding the GIL."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def timed_cell(n: int) -> float:
    t0 = time.perf_counter()
    cpu_loop(n)
    return time.perf_counter() - t0


def measure_busy(sizes: Sizes) -> dict:
    """A cell's CPU loop on the main thread: alone, beside an idle runtime, beside a busy one."""
    n = 200_000
    while timed_cell(n) < 0.1:
        n *= 2
    n = int(n * sizes.busy_cell_s / timed_cell(n))

    def idle_runtime(tmp):
        rt = Runtime(os.path.join(tmp, "idle.duckdb"))
        for k in range(5):
            rt.define(f"idle-{k}", from_function(f"idle-{k}", lambda e: e), 4)
        rt.flush()
        time.sleep(0.2)
        return rt

    alone, idle = [], []
    with tempfile.TemporaryDirectory(prefix="peers-busy-") as tmp:
        for _ in range(sizes.busy_repeats):
            alone.append(timed_cell(n))
            rt = idle_runtime(tmp)
            idle.append(timed_cell(n))
            rt.stop()
            os.remove(os.path.join(tmp, "idle.duckdb"))
    log(
        f"busy: cell alone {statistics.median(alone):.3f} s, beside an idle runtime "
        f"{statistics.median(idle):.3f} s"
    )

    # A busy runtime: a backlog draining, and a probe emitted every 20 ms (latency measured).
    starts: dict[int, float] = {}
    sent: dict[int, float] = {}
    handler, _ = counting_handler(sizes.busy_backlog)
    with tempfile.TemporaryDirectory(prefix="peers-busy-") as tmp:
        clock = time.perf_counter
        rt = Runtime(os.path.join(tmp, "busy.duckdb"), Settings(max_queued=2_000_000))
        rt.define(WORKER, from_function(WORKER, handler), 4, paused=True)
        rt.define("probe", from_function("probe", lambda e: starts.setdefault(e, clock())), 1)
        prequeue(rt, sizes.busy_backlog)
        stop = threading.Event()

        def prober():
            k = 0
            while not stop.wait(0.020):
                sent[k] = clock()
                rt.emit(k, "probe")
                k += 1

        probe = threading.Thread(target=prober, name="probe", daemon=True)
        done_before = rt.counts(WORKER)["done"]
        rt.resume(WORKER)
        probe.start()
        busy_s = timed_cell(n)
        stop.set()
        probe.join()
        done_during = rt.counts(WORKER)["done"] - done_before
        rt.wait("probe", 10)
        rt.stop(1)
    lat = [(starts[k] - sent[k]) * 1000 for k in sent if k in starts]
    alone_s = statistics.median(alone)
    result = {
        "loop_n": n,
        "alone_s": alone,
        "idle_s": idle,
        "idle_slowdown": statistics.median(idle) / alone_s - 1,
        "busy_s": busy_s,
        "busy_slowdown": busy_s / alone_s - 1,
        "busy_done": done_during,
        "busy_rate": done_during / busy_s,
        "probes_sent": len(sent),
        "probes_started": len(lat),
        "probe_p50": percentile(lat, 50),
        "probe_p99": percentile(lat, 99),
        "load": load(),
    }
    log(
        f"busy: beside a draining runtime the cell took {busy_s:.3f} s, the runtime ran "
        f"{done_during:,} messages ({result['busy_rate']:,.0f}/s), probes p50 "
        f"{result['probe_p50']:.2f} ms p99 {result['probe_p99']:.2f} ms"
    )
    return result


# ----- report -------------------------------------------------------------------------------


def environment(names: list[str]) -> dict:
    import duckdb

    versions = {"duckdb": duckdb.__version__}
    for dist in ("huey", "persist-queue", "queuack", "nbworkers"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions[dist] = version(dist)
    if any(name in REDIS_PEERS for name in names):
        versions.update(redis_versions())
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}"


def fmt_ms(x: float) -> str:
    return f"{x:.3f}" if x < 10 else f"{x:.1f}" if x < 1000 else f"{x:,.0f}"


def fmt_ratio(x: float) -> str:
    return f"{x:.3g}x"


def print_rows(rows: list[list[str]], right: set[int]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for k, row in enumerate(rows):
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())
        if k == 0:
            print("  ".join("-" * w for w in widths))


def peers_table(summary: dict) -> list[list[str]]:
    """Each figure and its ratio to nbworkers' (system / nbworkers)."""
    base = summary.get("nbworkers")
    rows = [
        [
            "system",
            "drain msg/s",
            "vs nbw",
            "emit /s",
            "vs nbw",
            "p50 ms",
            "vs nbw",
            "p99 ms",
            "vs nbw",
            "messages (drain/emit)",
        ]
    ]

    def ratio(name, key):
        if not base:
            return "-"
        value = summary[name].get(f"{key}_ratio") or summary[name][key] / base[key]
        return fmt_ratio(value)

    for name, s in summary.items():
        rows.append(
            [
                name,
                fmt_rate(s["drain"]),
                ratio(name, "drain"),
                fmt_rate(s["emit"]),
                ratio(name, "emit"),
                fmt_ms(s["p50"]),
                ratio(name, "p50"),
                fmt_ms(s["p99"]),
                ratio(name, "p99"),
                f"{s['drain_n']:,} / {s['emit_n']:,}",
            ]
        )
    return rows


@dataclass
class Target:
    name: str
    measured: str
    passed: bool


@dataclass
class Results:
    env: dict
    sizes: dict
    peers: dict | None = None
    dispatch: dict | None = None
    flat: dict | None = None
    busy: dict | None = None
    targets: list[Target] = field(default_factory=list)


def judge(res: Results) -> list[Target]:
    t: list[Target] = []
    s = res.peers["summary"] if res.peers else {}
    nbw = s.get("nbworkers")
    if nbw and "huey" in s:
        r = 1 / s["huey"]["drain_ratio"]
        t.append(Target("drain >= 10x huey's", f"{r:.1f}x", r >= 10))
        r = 1 / s["huey"]["emit_ratio"]
        t.append(Target("emit >= 30x huey's enqueue", f"{r:.1f}x", r >= 30))
    if nbw:
        t.append(Target("latency p50 <= 2 ms", f"{nbw['p50']:.3f} ms", nbw["p50"] <= 2))
        t.append(Target("latency p99 <= 10 ms", f"{nbw['p99']:.3f} ms", nbw["p99"] <= 10))
    t += [Target(*found) for found in redis_targets(s)]
    if nbw and "memory" in s:
        r = s["memory"]["drain_ratio"]
        measured = f"bound/nbw {r:.1f}x"
        if "memory-1" in s:
            measured += f" (1-thread bound/nbw {s['memory-1']['drain_ratio']:.1f}x)"
        t.append(Target("drain within 10x of the in-memory bound (4 threads)", measured, r <= 10))
    if res.dispatch:
        d = res.dispatch
        t.append(
            Target(
                "10 ms handler, concurrency 8: within 10% of 800 msg/s",
                f"{d['rate']:.0f} msg/s",
                d["rate"] >= 720,
            )
        )
    if res.flat:
        f = res.flat
        sizes = "/".join(f"{r['n']:,}" for r in f["rows"])
        t.append(
            Target(
                f"drain rate flat within 25% ({sizes})",
                f"max/min {f['spread']:.2f}",
                f["spread"] <= 1.25,
            )
        )
        t.append(
            Target(
                f"CPU per message flat within 25% ({sizes})",
                f"max/min {f['cpu_spread']:.2f}",
                f["cpu_spread"] <= 1.25,
            )
        )
        t.append(
            Target(
                f"within the drain of {f['tenths_n']:,}: CPU per message with the queue long "
                "(first 3 tenths) within 25% of it short (last 3)",
                f"long/short {f['cpu_long_vs_short']:.2f}",
                0.8 <= f["cpu_long_vs_short"] <= 1.25,
            )
        )
        t.append(
            Target(
                "counts() cost flat with queue length (within 2x)",
                f"max/min {f['counts_spread']:.2f}",
                f["counts_spread"] <= 2,
            )
        )
        t.append(
            Target(
                f"open a database with {f['open_n']:,} queued < 3 s",
                f"{f['open_s']:.2f} s",
                f["open_s"] < 3,
            )
        )
    if res.busy:
        b = res.busy
        t.append(
            Target(
                "busy cell: the runtime still makes progress",
                f"{b['busy_done']:,} msgs, {b['probes_started']}/{b['probes_sent']} probes",
                b["busy_done"] > 0 and b["probes_started"] >= b["probes_sent"] - 1,
            )
        )
        t.append(
            Target(
                "busy cell: <= 20% slower beside an idle runtime",
                f"{b['idle_slowdown'] * 100:+.1f}%",
                b["idle_slowdown"] <= 0.20,
            )
        )
    return t


def report(res: Results) -> None:
    env = res.env
    print()
    print(
        f"{env['date']}, {env['machine']}, {env['cores']} cores, Python {env['python']}, "
        + ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    )
    if res.peers:
        print()
        print_rows(peers_table(res.peers["summary"]), right={1, 2, 3, 4, 5, 6, 7, 8})
        rounds = res.sizes["rounds"]
        print(
            f"(rates: median of {rounds} round(s); 'vs nbw' = system / nbworkers in the same "
            f"round, median over rounds; latency percentiles over every round's samples, "
            f"{res.sizes['latency_samples']} a round (queuack 50). Redis peers: drain from the "
            "first handler start in a worker to the last (worker start-up left out). "
            "Slow peers drain and emit fewer messages, as the last column says, so that a "
            "round stays under 30 s.)"
        )
        loads = [v["load"] for sysr in res.peers["rounds"].values() for v in sysr["drain"]]
        print(f"load average (1/5/15 min) before each system's round: {', '.join(loads)}")
    if res.dispatch:
        d = res.dispatch
        print(
            f"\ndispatch: 10 ms handler, concurrency 8: {d['rate']:.0f} msg/s "
            f"({d['n']:,} in {d['seconds']:.2f} s; ideal 800)"
        )
    if res.flat:
        f = res.flat
        print(f"\nflat cost (Settings(max_queued={f['max_queued']:,})):")
        rows = [
            [
                "queued",
                "drain msg/s",
                "with last commit",
                "CPU us/msg",
                "blocked /msg",
                "counts() us",
                "counts() us, empty",
            ]
        ]
        for r in f["rows"]:
            rows.append(
                [
                    f"{r['n']:,}",
                    fmt_rate(r["rate"]),
                    f"{fmt_rate(r['rate_durable'])} (+{r['final_commit_s'] * 1000:.0f} ms)",
                    f"{r['cpu_us']:.1f}",
                    f"{r['blocked']:.2f}",
                    f"{r['counts_us']:.2f}",
                    f"{r['counts_empty_us']:.2f}",
                ]
            )
        print_rows(rows, right={0, 1, 2, 3, 4, 5, 6})
        print(
            "(drain: until the last run ended; with last commit: until its ack is on disk too, "
            "the same fixed cost at every size)"
        )
        print(
            f"(medians over {f['rounds']} round(s), each draining every size; spread "
            "max/min within each round: " + ", ".join(f"{x:.2f}" for x in f["round_spreads"]) + ")"
        )
        print(
            f"drain of {f['tenths_n']:,}, each tenth as the queue shrinks: msg/s "
            + ", ".join(fmt_rate(x) for x in f["tenths"])
            + "; CPU us/msg "
            + ", ".join(f"{x:.1f}" for x in f["tenths_cpu_us"])
        )
        print(
            f"open a database with {f['open_n']:,} queued: {f['open_s']:.2f} s "
            f"(then a full gc.collect(): {f['open_gc_s']:.2f} s)"
        )
    if res.busy:
        b = res.busy
        print(
            "\nbusy notebook (in-process, the loop on the main thread): cell alone "
            f"{statistics.median(b['alone_s']):.3f} s, beside an idle runtime "
            f"{statistics.median(b['idle_s']):.3f} s ({b['idle_slowdown'] * 100:+.1f}%), "
            f"beside a draining runtime {b['busy_s']:.3f} s ({b['busy_slowdown'] * 100:+.1f}%)"
            f" while it ran {b['busy_done']:,} messages ({b['busy_rate']:,.0f}/s) and "
            f"probes started p50 {b['probe_p50']:.2f} ms, p99 {b['probe_p99']:.2f} ms"
        )
    if res.targets:
        print()
        for target in res.targets:
            print(f"{'PASS' if target.passed else 'FAIL'}  {target.name}: {target.measured}")
        passed = sum(t.passed for t in res.targets)
        print(f"{passed}/{len(res.targets)} targets met")


# ----- profiling ----------------------------------------------------------------------------


def profile(what: str, size: int) -> None:
    """One nbworkers workload, for py-spy to attach to (``benchmarks/profile.py``).

    Sets up (drain: ``size`` messages queued to a paused worker; emit: a paused worker),
    prints ``READY <pid>``, waits for a line on stdin, then runs the workload alone (drain:
    resume until ``rt.wait``; emit: ``size`` single emits, then ``flush``) and prints ``DONE``.
    """
    handler, _ = counting_handler(size)
    with tempfile.TemporaryDirectory(prefix="peers-profile-") as tmp:
        rt = Runtime(os.path.join(tmp, "nbworkers.duckdb"), Settings(max_queued=2 * size))
        rt.define(WORKER, from_function(WORKER, handler), THREADS, paused=True)
        if what == "drain":
            prequeue(rt, size)
        print(f"READY {os.getpid()}", flush=True)
        sys.stdin.readline()
        t0 = time.perf_counter()
        if what == "drain":
            rt.resume(WORKER)
            rt.wait(WORKER, 600)
        else:
            emit = rt.emit
            for i in range(size):
                emit({"i": i}, WORKER)
        loop_s = time.perf_counter() - t0
        rt.flush(600)
        total_s = time.perf_counter() - t0
        print(
            f"DONE {what} {size:,} in {loop_s:.2f} s ({size / loop_s:,.0f}/s), "
            f"{total_s:.2f} s with the flush",
            flush=True,
        )
        rt.stop(60)


# ----- main ---------------------------------------------------------------------------------


SECTIONS = ("peers", "dispatch", "flat", "busy")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one round")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    parser.add_argument(
        "--systems",
        default=",".join(PEERS),
        help=f"comma-separated subset of {', '.join(PEERS)}",
    )
    parser.add_argument("--rounds", type=int, help="rounds of the peer workload")
    parser.add_argument(
        "--skip", default="", help=f"comma-separated sections: {SECTIONS}, or redis (its peers)"
    )
    parser.add_argument("--profile", choices=("drain", "emit"), help="nbworkers only, in a loop")
    parser.add_argument("--size", type=int, default=1_000_000, help="messages for --profile")
    args = parser.parse_args(argv)

    logging.getLogger("huey").setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", module="queuack")
    if args.profile:
        profile(args.profile, args.size)
        return 0

    names = [n.strip() for n in args.systems.split(",") if n.strip()]
    unknown = [n for n in names if n not in PEERS]
    if unknown:
        parser.error(f"unknown systems {unknown}; choose from {list(PEERS)}")
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    sizes = Sizes.quick() if args.quick else Sizes()
    if args.rounds:
        sizes.rounds = args.rounds
    plans = QUICK_PLANS if args.quick else FULL_PLANS

    if "redis" in skip:
        names = [n for n in names if n not in REDIS_PEERS]
    elif any(n in REDIS_PEERS for n in names) and (missing := redis_missing()):
        parser.error(missing)
    res = Results(environment(names), asdict(sizes))
    env = res.env
    print(
        f"peers benchmark{' (--quick)' if args.quick else ''}: {env['machine']}, "
        f"{env['cores']} cores, Python {env['python']}; load {load()}",
        flush=True,
    )
    t_all = time.perf_counter()
    if "peers" not in skip:
        res.peers = run_peers(names, plans, sizes)
    if "nbworkers" in names:
        if "dispatch" not in skip:
            print("[dispatch]", flush=True)
            res.dispatch = measure_dispatch(sizes)
            log(f"dispatch: {res.dispatch['rate']:.0f} msg/s")
        if "flat" not in skip:
            print("[flat]", flush=True)
            res.flat = measure_flat(sizes)
        if "busy" not in skip:
            print("[busy]", flush=True)
            res.busy = measure_busy(sizes)
    res.targets = judge(res)
    report(res)
    print(f"total {time.perf_counter() - t_all:.0f} s")

    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({**asdict(res), "quick": args.quick}, f, indent=1)
        print(f"results written to {args.json}")
    return 0 if all(t.passed for t in res.targets) else 1


if __name__ == "__main__":
    sys.exit(main())
