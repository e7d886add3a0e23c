"""A stateful property test: random sequences of what users and handlers do to the queues.

Hypothesis drives a ``Runtime`` through emits (plain, many, delayed, keyed), runs that succeed,
fail, retry, block and time out, pause, resume, cancel, purge, requeue, discard,
set_concurrency, flush, a clean stop and reopen, and a crash (the files copied as they are,
the runtime never stopped) and reopen. A model says what must be true; after every step the
test waits (bounded) for the runtime to settle into the state the model predicts, compares
counts, waiting messages and dead letters exactly, then copies the database files as a crash
would leave them and checks that the copy, reopened, holds exactly that state.

Runs are deterministic: each event carries a plan (an outcome per attempt: "ok", "fail" or
"block"); a blocked run waits on a gate until a step releases it, with "ok" or "fail", or the
test clock passes its time limit. Retry backoff has no jitter here (``LowJitter``).

The default suite runs a fixed, small set of sequences (derandomized, so a failure replays);
``NBWORKERS_STATEFUL_EXAMPLES=N`` runs N random ones instead (a failure prints the
``@reproduce_failure`` line that replays it).
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from nbworkers.engine import Runtime
from nbworkers.engine.policy import Policy
from nbworkers.engine.settings import Settings
from nbworkers.errors import NBWorkersError
from nbworkers.handlers import from_function
from nbworkers.store import DuckDBStore, Loaded
from nbworkers.store import dead as dead_rows
from nbworkers.store.schema import read
from tests.conftest import Clock

EXAMPLES = int(os.environ.get("NBWORKERS_STATEFUL_EXAMPLES") or 0)
REOPEN_EVERY = 4  # steps between checks of a reopened copy of the files
START = 1_000_000.0  # the test clock at the start of every sequence

# Three defined workers and a name no worker handles. "a" retries at once and times out after
# 10 s of the test clock; "b" waits 2 s, then 4 s before its retries; "c" never retries.
WORKERS = {
    "a": (1, Policy(retries=1, backoff_s=0, timeout_s=10)),
    "b": (1, Policy(retries=2, backoff_s=4, timeout_s=30)),
    "c": (2, Policy()),
}
NAMES = ("a", "b", "c", "u")
KEYS = ("k1", "k2")

OUTCOMES = ["ok", "fail", "fail", "block", "block"]  # more failures and blocks than successes
plans = st.lists(st.sampled_from(OUTCOMES), min_size=1, max_size=3).map(tuple)
names = st.sampled_from(NAMES)


class LowJitter(random.Random):
    """Backoff without jitter: every retry waits half its full backoff."""

    def uniform(self, a, b):
        return a


class Gates:
    """Where blocked runs wait: keyed (generation of the runtime, message seq, attempt)."""

    def __init__(self):
        self.cond = threading.Condition()
        self.outcome: dict[tuple, str | None] = {}  # None while the run waits
        self.dead_generations: set[int] = set()
        self.problems: list[str] = []

    def block(self, gen: int, seq: int, attempt: int) -> str:
        key = (gen, seq, attempt)
        with self.cond:
            if gen in self.dead_generations:
                return "ok"  # a crashed runtime's runs: no one will release them
            if key in self.outcome:
                self.problems.append(f"attempt {attempt} of m{seq} ran twice")
                return "ok"
            self.outcome[key] = None
            self.cond.notify_all()
            if not self.cond.wait_for(lambda: self.outcome[key] is not None, 60):
                self.problems.append(f"m{seq} attempt {attempt} was never released")
            return self.outcome.pop(key) or "ok"

    def blocked(self, gen: int) -> set[tuple[int, int]]:
        with self.cond:
            return {(s, a) for (g, s, a), o in self.outcome.items() if g == gen and o is None}

    def release(self, gen: int, seq: int, attempt: int, outcome: str) -> None:
        with self.cond:
            assert self.outcome.get((gen, seq, attempt), "missing") is None, (seq, attempt)
            self.outcome[(gen, seq, attempt)] = outcome
            self.cond.notify_all()

    def kill(self, gen: int) -> None:
        """Release every run of generation ``gen``; its later runs do not block."""
        with self.cond:
            self.dead_generations.add(gen)
            for key, outcome in self.outcome.items():
                if key[0] == gen and outcome is None:
                    self.outcome[key] = "ok"
            self.cond.notify_all()


@dataclass(eq=False)
class Msg:
    seq: int
    worker: str
    plan: tuple
    attempt: int = 1
    key: str | None = None
    due: float | None = None  # while delayed
    deadline: float | None = None  # while running, if its worker has a time limit
    started: bool = False
    index: int | None = None  # the run thread running it (observed)

    @property
    def id(self) -> str:
        return f"m{self.seq}"

    def outcome(self) -> str:
        return self.plan[min(self.attempt, len(self.plan)) - 1]


@dataclass
class Model:
    """What one name's queue must hold."""

    name: str
    policy: Policy | None = None  # None: no worker handles this name
    concurrency: int = 0
    paused: bool = False
    queue: list[Msg] = field(default_factory=list)  # ready to run, in order
    delayed: list[Msg] = field(default_factory=list)
    running: list[Msg] = field(default_factory=list)  # in the order they started
    dead: list[Msg] = field(default_factory=list)  # in the runtime's order (observed)
    keys: dict[str, Msg] = field(default_factory=dict)
    done: int = 0
    failed: int = 0
    retried: int = 0
    # Every message ever made for this name, and where each went for good
    issued: set[int] = field(default_factory=set)
    finished: set[int] = field(default_factory=set)  # done
    died: set[int] = field(default_factory=set)  # became a dead letter
    removed: set[int] = field(default_factory=set)  # cancelled, purged, requeued or discarded

    def waiting(self) -> list[Msg]:
        return self.queue + sorted(self.delayed, key=lambda m: (m.due, m.seq))

    def live(self) -> list[Msg]:
        return self.waiting() + self.running

    def free_slots(self) -> int:
        busy = sum(1 for m in self.running if m.index is None or m.index < self.concurrency)
        return self.concurrency - busy

    def forget_key(self, m: Msg) -> None:
        if m.key is not None and self.keys.get(m.key) is m:
            del self.keys[m.key]


