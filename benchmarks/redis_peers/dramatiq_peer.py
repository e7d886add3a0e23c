"""dramatiq on Redis: the ``dramatiq`` command with 2 processes of 2 worker threads.

The worker sets its broker up with ``redis_peers.dramatiq_peer:setup_broker`` (from
``BENCH_REDIS_URL``); the benchmark makes its own broker for each fresh redis-server.
"""

from __future__ import annotations

from .common import PYTHON, QUEUE, RedisPeer, handle, mark_ready

PROCESSES = 2


def make_broker(url: str, ready: bool = False):
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker
    from dramatiq.middleware import Middleware

    broker = RedisBroker(url=url)
    if ready:

        class Ready(Middleware):
            def after_worker_boot(self, broker, worker):
                mark_ready()

        broker.add_middleware(Ready())
    actor = dramatiq.actor(handle, broker=broker, actor_name="bench", queue_name=QUEUE)
    return broker, actor


def setup_broker():
    import os

    import dramatiq

    broker, _ = make_broker(os.environ["BENCH_REDIS_URL"], ready=True)
    dramatiq.set_broker(broker)
    return broker


class DramatiqPeer(RedisPeer):
    name = "dramatiq"
    setup = "dramatiq CLI, 2 processes x 2 threads, RedisBroker, default middleware"
    ready_count = PROCESSES

    def connect(self, url):
        self.broker, self.actor = make_broker(url)

    def worker_argvs(self):
        threads = max(1, self.threads // PROCESSES)
        argv = [PYTHON, "-m", "dramatiq", "redis_peers.dramatiq_peer:setup_broker"]
        argv += ["--processes", str(PROCESSES), "--threads", str(threads), "--queues", QUEUE]
        return [argv]

    def emit_loop(self, n):
        send = self.actor.send
        for i in range(n):
            send({"i": i})

    def emit_one(self, value):
        self.actor.send(value)

    def disconnect(self):
        self.broker.close()
