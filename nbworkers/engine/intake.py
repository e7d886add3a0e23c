"""Intake: ``emit`` and ``emit_many``. An event is pickled at once (a snapshot: changing it
afterwards changes nothing queued), numbered, queued in memory, recorded for the writer, and
one run thread of its worker woken, all in one short hold of the lock; dedupe keys and
delays are checked here, and the policies hear of what was queued (the storm guard)."""

from __future__ import annotations

import pickle
import time
from collections.abc import Iterable
from datetime import datetime

from ..errors import ArgumentTypeError, ArgumentValueError, NBWorkersError
from ..handlers import check_name
from ..message import Message
from .fan_in import check_then
from .policy import _number, _whole
from .ready import MAX_PRIORITY
from .registry import Registry
from .worker import WorkerState

_PICKLE = pickle.HIGHEST_PROTOCOL
# How far ahead a message may be delayed: dates beyond year 9999 cannot even be shown.
MAX_DELAY_S = 10 * 365 * 86400


def pickled(event, where: str = "emit: a value") -> bytes:
    """The pickled copy of ``event`` that a message carries; TypeError naming the type."""
    try:
        return pickle.dumps(event, protocol=_PICKLE)
    except Exception as exc:
        raise ArgumentTypeError(
            f"{where} of type {type(event).__module__}.{type(event).__qualname__} cannot "
            f"be snapshotted ({type(exc).__name__}: {exc}); emit data that pickles (dicts, "
            "lists, numbers, strings, DataFrames, arrays, dataclasses). Nothing was enqueued."
        ) from exc


def pickled_all(events) -> list[bytes]:
    """The pickled copies of ``emit_many``'s events; TypeError naming the first that does not
    pickle by its index (found again only then: the common case stays one comprehension)."""
    events = check_events(events)
    if not isinstance(events, list | tuple):
        events = list(events)
    try:
        return [pickle.dumps(e, protocol=_PICKLE) for e in events]
    except Exception:  # raised again below, naming the event
        for i, event in enumerate(events):
            pickled(event, f"emit_many: events[{i}], a value")
        raise


def check_events(events) -> Iterable:
    """``events`` if ``emit_many`` can take them (any iterable but one string), else say so."""
    if isinstance(events, str | bytes):
        raise ArgumentTypeError(
            "emit_many: events must be a list (or another iterable) of events, not one "
            f"{type(events).__name__}: to queue one value, use nw.emit(value, name)"
        )
    try:
        iter(events)
    except TypeError:
        raise ArgumentTypeError(
            "emit_many: events must be a list (or another iterable) of events, not "
            f"{type(events).__name__}"
        ) from None
    return events


def check_priority(priority, where: str = "emit") -> int:
    """``priority`` if it is one (a whole number from -MAX_PRIORITY to MAX_PRIORITY)."""
    if not _whole(priority):
        raise ArgumentTypeError(
            f"{where}: priority must be a whole number (an int) from {-MAX_PRIORITY:,} to "
            f"{MAX_PRIORITY:,}, higher first, not {type(priority).__name__} {priority!r}. "
            "Nothing was enqueued."
        )
    if not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
        raise ArgumentValueError(
            f"{where}: priority must be from {-MAX_PRIORITY:,} to {MAX_PRIORITY:,} (higher "
            f"runs first; default 0), not {priority!r}. Nothing was enqueued."
        )
    return priority


def check_ttl(ttl, where: str = "emit") -> float | None:
    """``ttl`` if it is one: None, or seconds above 0, at most ten years."""
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int | float)):
        raise ArgumentTypeError(
            f"{where}: ttl must be a number of seconds (how long the message may wait in the "
            f"queue before it expires) or None, not {type(ttl).__name__} {ttl!r}. "
            "Nothing was enqueued."
        )
    if ttl is not None and (not _number(ttl) or not 0 < ttl <= MAX_DELAY_S):
        raise ArgumentValueError(
            f"{where}: ttl must be seconds above 0 (how long the message may wait in the queue "
            f"before it expires), at most {MAX_DELAY_S:,} (ten years), or None, not {ttl!r}. "
            "Nothing was enqueued."
        )
    return ttl


