"""Looking into and changing queues by hand: ``nw.messages``, ``cancel``, ``purge``, and the
dead letters (``dead_letters``, ``requeue``, ``discard``).

A part of ``Runtime`` (a mixin): it works on the runtime's worker states under its lock and
records what changed with its writer, like the rest of the runtime.
"""

from __future__ import annotations

import time

from .errors import ArgumentTypeError, ArgumentValueError, NBWorkersError
from .handlers import check_name
from .message import ClassNotDefined, Message, load_event, parse_id
from .trace import preview
from .worker import DeadLetter, WorkerState, _whole


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
        "preview": _event_preview(m.data),
        **extra,
    }


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


class QueueControl:
    """Queue introspection and dead-letter handling, mixed into ``Runtime``."""

    # ----- queue control ----------------------------------------------------------------------

    def _known_or_valid(self, name) -> None:
        """``check_name``, except for a name the file already holds: an older nbworkers let
        names such as 'resize\\n' through, and their messages must stay reachable (counted,
        purged, requeued or discarded)."""
        if not (isinstance(name, str) and name in self._workers):
            check_name(name)

    def messages(self, name: str, limit: int | None = 100) -> list[dict]:
        """The messages of ``name`` waiting to run: ready ones oldest first, then delayed
        ones soonest first; at most ``limit`` (None: all)."""
        self._known_or_valid(name)
        if limit is not None and (not _whole(limit) or limit < 0):
            raise ArgumentValueError(
                f"nw.messages: limit must be a whole number, 0 or more (or None: all), "
                f"not {limit!r}"
            )
        with self._lock:
            w = self._workers.get(name)
            waiting = w.waiting(limit) if w else []
            parked = {m.seq: why for m, why in w.parked} if w else {}
        now = self.clock()
        return [_describe(m, now, parked=parked.get(m.seq)) for m in waiting]

    def cancel(self, message_id: str) -> bool:
        """Remove one waiting message; False if it is not waiting (running, done or unknown)."""
        seq = parse_id(message_id, "m")
        with self._lock:
            self._check_running()
            for w in self._workers.values():
                if w.remove_waiting({seq}):
                    self.writer.ack([seq])
                    self._after_change(w)
                    return True
        return False

    def purge(self, name: str) -> int:
        """Remove every waiting message of ``name``; how many there were."""
        self._known_or_valid(name)
        with self._lock:
            self._check_running()
            w = self._workers.get(name)
            removed = w.remove_waiting(None) if w else []
            if removed:
                self.writer.ack([m.seq for m in removed])
                self._after_change(w)
        return len(removed)

    def dead_letters(self, name: str) -> list[dict]:
        """The dead letters of ``name``, oldest first, each with its last error."""
        self._known_or_valid(name)
        with self._lock:
            w = self._workers.get(name)
            letters = list(w.dead) if w else []
        now = self.clock()
        return [
            _describe(
                d.message,
                now,
                error=d.error,
                died_at=self.zone.aware(d.died_at_s),
            )
            for d in letters
        ]

    def _take_dead(self, w: WorkerState | None, name: str, ids) -> list[DeadLetter]:
        """Remove the dead letters ``ids`` (all when None) of ``w`` (the lock is held)."""
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
        self.writer.undead(taken)
        return taken

    def requeue(self, name: str, ids=None) -> list[str]:
        """Queue dead letters of ``name`` again (all by default) as new messages, attempts
        from 1; returns the new message ids."""
        self._known_or_valid(name)
        with self._lock:
            self._check_running()
            w = self._workers.get(name)
            taken = self._take_dead(w, name, ids)
            new = []
            now = time.time()
            for d in taken:
                key = d.message.key
                if key is not None and key in w.keys:
                    new.append(w.keys[key])
                else:
                    new += self._enqueue_locked(w, [d.message.data], now, None, key)
            if taken:
                self._after_change(w)
        return [m.id for m in new]

    def discard(self, name: str, ids=None) -> int:
        """Drop dead letters of ``name`` (all by default); how many were dropped."""
        self._known_or_valid(name)
        with self._lock:
            self._check_running()
            w = self._workers.get(name)
            taken = self._take_dead(w, name, ids)
            if taken:
                self._after_change(w)
        return len(taken)
