"""What the three Redis peers share: the redis-server, the handler their workers run, and the
peer that drives worker processes.

The benchmark process and the worker processes both import this module; the workers learn
where Redis is and what to record from environment variables set when they are started.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

BENCHMARKS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUEUE = "bench"
THREADS = 4

# Keys the handler writes (the worker processes) and the benchmark reads.
DONE = "bench:done"  # INCR per handled message
END = "bench:end"  # perf_counter when the target-th message was handled
FIRST = "bench:first"  # each worker process's first handler start
STARTS = "bench:starts"  # handler starts, in latency mode
READY = "bench:ready"  # INCR by each worker (process) ready to consume

# Persistence: none by default, the fair setting for a broker benchmark (every peer keeps its
# queue in Redis' memory; nothing waits on the disk). BENCH_REDIS_PERSISTENCE=aof turns on the
# append-only file with fsync every second, Redis' own durable default, to compare.
PERSISTENCE = {
    "none": ["--save", "", "--appendonly", "no"],
    "aof": ["--save", "", "--appendonly", "yes", "--appendfsync", "everysec"],
}


def persistence() -> str:
    mode = os.environ.get("BENCH_REDIS_PERSISTENCE", "none")
    if mode not in PERSISTENCE:
        raise RuntimeError(f"BENCH_REDIS_PERSISTENCE={mode!r}: choose one of {list(PERSISTENCE)}")
    return mode


# ----- in the worker processes ----------------------------------------------------------------

_client = None
_client_pid = 0
_first_pid = 0


def client():
    """This process's Redis client (a fresh one after a fork)."""
    global _client, _client_pid
    if _client is None or _client_pid != os.getpid():
        import redis

        _client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
        _client_pid = os.getpid()
    return _client


def handle(event):
    """The trivial handler (``event["i"] + 1``), plus what the benchmark needs to see it from
    outside: one INCR per message (the drain ends when it reaches the target), the process's
    first start, and in latency mode the start time. ``perf_counter`` is CLOCK_MONOTONIC on
    Linux, the same clock in every process."""
    global _first_pid
    started = time.perf_counter()
    r = client()
    if os.environ.get("BENCH_MODE") == "latency":
        r.rpush(STARTS, repr(started))
    elif _first_pid != os.getpid():
        _first_pid = os.getpid()
        r.rpush(FIRST, repr(started))
    result = event["i"] + 1
    if r.incr(DONE) == int(os.environ.get("BENCH_TARGET", "0")):
        r.set(END, repr(time.perf_counter()))
    return result


def mark_ready() -> None:
    client().incr(READY)


# ----- in the benchmark process ---------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the benchmark dies without stopping it (a
    SIGTERM left Celery in a warm shutdown that never ended, its broker gone)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def spawn(argv: list[str], log_path: str, env: dict | None = None) -> subprocess.Popen:
    """A child in its own process group (``stop`` ends the group: a worker's pool too)."""
    log = open(log_path, "ab")  # the child writes to it; ``stop`` closes it
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    proc.log_file = log  # type: ignore[attr-defined]
    proc.log_path = log_path  # type: ignore[attr-defined]
    return proc


