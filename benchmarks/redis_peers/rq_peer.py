"""RQ on Redis: 4 ``rq worker`` processes of the ``SimpleWorker`` class (no fork per job).

RQ's notes on performance: the default ``Worker`` forks a work horse per job (a sandbox);
``SimpleWorker`` runs the job in the worker process, about 6x faster, and is what they advise
for jobs of a few milliseconds, which these are.
"""

from __future__ import annotations

from .common import PYTHON, QUEUE, RedisPeer, handle


def job(event):
    return handle(event)


class RQPeer(RedisPeer):
    name = "rq"
    setup = "4 rq worker processes, SimpleWorker (no fork per job), result_ttl=0"

    def connect(self, url):
        from rq import Queue

        self.queue = Queue(QUEUE, connection=self.redis)

    def worker_argvs(self):
        argv = [PYTHON, "-m", "rq.cli", "worker", "--url", self.server.url, "--quiet"]
        argv += ["--worker-class", "rq.worker.SimpleWorker", QUEUE]
        return [argv for _ in range(self.threads)]

    def workers_ready(self):
        from rq import Worker

        return Worker.count(connection=self.redis)

    @property
    def ready_count(self):
        return self.threads

    def prequeue(self, n):
        # RQ's batch API: enqueue_many in one pipeline, 1,000 at a time.
        prepare = self.queue.prepare_data
        for start in range(0, n, 1_000):
            stop = min(start + 1_000, n)
            datas = [prepare(job, ({"i": i},), result_ttl=0) for i in range(start, stop)]
            self.queue.enqueue_many(datas)
        self.n = n

    def emit_one(self, value):
        # result_ttl=0: the result is not kept (huey's results off).
        self.queue.enqueue(job, value, result_ttl=0)

    def emit_loop(self, n):
        enqueue = self.queue.enqueue
        for i in range(n):
            enqueue(job, {"i": i}, result_ttl=0)
