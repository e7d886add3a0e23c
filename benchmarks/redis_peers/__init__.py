"""The networked peers: Celery, RQ and dramatiq, each on a real redis-server.

``benchmarks/peers.py`` runs them beside the in-process peers with the same workload; this
package holds what differs. Each measurement (drain, emit, latency) gets a fresh
``redis-server`` from the system's package, started on 127.0.0.1 on a free port in the
measurement's temp dir with ``--save '' --appendonly no`` (no persistence: every peer's queue
lives in Redis' memory, nothing waits on a disk; ``BENCH_REDIS_PERSISTENCE=aof`` turns on the
append-only file with ``appendfsync everysec`` instead), and stopped after, on failure and
Ctrl-C too (the children also get SIGTERM if the benchmark itself dies).

The workers are what each system's users run, started by the benchmark as subprocesses with
the system's own command, 4 consumers in all:

- celery          ``celery worker --pool prefork --concurrency 4`` (the default pool, which
                  Celery's docs recommend for most uses; ``celery-threads`` runs ``--pool
                  threads``, which skips the pipe to the children), no result backend,
                  ``--without-gossip --without-mingle --without-heartbeat``, default prefetch
                  (4 per process) and acks early (before the task runs)
- rq              4 ``rq worker`` processes of ``SimpleWorker`` (no fork per job: what RQ's
                  performance notes advise for jobs of milliseconds), ``result_ttl=0``
- dramatiq        ``dramatiq --processes 2 --threads 2`` (its default is one process per core
                  with 8 threads; 2 x 2 keeps 4 consumers), ``RedisBroker``, default middleware

The handler is the same trivial one (``event["i"] + 1``) plus one Redis INCR a message so the
benchmark sees completions from outside (``common.handle``); the drain is timed from the
first handler start in any worker to the handler of the last message (worker start-up left
out, so the clock starts with the workers able to consume, as for the in-process peers),
latency from just before the enqueue to the handler's start time pushed to a Redis list.
"""

from __future__ import annotations

import contextlib
from importlib.metadata import version

from .celery_peer import CeleryPeer, CeleryThreadsPeer
from .common import persistence, redis_server_path, redis_server_version
from .dramatiq_peer import DramatiqPeer
from .rq_peer import RQPeer

REDIS_PEERS = {
    "celery": CeleryPeer,
    "celery-threads": CeleryThreadsPeer,
    "rq": RQPeer,
    "dramatiq": DramatiqPeer,
}

# (drain, emit) messages: enough for a few seconds each, a round of a system under ~30 s.
FULL_SIZES = {
    "celery": (10_000, 10_000),
    "celery-threads": (10_000, 10_000),
    "rq": (5_000, 10_000),
    "dramatiq": (10_000, 10_000),
}
QUICK_SIZES = {name: (1_000, 1_000) for name in REDIS_PEERS}


def redis_versions() -> dict:
    found = {}
    for dist in ("celery", "kombu", "rq", "dramatiq", "redis"):
        with contextlib.suppress(Exception):
            found[dist] = version(dist)
    with contextlib.suppress(Exception):
        found["redis-server"] = f"{redis_server_version()} (persistence: {persistence()})"
    return found


def redis_targets(summary: dict) -> list[tuple[str, str, bool]]:
    """Issue #20's goal: nbworkers at least 20x each networked peer on drain and emit."""
    found = []
    for name in REDIS_PEERS:
        if name in summary and "nbworkers" in summary:
            for key in ("drain", "emit"):
                r = 1 / summary[name][f"{key}_ratio"]
                found.append((f"{key} >= 20x {name}'s", f"{r:.1f}x", r >= 20))
    return found


def redis_missing() -> str | None:
    """Why the Redis peers cannot run here (redis-server not installed), or None."""
    try:
        redis_server_path()
    except RuntimeError as e:
        return str(e)
    return None
