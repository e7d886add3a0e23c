"""A kernel SIGKILLed at random moments while it drains 20,000 messages.

Every message whose emitting cell had finished is handled at least once in the end, and the
database opens cleanly after every kill. ``NBWORKERS_CRASH_SEED=N`` replays one run's moments.
"""

from __future__ import annotations

import os
import random
import signal
import time
from queue import Empty

import duckdb
import pytest

from tests.kernel import Kernel

TOTAL = 20_000
FIRST_CELL = 10_000  # emitted by one cell that finishes before the first kill
KILLS = 5
PER_KILL = (TOTAL - FIRST_CELL) // KILLS  # emitted by a cell that a kill may interrupt

# Appends each event to a file (one write(2) on an O_APPEND descriptor: whole lines), then
# takes about a millisecond, so that draining takes several seconds and the kills land in it.
HANDLER = """%%worker sink --concurrency 4
import os, time
fd = os.open(OUT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
try:
    os.write(fd, b"%d\\n" % event)
finally:
    os.close(fd)
time.sleep(0.001)
"""


def emit_cell(first: int, count: int, pause_every: int) -> str:
    """A cell emitting ``first`` .. ``first + count - 1`` one by one, as a loop in a notebook
    does (pausing 20 ms every ``pause_every`` messages, so that a kill can land inside it)."""
    return (
        "import time\n"
        f"for i in range({first}, {first + count}):\n"
        "    emit(i, 'sink')\n"
        f"    if i % {pause_every} == 0:\n"
        "        time.sleep(0.02)\n"
    )


def define_worker(k: Kernel, out) -> None:
    k.ok(f"%load_ext nbworkers\nimport nbworkers as nw\nOUT = {str(out)!r}")
    k.ok(HANDLER)


def finished(k: Kernel, msg_id: str) -> bool:
    """Whether the dead kernel had replied "ok" to ``msg_id``: its cell had finished."""
    while True:
        try:
            reply = k.kc.get_shell_msg(timeout=0.5)
        except Empty:
            return False
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply["content"]["status"] == "ok"


def sigkill(k: Kernel) -> None:
    process = k.km.provisioner.process
    os.kill(process.pid, signal.SIGKILL)
    process.wait(30)


def opens_cleanly(db) -> int:
    """Open the file as DuckDB left it after the kill; the number of messages it keeps."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("select count(*) from messages").fetchone()[0]
    finally:
        con.close()


@pytest.mark.timeout(600)
def test_sigkill_at_random_moments_loses_no_message_of_a_finished_cell(tmp_path):
    seed = int(os.environ.get("NBWORKERS_CRASH_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    db, out = tmp_path / "q.duckdb", tmp_path / "handled.txt"
    started = time.monotonic()
    k = Kernel(str(tmp_path), env={"NBWORKERS_DB": str(db)})
    confirmed: set[int] = set()
    moments, kept_at_kills = [], []
    try:
        define_worker(k, out)
        k.ok(emit_cell(0, FIRST_CELL, pause_every=FIRST_CELL), timeout=120)
        confirmed.update(range(FIRST_CELL))
        for kill in range(KILLS):
            first = FIRST_CELL + kill * PER_KILL
            msg_id = k.kc.execute(emit_cell(first, PER_KILL, pause_every=100))
            moment = rng.uniform(0.05, 0.8)
            time.sleep(moment)  # the random moment of the crash is the point of this test
            sigkill(k)
            done = finished(k, msg_id)
            if done:
                confirmed.update(range(first, first + PER_KILL))
            kept = opens_cleanly(db)
            kept_at_kills.append(kept)
            handled = len(out.read_bytes().splitlines()) if out.exists() else 0
            moments.append(f"{moment:.2f}s (cell finished: {done}, file keeps {kept})")
            print(f"kill {kill + 1} after {moments[-1]}; {handled} lines handled so far")
            k.km.restart_kernel(now=True)
            k.kc.wait_for_ready(timeout=60)
            define_worker(k, out)  # the worker is defined again, and delivery resumes
        k.ok("assert nw.wait('sink', timeout=240), nw.counts('sink')", timeout=300)
        assert k.eval("nw.counts('sink')['queued']") == 0
    finally:
        k.shutdown()
    lines = [int(line) for line in out.read_bytes().splitlines()]
    handled = set(lines)
    duplicates = len(lines) - len(handled)
    elapsed = time.monotonic() - started
    print(
        f"seed {seed}: kills after {moments}; {len(confirmed)} messages from finished cells, "
        f"{len(handled)} handled, {duplicates} duplicates, {elapsed:.1f} s"
    )
    # Every kill hit a kernel with messages still to drain (else it proved nothing)
    assert min(kept_at_kills) > 0, f"a kill found nothing queued: {moments} (seed {seed})"
    assert not confirmed - handled, f"lost {len(confirmed - handled)} (seed {seed})"
    assert handled <= set(range(TOTAL))
    assert opens_cleanly(db) == 0
    assert not [p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name]