def _wait_until(what: str, differences, settled=lambda: False, timeout: float = 10.0) -> None:
    """Poll ``differences`` (a list of what differs) until it returns none; fail when they
    persist while ``settled()`` has said for 50 ms that nothing more will happen, or after
    ``timeout``."""
    start = time.monotonic()
    settled_since = None
    while True:
        diffs = differences()
        if not diffs:
            return
        now = time.monotonic()
        if not settled():
            settled_since = None
        elif settled_since is None:
            settled_since = now
        if (settled_since is not None and now - settled_since > 0.05) or now - start > timeout:
            raise AssertionError(f"{what}: " + "; ".join(diffs))
        time.sleep(0.001)


class QueueMachine(RuleBasedStateMachine):
    window = Settings.queue_window  # each worker's ready messages in memory (paging.py)

    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="nbworkers-stateful-")
        self.path = os.path.join(self.dir, "q0.duckdb")
        self.clock = Clock(START)
        self.gates = Gates()
        self.gen = 0
        self.zombies: list[tuple[int, int, int]] = []  # timed-out runs still blocked
        self.models = {name: Model(name) for name in NAMES}
        for name, (concurrency, policy) in WORKERS.items():
            self.models[name].policy = policy
            self.models[name].concurrency = concurrency
        self.ids: list[str] = []  # every id emit returned, for cancel
        self.checks = 0
        self.rt = self._open()

    # ----- the runtime ----------------------------------------------------------------------

    def _open(self) -> Runtime:
        settings = Settings(flush_interval_s=0.001, queue_window=self.window)
        rt = Runtime(self.path, settings, clock=self.clock, rng=LowJitter())
        for name, (concurrency, policy) in WORKERS.items():
            rt.define(
                name, from_function(name, self._handler(self.gen)), concurrency, policy=policy
            )
        return rt

    def _handler(self, gen: int):
        gates = self.gates

        def handler(event, message):
            plan = event["plan"]
            outcome = plan[min(message.attempt, len(plan)) - 1]
            if outcome == "block":
                outcome = gates.block(gen, message.seq, message.attempt)
            if outcome == "fail":
                raise ValueError(f"planned failure of {message.id}, attempt {message.attempt}")

        return handler

    def teardown(self):
        try:
            self.gates.kill(self.gen)
            self.rt.stop(timeout_s=10)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    # ----- the model's rules for runs ---------------------------------------------------------

    @property
    def now(self) -> float:
        return self.clock.now

    def _succeed(self, w: Model, m: Msg) -> None:
        w.done += 1
        w.forget_key(m)
        w.finished.add(m.seq)
        m.started = False

    def _fail(self, w: Model, m: Msg) -> None:
        """A run of ``m`` raised or timed out: retried (now or after its backoff) or dead."""
        m.started = False
        m.deadline = None
        if m.attempt <= w.policy.retries:
            w.retried += 1
            m.attempt += 1
            wait_s = w.policy.retry_delay_s(m.attempt - 1, LowJitter())
            if wait_s > 0:
                m.due = self.now + wait_s
                w.delayed.append(m)
            else:
                w.queue.insert(0, m)  # "retry now": before newer messages
        else:
            w.failed += 1
            w.forget_key(m)
            w.died.add(m.seq)
            w.dead.append(m)

    def _fill(self, w: Model) -> None:
        """Free run threads take ready messages, oldest first, until they block or run out."""
        if w.policy is None or w.paused:
            return
        while w.queue and w.free_slots() > 0:
            m = w.queue.pop(0)
            outcome = m.outcome()
            if outcome == "block":
                m.started, m.index = True, None
                m.deadline = None
                if w.policy.timeout_s is not None:
                    m.deadline = self.now + w.policy.timeout_s
                w.running.append(m)
            elif outcome == "ok":
                self._succeed(w, m)
            else:
                self._fail(w, m)  # a retry now is at the front: taken next

    def _enqueue(self, w: Model, new_id: str, plan, key=None, due=None) -> Msg:
        assert new_id not in self.ids, f"{new_id} was given out twice"
        self.ids.append(new_id)
        m = Msg(int(new_id[1:]), w.name, plan, key=key)
        w.issued.add(m.seq)
        if key is not None:
            w.keys[key] = m
        if due is not None and due > self.now:
            m.due = due
            w.delayed.append(m)
        else:
            w.queue.append(m)
        return m

    # ----- rules: emitting ------------------------------------------------------------------

    # Emits are several rules, so that sequences emit often (rules are drawn evenly).

    def _emit(self, name, plan, key=None, delay=None) -> None:
        w = self.models[name]
        got = self.rt.emit({"plan": plan}, name, key=key, delay=delay)
        if key is not None and key in w.keys:
            assert got == w.keys[key].id, f"key {key!r} is held by {w.keys[key].id}, got {got}"
        else:
            due = self.now + delay if delay else None
            self._enqueue(w, got, plan, key, due)
        self._fill(w)

    @initialize(first=st.lists(st.tuples(names, plans), max_size=4))
    def emit_first(self, first):
        for name, plan in first:
            self._emit(name, plan)

    @rule(name=names, plan=plans)
    def emit(self, name, plan):
        self._emit(name, plan)

    @rule(name=names, plan=plans)
    def emit_again(self, name, plan):
        self._emit(name, plan)

    @rule(name=names, plan=plans, key=st.sampled_from(KEYS))
    def emit_keyed(self, name, plan, key):
        self._emit(name, plan, key=key)

    @rule(
        name=names,
        plan=plans,
        delay=st.sampled_from([0, 1, 3, 8]),
        key=st.none() | st.sampled_from(KEYS),
    )
    def emit_delayed(self, name, plan, delay, key):
        self._emit(name, plan, key=key, delay=delay)

    @rule(name=names, plan_list=st.lists(plans, max_size=4))
    def emit_many(self, name, plan_list):
        w = self.models[name]
        got = self.rt.emit_many([{"plan": p} for p in plan_list], name)
        assert len(got) == len(plan_list)
        for new_id, plan in zip(got, plan_list, strict=True):
            self._enqueue(w, new_id, plan)
        self._fill(w)

    # ----- rules: runs ----------------------------------------------------------------------

    def _any_running(self) -> bool:
        return any(w.running for w in self.models.values())

    def _release(self, data, outcome: str) -> None:
        running = [m for w in self.models.values() for m in w.running]
        m = data.draw(st.sampled_from(running), label="run")
        w = self.models[m.worker]
        attempt = m.attempt
        w.running.remove(m)
        if outcome == "ok":
            self._succeed(w, m)
        else:
            self._fail(w, m)
        self._fill(w)
        self.gates.release(self.gen, m.seq, attempt, outcome)

    @precondition(_any_running)
    @rule(data=st.data())
    def release_ok(self, data):
        """A blocked run returns."""
        self._release(data, "ok")

    @precondition(_any_running)
    @rule(data=st.data())
    def release_fail(self, data):
        """A blocked run raises."""
        self._release(data, "fail")

    @rule(seconds=st.sampled_from([1, 2, 4, 10, 30]))
    def advance_time(self, seconds):
        """The test clock moves on: delayed messages and retries come due, runs time out."""
        self.clock.now += seconds
        for w in self.models.values():
            due = sorted((m for m in w.delayed if m.due <= self.now), key=lambda m: (m.due, m.seq))
            for m in due:
                w.delayed.remove(m)
                m.due = None
                w.queue.append(m)
            for m in list(w.running):
                if m.deadline is not None and m.deadline <= self.now:
                    w.running.remove(m)
                    self.zombies.append((self.gen, m.seq, m.attempt))
                    self._fail(w, m)
            self._fill(w)
        self.rt.run_timers(self.now)
        # A timed-out run that ends later changes nothing (checked after this step)
        for gen, seq, attempt in self.zombies:
            if gen == self.gen:
                _wait_until(
                    "a timed-out run waits on its gate",
                    lambda s=seq, a=attempt: (
                        [] if (s, a) in self.gates.blocked(self.gen) else [f"m{s} attempt {a}"]
                    ),
                )
                self.gates.release(gen, seq, attempt, "ok")
        self.zombies = []

    # ----- rules: queue control ---------------------------------------------------------------

    @rule(name=names)
    def pause(self, name):
        self.rt.pause(name)
        self.models[name].paused = True

    @rule(name=names)
    def resume(self, name):
        self.rt.resume(name)
        w = self.models[name]
        w.paused = False
        self._fill(w)

    @rule(name=names, concurrency=st.integers(1, 3))
    def set_concurrency(self, name, concurrency):
        w = self.models[name]
        if w.policy is None:
            with pytest.raises(NBWorkersError, match=f"no worker named {name!r}"):
                self.rt.set_concurrency(name, concurrency)
            return
        self.rt.set_concurrency(name, concurrency)
        w.concurrency = concurrency
        self._fill(w)

    @rule(data=st.data())
    def cancel(self, data):
        message_id = data.draw(st.sampled_from([*self.ids, "m999999"]), label="id")
        seq = int(message_id[1:])
        expected = False
        for w in self.models.values():
            for m in w.waiting():
                if m.seq == seq:
                    (w.queue if m in w.queue else w.delayed).remove(m)
                    w.forget_key(m)
                    w.removed.add(seq)
                    expected = True
        assert self.rt.cancel(message_id) is expected

    @rule(name=names)
    def purge(self, name):
        w = self.models[name]
        waiting = w.waiting()
        for m in waiting:
            w.forget_key(m)
            w.removed.add(m.seq)
        w.queue, w.delayed = [], []
        assert self.rt.purge(name) == len(waiting)

    def _dead_ids(self, data, name):
        """None (all), some of the dead letters' ids, or ids with one that is not dead."""
        w = self.models[name]
        choice = data.draw(st.sampled_from(["all", "some", "unknown"]), label="which")
        if choice == "all":
            return None
        ids = [m.id for m in w.dead]
        if choice == "some" and ids:
            return data.draw(st.lists(st.sampled_from(ids), min_size=1, unique=True), label="ids")
        return [*ids[:1], "m999999"]

    def _take_dead(self, w: Model, ids) -> list[Msg] | None:
        """The dead letters ``ids`` takes (in the runtime's order), or None: an error."""
        if ids is None:
            taken, w.dead = w.dead, []
            return taken
        wanted = {int(i[1:]) for i in ids}
        if not w.dead or wanted - {m.seq for m in w.dead}:
            return None
        taken = [m for m in w.dead if m.seq in wanted]
        w.dead = [m for m in w.dead if m.seq not in wanted]
        return taken

    @rule(data=st.data(), name=names)
    def requeue(self, data, name):
        w = self.models[name]
        ids = self._dead_ids(data, name)
        taken = self._take_dead(w, ids)
        if taken is None:
            with pytest.raises(NBWorkersError, match="no dead letter"):
                self.rt.requeue(name, ids)
            return
        got = self.rt.requeue(name, ids)
        assert len(got) == len(taken)
        for m, new_id in zip(taken, got, strict=True):
            w.removed.add(m.seq)
            if m.key is not None and m.key in w.keys:
                assert new_id == w.keys[m.key].id, "a requeued key still held gives its holder"
            else:
                self._enqueue(w, new_id, m.plan, m.key)
        self._fill(w)

    @rule(data=st.data(), name=names)
    def discard(self, data, name):
        w = self.models[name]
        ids = self._dead_ids(data, name)
        taken = self._take_dead(w, ids)
        if taken is None:
            with pytest.raises(NBWorkersError, match="no dead letter"):
                self.rt.discard(name, ids)
            return
        assert self.rt.discard(name, ids) == len(taken)
        w.removed.update(m.seq for m in taken)

    @rule()
    def flush(self):
        self.rt.flush()

    # ----- rules: stopping and crashing -------------------------------------------------------

    def _reopened(self) -> None:
        """What a new runtime starts from: a run that had started gets its next attempt; the
        ready messages are in emit order, concurrency is as defined."""
        for name, w in self.models.items():
            for m in w.running:
                m.attempt += 1
                m.started, m.deadline, m.index = False, None, None
            everything = w.queue + w.delayed + w.running
            w.delayed = [m for m in everything if m.due is not None and m.due > self.now]
            w.queue = sorted((m for m in everything if m not in w.delayed), key=lambda m: m.seq)
            for m in w.queue:
                m.due = None
            w.running = []
            if name in WORKERS:
                w.concurrency = WORKERS[name][0]
        self.gen += 1
        self.rt = self._open()
        for w in self.models.values():
            self._fill(w)

    @rule(data=st.data())
    def stop_and_reopen(self, data):
        """A clean stop while runs are blocked: they end during its grace period (each with
        an outcome drawn here), and nothing new starts."""
        rt = self.rt
        stopper = threading.Thread(target=rt.stop, kwargs={"timeout_s": 20})
        stopper.start()
        _wait_until("stop begins", lambda: [] if rt.stopping else ["not stopping"])
        for w in self.models.values():
            for m in list(w.running):
                outcome = data.draw(st.sampled_from(["ok", "fail"]), label=f"{m.id} ends")
                attempt = m.attempt
                w.running.remove(m)
                if outcome == "ok":
                    self._succeed(w, m)
                else:
                    self._fail(w, m)
                self.gates.release(self.gen, m.seq, attempt, outcome)
        stopper.join(30)
        assert not stopper.is_alive(), "stop did not return"
        self._reopened()

    @rule()
    def kill_and_reopen(self):
        """A crash: everything flushed is in the files, copied as they are while the runtime
        runs (its blocked runs never end there); a new runtime opens the copy."""
        old, old_gen = self.rt, self.gen
        old.flush()
        self.path = os.path.join(self.dir, f"q{old_gen + 1}.duckdb")
        _copy_database(old.path, self.path)
        self.gates.kill(old_gen)
        old.stop(timeout_s=10)  # on its own file, which nothing reads any more
        self._reopened()

    # ----- checks after every step --------------------------------------------------------------

    def _differences(self) -> list[str]:
        rt, diffs = self.rt, []
        blocked = self.gates.blocked(self.gen)
        expected_blocked = {(m.seq, m.attempt) for w in self.models.values() for m in w.running}
        if blocked != expected_blocked:
            diffs.append(f"blocked runs {sorted(blocked)} != {sorted(expected_blocked)}")
        for name, w in self.models.items():
            counts = rt.counts(name)
            got = {k: counts[k] for k in ("queued", "running", "done", "failed", "dead", "retried")}
            want = {
                "queued": len(w.queue) + len(w.delayed),
                "running": len(w.running),
                "done": w.done,
                "failed": w.failed,
                "dead": len(w.dead),
                "retried": w.retried,
            }
            if got != want:
                diffs.append(f"{name}: counts {got} != {want}")
                continue
            listed = [
                (m["id"], m["attempt"], m["key"], m["due_at"] and m["due_at"].timestamp())
                for m in rt.messages(name, limit=None)
            ]
            expected = [(m.id, m.attempt, m.key, m.due) for m in w.waiting()]
            if listed != expected:
                diffs.append(f"{name}: waiting {listed} != {expected}")
            dead = sorted(
                (d["id"], d["attempt"], d["key"]) for d in rt.dead_letters(name, limit=None)
            )
            expected_dead = sorted((m.id, m.attempt, m.key) for m in w.dead)
            if dead != expected_dead:
                diffs.append(f"{name}: dead letters {dead} != {expected_dead}")
        return diffs

    def _settled(self) -> bool:
        """Nothing more will happen until the next step: every run thread of the runtime
        sleeps with nothing ready for it, or runs a run that waits on its gate."""
        blocked = self.gates.blocked(self.gen)
        with self.rt.registry.lock:
            for w in self.rt.registry.workers.values():
                waiting = sum(
                    (r.message.seq, r.message.attempt) in blocked for r in w.runs.values()
                )
                if len(w.live) != w.idle + waiting or (w.idle and w.ready()):
                    return False
        return True

    def _observe(self) -> None:
        """Adopt what the model cannot know: which thread runs what, in which order runs
        started and dead letters died (threads race there); the sets were checked equal."""
        for name, w in self.models.items():
            with self.rt.registry.lock:
                state = self.rt.registry.workers.get(name)
                runs = [(r.message.seq, index) for index, r in state.runs.items()] if state else []
            by_seq = {m.seq: m for m in w.running}
            assert sorted(by_seq) == sorted(s for s, _ in runs), (name, runs, sorted(by_seq))
            w.running = [by_seq[s] for s, _ in runs]
            for seq, index in runs:
                by_seq[seq].index = index
            dead = {m.seq: m for m in w.dead}
            w.dead = [dead[int(d["id"][1:])] for d in self.rt.dead_letters(name, limit=None)]

    def _check_file(self) -> None:
        """What the database holds once flushed is exactly the model's state: read through the
        runtime's own connection after every step and, every REOPEN_EVERY steps, from a copy
        of the files as a crash now would leave them, opened anew (as a new kernel would)."""
        self.rt.flush()
        self.checks += 1
        if self.checks % REOPEN_EVERY == 0:
            loaded, dead_letters = _load_copy(self.rt.path, os.path.join(self.dir, "check.duckdb"))
        else:
            loaded, dead_letters = _load_live(self.rt.store)
        now = self.now
        messages = {
            r.seq: (
                r.worker,
                r.attempt,
                r.started,
                r.key,
                r.due_at if r.due_at and r.due_at > now else None,
            )
            for r in loaded.messages
        }
        expected = {
            m.seq: (m.worker, m.attempt, m.started, m.key, m.due)
            for w in self.models.values()
            for m in w.live()
        }
        assert messages == expected, "the file's messages differ from the queues"
        dead = {r.seq: (r.worker, r.attempt, r.key) for r in dead_letters}
        expected_dead = {
            m.seq: (m.worker, m.attempt, m.key) for w in self.models.values() for m in w.dead
        }
        assert dead == expected_dead, "the file's dead letters differ"
        rows = {r.name: (bool(r.paused), r.done, r.failed, r.retried) for r in loaded.workers}
        for name, w in self.models.items():
            want = (w.paused, w.done, w.failed, w.retried)
            assert rows.get(name, (False, 0, 0, 0)) == want, f"{name}: the file's worker row"

    @invariant()
    def everything_adds_up(self):
        for w in self.models.values():
            places = [
                {m.seq for m in w.queue},
                {m.seq for m in w.delayed},
                {m.seq for m in w.running},
                {m.seq for m in w.dead},
                w.finished,
                w.removed,  # cancelled, purged, requeued or discarded
            ]
            assert sum(map(len, places)) == len(w.issued), f"{w.name}: a message is counted twice"
            assert set().union(*places) == w.issued, f"{w.name}: a message went missing"
            assert w.died <= {m.seq for m in w.dead} | w.removed
            assert w.done == len(w.finished) and w.failed == len(w.died)
        _wait_until("the runtime settles as the model says", self._differences, self._settled)
        assert not self.gates.problems, self.gates.problems
        self._observe()
        self._check_file()


