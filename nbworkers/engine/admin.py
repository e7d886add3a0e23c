"""Admin: changing queues and workers by hand. Pausing and resuming (``nw.pause``), looking
into and changing queues (``nw.messages``, ``cancel``, ``purge``). The dead letters
(``dead_letters``, ``requeue``, ``discard``) are in ``dead``."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

from ..errors import ArgumentValueError
from ..handlers import check_name
from ..message import ClassNotDefined, Message, load_event, parse_id
from ..trace import preview
from .policy import _whole
from .registry import Registry
from .worker import WorkerState

MANUAL_PAUSE = "paused by hand (nw.pause, --paused or the panel)"


def _event_preview(data: bytes | None) -> str:
    try:
        return preview(load_event(data)) if data is not None else "None"
    except ClassNotDefined as exc:
        return f"<cannot be unpickled yet: {exc}>"
    # Unpickling runs user code, which may raise anything: shown as the reason instead.
    except BaseException as exc:  # noqa: BLE001
        return f"<cannot be unpickled: {type(exc).__name__}: {exc}>"


def describe(m: Message, now: float, **extra) -> dict:
    return {
        "id": m.id,
        "enqueued_at": m.enqueued_at,
        "age_s": max(0.0, now - m.enqueued_at_s),
        "attempt": m.attempt,
        "due_at": m.due_at,
        "key": m.key,
        "priority": m.priority,
        "preview": _event_preview(m.data),
        **extra,
    }


def _expires_at(m: Message, ttl_s: float | None) -> datetime | None:
    """When waiting ``m`` expires: its own time to live, else its worker's (``ttl_s``)."""
    if m.expires_at_s is not None:
        return m.expires_at
    if ttl_s is None:
        return None
    return datetime.fromtimestamp(m.enqueued_at_s + ttl_s, UTC)


class Admin:
    """Pauses and queue control, for one engine."""

    def __init__(self, registry: Registry, writer, timers, events, intake, wake_all):
        self.registry = registry
        self.writer = writer
        self.timers = timers
        self.events = events
        self.intake = intake
        self.wake_all = wake_all  # Dispatch.wake_all
        self.results = None  # Results: a removed message ends (nw.result, fan-in); runtime

    # ----- pausing ----------------------------------------------------------------------------

    def pause(self, name: str) -> None:
        """Stop starting runs of ``name`` (runs already going finish); kept in the database."""
        check_name(name)
        with self.registry.lock:
            self.pause_locked(self.registry.state(name))
        self.events.notify(name)

    def pause_locked(self, w: WorkerState, reason: str | None = None) -> None:
        if not w.paused or reason:
            w.paused = True
            w.pause_reason = reason
            self.writer.worker_changed(w)
            self.timers.changed()
            self.events.mark_changed(w.name)

    def resume(self, name: str) -> None:
        """Lift a pause of ``name``; its queued messages start at once."""
        check_name(name)
        with self.registry.lock:
            w = self.registry.state(name)
            if w.paused:
                w.paused = False
                w.pause_reason = None
                w.clear_storm()
                self.writer.worker_changed(w)
                self.wake_all(w)
                self.timers.changed()
        self.events.notify(name)

    def is_paused(self, name: str) -> bool:
        check_name(name)
        with self.registry.lock:
            w = self.registry.workers.get(name)
            return bool(w and w.paused)

    def pause_reason(self, name: str) -> str | None:
        """Why ``name`` is paused (the storm guard says why it paused it); None if running."""
        check_name(name)
        with self.registry.lock:
            w = self.registry.workers.get(name)
            if w is None or not w.paused:
                return None
            return w.pause_reason or MANUAL_PAUSE

    # ----- queue control ----------------------------------------------------------------------

    def messages(self, name: str, limit: int | None = 100) -> list[dict]:
        """The messages of ``name`` waiting to run: ready ones oldest first, then delayed
        ones soonest first; at most ``limit`` (None: all)."""
        self.registry.known_or_valid(name)
        if limit is not None and (not _whole(limit) or limit < 0):
            raise ArgumentValueError(
                f"nw.messages: limit must be a whole number, 0 or more (or None: all), "
                f"not {limit!r}"
            )
        with self.registry.lock:
            w = self.registry.workers.get(name)
            spilled = None  # the spilled ones: read from the file if the list goes that far
            if w and w.spill and (limit is None or limit > len(w.queue)):
                if not self.writer.all_written():
                    self.writer.write_now(check=False)
                more = None if limit is None else limit - len(w.queue)
                spilled = self.registry.paging.peek(w, more) if w.spill else None
            waiting = w.waiting(limit, spilled) if w else []
            parked = {m.seq: why for m, why in w.parked} if w else {}
            ttl_s = w.policy.ttl_s if w else None
        now = self.registry.clock()
        return [
            describe(m, now, parked=parked.get(m.seq), expires_at=_expires_at(m, ttl_s))
            for m in waiting
        ]

    def cancel(self, message_id: str) -> bool:
        """Remove one waiting message; False if it is not waiting (running, done or unknown)."""
        seq = parse_id(message_id, "m")
        with self.registry.lock:
            self.registry.check_running()
            for w in self.registry.workers.values():
                if removed := w.remove_waiting({seq}):
                    self.writer.ack([seq])
                    self.results.removed(w, removed)
                    self.events.after_change(w)
                    return True
            return self._cancel_spilled(seq)

    def _cancel_spilled(self, seq: int) -> bool:
        """Cancel ``seq`` if it is spilled (paging.py): looked for in the file once what is
        pending is written, with no spilled message read back meanwhile (the lock is held,
        and let go while writing)."""
        paging = self.registry.paging
        spilling = [w for w in self.registry.workers.values() if w.spill is not None]
        if not spilling:
            return False
        with paging.frozen(spilling):
            self.writer.write_now(check=False)
            found = paging.find(seq)
            if found is not None:
                paging.cancel(*found)
                self.events.after_change(found[0])
        return found is not None

    def purge(self, name: str) -> int:
        """Remove every waiting message of ``name``; how many there were."""
        self.registry.known_or_valid(name)
        with self.registry.lock:
            self.registry.check_running()
            w = self.registry.workers.get(name)
            count = purge_locked(w, self.writer, self.results) if w else 0
            if count:
                self.events.after_change(w)
        return count


def purge_locked(w, writer, results) -> int:
    """Remove every waiting message of ``w``, spilled ones included; how many there were
    (the lock is held; it is let go while spilled ones are dropped: paging.py)."""
    spill = w.spill
    # (the purge of spilled ones lets the lock go between its writes: no page in meanwhile)
    with contextlib.nullcontext() if spill is None else spill.paging.frozen([w]):
        removed = w.remove_waiting(None)
        if removed:
            writer.ack([m.seq for m in removed])
            results.removed(w, removed)
        return len(removed) + (0 if spill is None else spill.paging.purge(w))
