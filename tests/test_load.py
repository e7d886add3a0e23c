"""Load: eight threads emitting at once while handlers fan out, some failing on purpose.

Runs for ``NBWORKERS_LOAD_S`` seconds (60 by default, the length the issue asks for; set it
lower for a quick look): no deadlock, and the counts add up exactly, in memory and on disk.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter

import pytest

from nbworkers.engine import Runtime
from nbworkers.handlers import from_function

LOAD_S = float(os.environ.get("NBWORKERS_LOAD_S", "60"))
EMITTERS = 8
BACKLOG = 5_000  # emitters hold back while this many messages wait, so memory stays flat
NAMES = ("fan", "leaf")


def fan_fails(i: int) -> bool:
    return i % 7 == 0


def leaf_fails(i: int, j: int) -> bool:
    return (i + j) % 11 == 0  # on every attempt: these become dead letters


def leaf_flaky(i: int, j: int) -> bool:
    return (i + j) % 13 == 0  # on the first attempt only: done on the retry


def add_up(rt: Runtime, emitted: Counter) -> dict:
    """Check emitted = done + failed + queued + running and dead == failed for each worker."""
    counts = {name: rt.counts(name) for name in NAMES}
    for name, c in counts.items():
        assert emitted[name] == c["done"] + c["failed"] + c["queued"] + c["running"], (name, c)
        assert c["dead"] == c["failed"], (name, c)
    return counts


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.mark.timeout(LOAD_S + 300)  # the waits below add up to at most 300 s
def test_eight_emitting_threads_and_fan_out_keep_exact_counts(tmp_path):
    path = str(tmp_path / "q.duckdb")
    rt = Runtime(path)
    emitted: Counter = Counter()
    counted = threading.Lock()
    errors: list[BaseException] = []

    def count(name: str, n: int = 1) -> None:
        with counted:
            emitted[name] += n

    def fan(event):
        t, i = event
        for j in range(2):
            rt.emit((t, i, j), "leaf")
            count("leaf")
        if fan_fails(i):
            raise ValueError(f"fan fails on purpose for {i}")

    def leaf(event, message):
        _, i, j = event
        if leaf_fails(i, j) or (leaf_flaky(i, j) and message.attempt == 1):
            raise ValueError(f"leaf fails on purpose for {event}")

    rt.define("fan", from_function("fan", fan), concurrency=4)
    rt.define("leaf", from_function("leaf", leaf), concurrency=4, policy=_retry_once())
    # A panel's view of it all: snapshots read on the notifier thread while everything runs
    looked = Counter()
    rt.add_listener(lambda names: [looked.update([n]) or rt.snapshot(n) for n in names])

    stop = threading.Event()

    def emitter(t: int) -> None:
        try:
            i = 0
            for step in range(10**9):
                if stop.is_set():
                    return
                if sum(rt.counts(n)["queued"] for n in NAMES) > BACKLOG:
                    stop.wait(0.002)
                    continue
                if step % 10 == 0:
                    rt.emit_many([(t, i + k) for k in range(10)], "fan")
                    count("fan", 10)
                    i += 10
                elif step % 10 == 5:
                    rt.emit((t, i, 0), "leaf")
                    count("leaf")
                    i += 1
                else:
                    rt.emit((t, i), "fan")
                    count("fan")
                    i += 1
                if step % 500 == 0:
                    rt.flush()
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    threads = [threading.Thread(target=emitter, args=(t,)) for t in range(EMITTERS)]
    started = time.monotonic()
    try:
        for thread in threads:
            thread.start()
        while time.monotonic() - started < LOAD_S and not errors:
            stop.wait(0.5)
        # Pausing both workers under load lets their queues fill up to the backlog
        for name in NAMES:
            rt.pause(name)
        wait_until(
            lambda: sum(rt.counts(n)["queued"] for n in NAMES) > BACKLOG, 30, "queues to fill"
        )
        stop.set()
        for thread in threads:
            thread.join(30)
        assert not [t for t in threads if t.is_alive()], "an emitting thread is stuck"
        assert not errors, errors
        # Nothing running, nothing emitting: the counts add up with messages still queued
        wait_until(lambda: rt.counts("fan")["running"] == 0, 30, "fan runs to end")
        wait_until(lambda: rt.counts("leaf")["running"] == 0, 30, "leaf runs to end")
        paused = add_up(rt, emitted)
        for name in NAMES:
            rt.resume(name)
        assert rt.wait(timeout=120), {n: rt.counts(n) for n in NAMES}
        final = add_up(rt, emitted)
        rt.flush()
    finally:
        stop.set()
        rt.stop()
    elapsed = time.monotonic() - started
    total = sum(emitted.values())
    print(
        f"{LOAD_S:g} s of load: {total:,} messages ({dict(emitted)}) in {elapsed:.1f} s; "
        f"queued when paused {[paused[n]['queued'] for n in NAMES]}; final {final}; "
        f"panel looked {dict(looked)} times"
    )
    assert sum(paused[n]["queued"] for n in NAMES) > BACKLOG
    assert final["fan"]["queued"] == final["leaf"]["queued"] == 0
    assert all(final[n]["done"] and final[n]["failed"] for n in NAMES)
    assert final["leaf"]["retried"] > 0
    # The file agrees with memory
    again = Runtime(path)
    try:
        for name in NAMES:
            assert again.counts(name) == final[name]
    finally:
        again.stop()


def _retry_once():
    from nbworkers.engine.policy import Policy

    return Policy(retries=1, backoff_s=0)