def stop(proc: subprocess.Popen, grace_s: float = 10) -> None:
    """SIGTERM to the child's process group, SIGKILL after ``grace_s``."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    else:
        # The leader is gone; a worker's pool processes may not be.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.log_file.close()  # type: ignore[attr-defined]


def tail(proc: subprocess.Popen, lines: int = 15) -> str:
    with open(proc.log_path, errors="replace") as f:  # type: ignore[attr-defined]
        return "".join(f.readlines()[-lines:])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_server_path() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise RuntimeError(
            "redis-server not found: the Celery, RQ and dramatiq peers need a real one "
            "(Debian/Ubuntu: `sudo apt-get install redis-server`; the benchmark starts and stops "
            "its own, the system service may stay off), or pass --skip redis"
        )
    return path


def redis_server_version() -> str:
    out = subprocess.run(
        [redis_server_path(), "--version"], capture_output=True, text=True, check=True
    ).stdout
    return next((w[2:] for w in out.split() if w.startswith("v=")), out.strip())


class RedisServer:
    """A redis-server on 127.0.0.1, a free port, ``dir`` for its files; ``stop`` always."""

    def __init__(self, dir: str):
        import redis

        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        argv = [redis_server_path(), "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += [*PERSISTENCE[persistence()], "--dir", dir, "--daemonize", "no"]
        self.proc = spawn(argv, os.path.join(dir, "redis.log"))
        self.client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 15
        while True:
            try:
                self.client.ping()
                return
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server did not start:\n{tail(self.proc)}") from None
                time.sleep(0.01)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
        stop(self.proc)


class RedisPeer:
    """A peer whose consumers are worker processes started with the system's own command.

    ``open`` starts a redis-server (and nothing else: the workers are stopped), ``prequeue`` /
    ``emit_loop`` / ``emit_one`` enqueue from this process, ``start`` starts the workers,
    ``drained`` polls the handler's counter. The drain is timed from the first handler start
    in any worker (their start-up, imports and forks, left out) to the last message handled:
    ``drain_s``, which ``peers.measure_drain`` prefers to its own clock.
    """

    name = ""
    setup = ""
    ready_count = 1  # READY increments once every worker is consuming

    def open(self, tmp, handler, threads=THREADS):
        self.tmp, self.threads = tmp, threads
        self.server = RedisServer(tmp)
        self.redis = self.server.client
        self.workers: list[subprocess.Popen] = []
        self.n = 0
        self.drain_s: float | None = None
        self.connect(self.server.url)

    # Per system:
    def connect(self, url: str) -> None:
        """Make the client side (app, queue, broker) for ``url``."""
        raise NotImplementedError

    def worker_argvs(self) -> list[list[str]]:
        """The commands that start the workers (``THREADS`` of them in all)."""
        raise NotImplementedError

    def emit_one(self, value) -> None:
        raise NotImplementedError

    def disconnect(self) -> None:
        pass

    def workers_ready(self) -> int:
        return int(self.redis.get(READY) or 0)

    # Shared:
    def prequeue(self, n):
        self.emit_loop(n)
        self.n = n

    def emit_loop(self, n):
        emit = self.emit_one
        for i in range(n):
            emit({"i": i})

    def start(self, mode: str = "drain"):
        env = {
            **os.environ,
            "BENCH_REDIS_URL": self.server.url,
            "BENCH_MODE": mode,
            "BENCH_TARGET": str(self.n),
            "PYTHONPATH": os.pathsep.join(
                p for p in (BENCHMARKS, os.environ.get("PYTHONPATH")) if p
            ),
        }
        self.t_spawn = time.perf_counter()
        for k, argv in enumerate(self.worker_argvs()):
            log = os.path.join(self.tmp, f"worker-{k}.log")
            self.workers.append(spawn(argv, log, env))

    def check_workers(self) -> None:
        for proc in self.workers:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name}: a worker exited with {proc.returncode}:\n{tail(proc)}"
                )

    def drained(self, done, timeout):
        deadline = time.monotonic() + timeout
        # END is set by the handler that counted the n-th run, just after its INCR.
        while (end := self.redis.get(END)) is None:
            self.check_workers()
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        end = float(end)
        ran = int(self.redis.get(DONE))
        if ran != self.n:
            raise RuntimeError(f"{self.name}: {ran:,} handler runs for {self.n:,} messages")
        first = min(float(t) for t in self.redis.lrange(FIRST, 0, -1))
        self.drain_s = end - first
        self.drain_extra = {
            "startup_s": first - self.t_spawn,  # spawn to the first handler start
            "incr_us": incr_us(self.server.url),  # the handler's bookkeeping, per message
        }
        return True

    def latency_ms(self, count: int, gap_s: float) -> list[float]:
        """Emit -> handler start, one message at a time, with the workers running and idle."""
        self.start("latency")
        deadline = time.monotonic() + 60
        while self.workers_ready() < self.ready_count:
            self.check_workers()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: workers not ready within 60 s")
            time.sleep(0.01)
        time.sleep(0.2)  # as for the in-process peers: every consumer reaches its idle wait
        clock, ms = time.perf_counter, []
        for i in range(count):
            sent = clock()
            self.emit_one({"i": i})
            got = self.redis.blpop([STARTS], timeout=30)
            if got is None:
                self.check_workers()
                raise RuntimeError(f"{self.name}: message {i} did not start within 30 s")
            ms.append((float(got[1]) - sent) * 1000)
            time.sleep(gap_s)
        return ms

    def close(self):
        try:
            for proc in self.workers:
                stop(proc)
            self.disconnect()
        finally:
            self.server.stop()


def incr_us(url: str, calls: int = 2_000) -> float:
    """Microseconds per INCR from one client: what the handler's bookkeeping adds."""
    import redis

    r = redis.Redis.from_url(url)
    t0 = time.perf_counter()
    for _ in range(calls):
        r.incr("bench:probe")
    r.close()
    return (time.perf_counter() - t0) / calls * 1e6


PYTHON = sys.executable