# ----- what the machine found, each as a plain regression test ------------------------------


def test_a_run_interrupted_by_a_crash_is_its_next_attempt_in_the_file_too(make_runtime):
    rt = make_runtime()
    started, release = threading.Event(), threading.Event()
    rt.define("w", from_function("w", lambda e: started.set() or release.wait(30)), 1)
    rt.emit("x", "w")
    assert started.wait(5)
    rt.flush()

    def gone(batch):
        raise OSError("the process died")

    rt.store.apply = gone  # the kernel dies mid-run: nothing more reaches the file
    rt.stop(timeout_s=0.1)
    release.set()
    # When a new kernel opens the file and the message waits (its worker not defined yet)
    rt2 = make_runtime()
    [waiting] = rt2.messages("w")
    assert waiting["attempt"] == 2
    rt2.flush()
    # Then the file says what nw.messages says: queued for its next attempt, not running
    assert rt2.store.sql("select attempt, started from messages").fetchall() == [(2, False)]
    assert rt2.store.sql("select queued, running from workers").fetchall() == [(1, 0)]


def _copy_database(src: str, dst: str) -> None:
    for suffix in ("", ".wal"):
        if os.path.exists(src + suffix):
            shutil.copyfile(src + suffix, dst + suffix)


def _all_dead(con) -> list:
    """Every dead letter's row in the database ``con`` reads (they are not loaded)."""
    workers = {g.worker for g in dead_rows.read_summary(con)}
    return [d for name in sorted(workers) for d in dead_rows.read_page(con, name, None, 0)]


