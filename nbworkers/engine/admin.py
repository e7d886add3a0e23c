"""Admin: changing queues and workers by hand. Pausing and resuming (``nw.pause``), looking
into and changing queues (``nw.messages``, ``cancel``, ``purge``) and the dead letters
(``dead_letters``, ``requeue``, ``discard``)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from ..errors import ArgumentTypeError, ArgumentValueError, NBWorkersError
from ..handlers import check_name
from ..message import ClassNotDefined, Message, load_event, parse_id
from ..trace import preview
from . import failures
from .policy import _whole
from .registry import Registry
from .worker import DeadLetter, WorkerState

MANUAL_PAUSE = "paused by hand (nw.pause, --paused or the panel)"


def _event_preview(data: bytes | None) -> str:
    try:
        return preview(load_event(data)) if data is not None else "None"
    except ClassNotDefined as exc:
        return f"<cannot be unpickled yet: {exc}>"
    # Unpickling runs user code, which may raise anything: shown as the reason instead.
    except BaseException as exc:  # noqa: BLE001
        return f"<cannot be unpickled: {type(exc).__name__}: {exc}>"


def _describe(m: Message, now: float, **extra) -> dict:
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


def _ids(ids) -> list | None:
    """``ids`` as a list: one id (``"m12"``), a list of them, or None (all)."""
    if ids is None or isinstance(ids, list):
        return ids
    if isinstance(ids, str):
        return [ids]
    try:
        return list(ids)
    except TypeError:
        raise ArgumentTypeError(
            f"ids must be a message id such as 'm12', a list of them, or None (all), "
            f"not {type(ids).__name__}"
        ) from None


def _ids_or_group(verb: str, ids, group) -> None:
    """Refuse ``ids`` and ``group`` together, and a group that is not a fingerprint."""
    if group is None:
        return
    if ids is not None:
        raise ArgumentValueError(
            f"nw.{verb}: give ids or group, not both (group= takes every dead letter of "
            "one failure group; ids= the ones named)"
        )
    if not isinstance(group, str):
        raise ArgumentTypeError(
            f"nw.{verb}: group must be a failure group's fingerprint, a str such as "
            f"nw.failures(name)[0].fingerprint, not {type(group).__name__}"
        )


class Admin:
    """Pauses, queue control and dead letters, for one engine."""

    def __init__(self, registry: Registry, writer, timers, events, intake, wake_all):
        self.registry = registry
        self.writer = writer
        self.timers = timers
        self.events = events
        self.intake = intake
        self.wake_all = wake_all  # Dispatch.wake_all
        self.results = None  # Results: a removed message ends (nw.result, fan-in); runtime
        self.trimmer = None  # memory.Trimmer: a discard frees memory; runtime

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
            waiting = w.waiting(limit) if w else []
            parked = {m.seq: why for m, why in w.parked} if w else {}
            ttl_s = w.policy.ttl_s if w else None
        now = self.registry.clock()
        return [
            _describe(m, now, parked=parked.get(m.seq), expires_at=_expires_at(m, ttl_s))
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
        return False

    def purge(self, name: str) -> int:
        """Remove every waiting message of ``name``; how many there were."""
        self.registry.known_or_valid(name)
        with self.registry.lock:
            self.registry.check_running()
            w = self.registry.workers.get(name)
            removed = w.remove_waiting(None) if w else []
            if removed:
                self.writer.ack([m.seq for m in removed])
                self.results.removed(w, removed)
                self.events.after_change(w)
        return len(removed)

    def dead_letters(self, name: str, limit: int | None = 100, offset: int = 0) -> list[dict]:
        """The dead letters of ``name``, oldest first, each with its last error: at most
        ``limit`` (None: all) from the ``offset``-th (a page)."""
        self.registry.known_or_valid(name)
        for what, value, none in (("limit", limit, True), ("offset", offset, False)):
            if (value is not None or not none) and (not _whole(value) or value < 0):
                raise ArgumentValueError(
                    f"nw.dead_letters: {what} must be a whole number, 0 or more"
                    f"{' (or None: all)' if none else ''}, not {value!r}"
                )
        end = None if limit is None else offset + limit
        with self.registry.lock:
            w = self.registry.workers.get(name)
            letters = w.dead[offset:end] if w else []  # the page alone is copied
        now = self.registry.clock()
        return [
            _describe(
                d.message,
                now,
                error=d.error,
                died_at=self.registry.zone.aware(d.died_at_s),
                reason=d.reason,
            )
            for d in letters
        ]

    def _take_dead(
        self, w: WorkerState | None, name: str, ids, group: str | None = None
    ) -> list[DeadLetter]:
        """Remove the dead letters ``ids`` (all when None), or those of the failure ``group``,
        of ``w`` (the lock is held)."""
        if group is not None:
            digests = failures.selected(w, name, group)
            taken = [d for d in w.dead if d.failure.digest in digests]
            w.dead = [d for d in w.dead if d.failure.digest not in digests]
            w.expired_dead -= sum(1 for d in taken if d.reason == "expired")
            w.failure_index = None  # counted again (the old list goes)
            self.writer.undead(taken)
            return taken
        ids = _ids(ids)
        if w is None or not w.dead:
            if ids:
                raise NBWorkersError(f"{name!r} has no dead letters")
            return []
        if ids is None:
            taken, w.dead = w.dead, []
        else:
            wanted = {parse_id(i, "m") for i in ids}
            have = {d.message.seq for d in w.dead}
            missing = sorted(wanted - have)
            if missing:
                raise NBWorkersError(
                    f"{name!r} has no dead letter {', '.join(f'm{s}' for s in missing)}; "
                    f"see nw.dead_letters({name!r}). Nothing was changed."
                )
            taken = [d for d in w.dead if d.message.seq in wanted]
            w.dead = [d for d in w.dead if d.message.seq not in wanted]
        w.expired_dead -= sum(1 for d in taken if d.reason == "expired")
        w.failure_index = None  # counted again (the old list goes)
        self.writer.undead(taken)
        return taken

    def requeue(self, name: str, ids=None, group: str | None = None) -> list[str]:
        """Queue dead letters of ``name`` again (all by default, or those of the failure
        ``group``) as new messages, attempts from 1; returns the new message ids."""
        self.registry.known_or_valid(name)
        _ids_or_group("requeue", ids, group)
        with self.registry.lock:
            self.registry.check_running()
            w = self.registry.workers.get(name)
            taken = self._take_dead(w, name, ids, group)
            new = []
            now = time.time()
            for d in taken:
                m = d.message
                key = m.key
                if key is not None and key in w.keys:
                    new.append(w.keys[key])
                else:
                    # Its priority, and its own time to live again from now (a fresh expiry).
                    ttl = None if m.expires_at_s is None else m.expires_at_s - m.enqueued_at_s
                    new += self.intake.enqueue_locked(w, [m.data], now, None, key, m.priority, ttl)
            if taken:
                self.events.after_change(w)
        return [m.id for m in new]

    def discard(self, name: str, ids=None, group: str | None = None) -> int:
        """Drop dead letters of ``name`` (all by default, or those of the failure ``group``);
        how many were dropped."""
        self.registry.known_or_valid(name)
        _ids_or_group("discard", ids, group)
        with self.registry.lock:
            self.registry.check_running()
            w = self.registry.workers.get(name)
            taken = self._take_dead(w, name, ids, group)
            count = len(taken)
            if taken:
                self.events.after_change(w)
                if self.trimmer is not None:
                    self.trimmer.dropped(count)
        del taken  # the letters go before a trim hands their memory back
        if count and self.trimmer is not None:
            self.trimmer.quiet_moment()
        return count
