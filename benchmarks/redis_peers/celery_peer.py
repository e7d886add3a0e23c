"""Celery 5 on Redis: ``celery worker`` with the prefork pool, 4 child processes.

The worker imports this module (``-A redis_peers.celery_peer:app``); ``app`` is made on first
access from ``BENCH_REDIS_URL``, so importing the module costs nothing in the benchmark.
"""

from __future__ import annotations

from .common import PYTHON, QUEUE, RedisPeer, handle, mark_ready


def make_app(url: str):
    from celery import Celery

    app = Celery("bench", broker=url, set_as_current=False)
    app.conf.update(
        task_ignore_result=True,  # no result backend: results off, like huey's
        task_default_queue=QUEUE,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
    )
    app.task(name="bench")(handle)
    return app


def __getattr__(name):
    if name == "app":
        import os

        from celery.signals import worker_ready

        global app
        app = make_app(os.environ["BENCH_REDIS_URL"])
        worker_ready.connect(lambda **_: mark_ready(), weak=False)
        return app
    raise AttributeError(name)


class CeleryPeer(RedisPeer):
    name = "celery"
    setup = "celery worker, prefork pool of 4 processes, Redis broker, no result backend"
    pool = "prefork"

    def connect(self, url):
        self.app = make_app(url)
        self.task = self.app.tasks["bench"]

    def worker_argvs(self):
        argv = [PYTHON, "-m", "celery", "-A", "redis_peers.celery_peer:app", "worker"]
        argv += ["--pool", self.pool, "--concurrency", str(self.threads), "--queues", QUEUE]
        # No gossip, mingle or heartbeat: cluster events this lone worker has no use for
        # (broadcast traffic and start-up time, not throughput).
        argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        return [[*argv, "--loglevel", "WARNING"]]

    def emit_loop(self, n):
        delay = self.task.delay
        for i in range(n):
            delay({"i": i})

    def emit_one(self, value):
        self.task.delay(value)

    def disconnect(self):
        self.app.close()


class CeleryThreadsPeer(CeleryPeer):
    name = "celery-threads"
    setup = "celery worker, threads pool of 4, Redis broker, no result backend"
    pool = "threads"