def _load_copy(path: str, copy: str) -> tuple[Loaded, list]:
    """What a new runtime would load from a copy of the files of ``path`` taken now, and its
    dead letters."""
    _copy_database(path, copy)
    store = DuckDBStore(copy)
    try:
        return store.load(), _all_dead(store.con)
    finally:
        store.close()
        for suffix in ("", ".wal"):
            if os.path.exists(copy + suffix):
                os.remove(copy + suffix)


def _load_live(store: DuckDBStore) -> tuple[Loaded, list]:
    """The same rows, read through a cursor on the runtime's open database (opening a file
    costs 50-100 ms here, a read a few)."""
    cursor = store.con.cursor()
    try:
        return read(cursor)[0], _all_dead(cursor)
    finally:
        cursor.close()


class PagedQueueMachine(QueueMachine):
    """The same, with a window of two ready messages per worker: most queued messages are
    spilled to the file and read back (engine/paging.py), and the model is the same."""

    window = 2


# Shrinking a failure (Hypothesis gives up after 5 minutes) must not be cut short.
@pytest.mark.timeout(max(300, EXAMPLES * 2) + 400)
@pytest.mark.parametrize("machine", [QueueMachine, PagedQueueMachine], ids=["all", "paged"])
def test_random_sequences_of_queue_operations_keep_every_count_and_the_file_exact(machine):
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=EXAMPLES or 20,
            stateful_step_count=50,
            deadline=None,
            derandomize=not EXAMPLES,
            database=None,
            print_blob=True,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