def _undecodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class Intake:
    """Queueing messages, for one engine."""

    def __init__(self, registry: Registry, writer, timers, events, wake, hooks):
        self.registry = registry
        self.writer = writer
        self.timers = timers
        self.events = events
        self.wake = wake  # Dispatch.wake
        self.hooks = hooks
        self.expiry = None  # Expiry, set by the runtime
        self.fan_in = None  # FanIn (emit_many's then=), set by the runtime
        self.paging = None  # Paging, set by the runtime

    def emit(
        self,
        event,
        name: str,
        *,
        key: str | None = None,
        delay: float | None = None,
        at: datetime | None = None,
        priority: int = 0,
        ttl: float | None = None,
    ) -> str:
        """Queue ``event`` for worker ``name``; returns the message id at once."""
        check_name(name)
        if ttl is not None or priority.__class__ is not int or priority:  # (not the usual)
            check_priority(priority)
            check_ttl(ttl)
        if key is not None and not isinstance(key, str):
            raise ArgumentTypeError(f"emit: key must be a string, not {type(key).__name__}")
        if key is not None and not key.isprintable() and _undecodable(key):
            raise ArgumentValueError(
                f"emit: key {key!r} is not valid text (it holds a lone surrogate)"
            )
        due_at = self._due_at(delay, at)
        if (
            ttl is not None
            and due_at is not None
            and (delay if delay is not None else due_at - self.registry.clock()) >= ttl
        ):
            raise ArgumentValueError(
                f"emit: its ttl of {ttl:g} s would end before it is due (delay= or at=), so it "
                "could never run: give a longer ttl. Nothing was enqueued."
            )
        data = pickled(event)
        reg = self.registry
        with reg.lock:
            w = reg.state(name)
            if w.is_cron:
                _refuse_cron("emit", name)
            if key is not None and key in w.keys:
                return w.keys[key].id
            now = time.time()
            message = self.enqueue_locked(w, [data], now, due_at, key, priority, ttl)[0]
        return message.id

    def emit_many(
        self,
        events: Iterable,
        name: str,
        *,
        priority: int = 0,
        ttl: float | None = None,
        then: str | None = None,
    ) -> list[str]:
        """Queue every event of ``events`` (all or nothing) for worker ``name``; ``then``:
        once all have ended, worker ``then`` gets one event with their results (fan_in.py)."""
        check_name(name)
        check_priority(priority, "emit_many")
        check_ttl(ttl, "emit_many")
        reg = self.registry
        with reg.lock:
            target = reg.workers.get(name)
            if target is not None and target.is_cron:
                _refuse_cron("emit_many", name)
        if then is None:
            return self.enqueue(name, pickled_all(events), priority, ttl)
        check_then(then)
        datas = pickled_all(events)
        now = time.time()
        with reg.lock:
            target = reg.workers.get(then)
            if target is not None and target.is_cron:
                raise ArgumentValueError(
                    f"emit_many: then={then!r} is a cron, which gets no event: name a worker "
                    "(%%worker NAME) to receive the results. Nothing was enqueued."
                )
            w = reg.state(name)
            messages = (
                self.enqueue_locked(w, datas, now, None, None, priority, ttl) if datas else []
            )
            self.fan_in.start(w, messages, then, now)
        return [m.id for m in messages]

    def _due_at(self, delay, at) -> float | None:
        if delay is not None and at is not None:
            raise ArgumentValueError("emit: give delay= or at=, not both")
        if delay is not None:
            if not _number(delay) or not 0 <= delay <= MAX_DELAY_S:
                raise ArgumentValueError(
                    f"emit: delay must be seconds, from 0 to {MAX_DELAY_S:,} (ten years), "
                    f"not {delay!r}"
                )
            return self.registry.clock() + delay if delay > 0 else None
        if at is not None:
            if not isinstance(at, datetime):
                raise ArgumentTypeError(f"emit: at must be a datetime, not {type(at).__name__}")
            return at.timestamp() if at.tzinfo else self.registry.zone.epoch(at)
        return None

    def enqueue(
        self, name: str, datas: list[bytes], priority: int = 0, ttl: float | None = None
    ) -> list[str]:
        """Queue pickled events for ``name``; their message ids."""
        now = time.time()
        reg = self.registry
        with reg.lock:
            messages = self.enqueue_locked(reg.state(name), datas, now, None, None, priority, ttl)
        return [m.id for m in messages]

    @property
    def taking_emits(self) -> bool:
        """False once a stop has taken its last batch: an emit then raises NBWorkersError."""
        return not (self.registry.stopping and self.writer.stopped)

    def enqueue_locked(
        self,
        w: WorkerState,
        datas: list[bytes],
        now: float,
        due_at: float | None = None,
        key: str | None = None,
        priority: int = 0,
        ttl: float | None = None,
    ) -> list[Message]:
        """Queue ``datas`` for ``w`` (the lock is held), with ``priority`` and a time to live
        of ``ttl`` seconds from ``now`` of their own (None: their worker's, if any)."""
        # While stopping, emits (of runs still going, of other threads) join the last batch.
        # Once the writer has taken it, nothing more can reach the file: refused, not lost.
        if self.registry.stopping and self.writer.stopped:
            raise NBWorkersError(
                "nbworkers is stopping (nw.shutdown, %unload_ext, %reload_ext or the kernel "
                "exiting) and has written its last batch: this emit came after it. Nothing was "
                "enqueued; everything emitted before is kept. Emit again once the stop has "
                "returned (nw.emit then starts nbworkers again)."
            )
        name = w.name
        if due_at is not None and due_at <= self.registry.clock():
            due_at = None  # at= a time gone by: ready now, as if emitted without it
        seq = self.writer.number(len(datas))
        if priority or ttl is not None:
            expires = None if ttl is None else now + ttl
            messages = [
                Message(seq + i, name, now, 1, d, due_at, key, priority, expires)
                for i, d in enumerate(datas)
            ]
        else:
            messages = [Message(seq + i, name, now, 1, d, due_at, key) for i, d in enumerate(datas)]
        if key is not None:
            w.keys[key] = messages[0]
        kept = messages  # those in memory: spilled ones are on disk only (paging.py)
        if due_at is not None and due_at > self.registry.clock():
            for m in messages:
                w.delay(m)
            self.timers.wake_at(due_at)
        else:
            if w.spill is not None or len(w.queue) + len(messages) > self.paging.window:
                kept = self.paging.admit(w, messages, priority)
            if priority:
                w.queue.extend(kept, priority)
            else:
                w.queue.zero.extend(kept)
            self.wake(w, len(messages))
        if (ttl is not None or w.policy.ttl_s is not None) and kept:
            self.expiry.track(w, kept)  # spilled ones once paged in
        self.writer.insert(messages)
        for hook in self.hooks.after_enqueue:
            hook(w, len(messages))
        if self.events.listeners:
            self.events.mark_changed(name)
        return messages


def _refuse_cron(verb: str, name: str) -> None:
    """ArgumentValueError: ``name`` is a cron, which takes no event (it ran the cron off its
    schedule, and the event was dropped)."""
    raise ArgumentValueError(
        f"{verb}: {name!r} is a cron, which gets no event: nw.run_now({name!r}) runs it now, "
        "or emit to a worker (%%worker NAME). Nothing was enqueued."
    )
