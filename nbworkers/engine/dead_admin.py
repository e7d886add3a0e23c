"""``nw.dead_letters``, ``requeue`` and ``discard``: the dead letters read back from the
database, where alone they live (``dead`` has what the engine keeps of them).

Reading them (a page, or the ones a requeue takes, a chunk at a time) first writes whatever is
pending, in the calling thread with the engine lock held (``Writer.write_now``), so the file
holds every dead letter and no new one comes while it is read. A requeue's new messages and the
removal of its dead letters are then written in one transaction: a kernel killed in the middle
of it has either all of them dead or all of them queued.
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager

from ..errors import ArgumentTypeError, ArgumentValueError, NBWorkersError
from ..log import log
from ..message import Message, parse_id
from .admin import describe
from .policy import _whole
from .registry import Registry
from .worker import WorkerState


def _message(row) -> Message:
    """The message a dead letter's row (``DeadRow``) holds."""
    return Message(
        row.seq,
        row.worker,
        row.enqueued_at,
        row.attempt,
        row.data,
        None,
        row.key,
        row.priority,
        row.expires_at,
    )


@contextmanager
def _uninterrupted():
    """Ctrl-C (a kernel interrupt: SIGINT, which lands in the main thread) waits until the
    block ends, then raises: a requeue is never left half done, a batch never half written."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
    if caught:
        raise KeyboardInterrupt


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


def _ids_or_group(verb: str, ids, group) -> list | None:
    """``ids`` as a list; ArgumentError for ``ids`` and ``group`` together, or a group that
    is not a fingerprint."""
    if group is not None and ids is not None:
        raise ArgumentValueError(
            f"nw.{verb}: give ids or group, not both (group= takes every dead letter of "
            "one failure group; ids= the ones named)"
        )
    if group is not None and not isinstance(group, str):
        raise ArgumentTypeError(
            f"nw.{verb}: group must be a failure group's fingerprint, a str such as "
            f"nw.failures(name)[0].fingerprint, not {type(group).__name__}"
        )
    return _ids(ids)


class DeadAdmin:
    """``nw.dead_letters``, ``requeue`` and ``discard``, for one engine."""

    def __init__(self, registry: Registry, writer, store, events, intake):
        self.registry = registry
        self.writer = writer
        self.store = store
        self.events = events
        self.intake = intake
        self.trimmer = None  # memory.Trimmer: a discard frees memory; runtime

    def dead_letters(self, name: str, limit: int | None = 100, offset: int = 0) -> list[dict]:
        """The dead letters of ``name``, oldest first, each with its own error line and its
        failure group: at most ``limit`` (None: all) from the ``offset``-th (a page)."""
        self.registry.known_or_valid(name)
        for what, value, none in (("limit", limit, True), ("offset", offset, False)):
            if (value is not None or not none) and (not _whole(value) or value < 0):
                raise ArgumentValueError(
                    f"nw.dead_letters: {what} must be a whole number, 0 or more"
                    f"{' (or None: all)' if none else ''}, not {value!r}"
                )
        with _uninterrupted(), self.registry.lock:
            self.registry.check_running()
            w = self.registry.workers.get(name)
            if w is None or not w.dead.count:
                return []
            self.writer.write_now()
        # Read with the lock let go: the file holds every dead letter by now.
        rows = self.store.dead_page(name, limit, offset)
        now = self.registry.clock()
        aware = self.registry.zone.aware
        return [
            describe(
                _message(row),
                now,
                error=row.error,
                died_at=aware(row.died_at),
                reason=row.reason,
                fingerprint=row.fingerprint,
            )
            for row in rows
        ]

    def _chosen(self, w: WorkerState | None, name: str, ids, group: str | None):
        """What a requeue or discard takes: (the group digests or None, the rows of the
        ``ids`` or None), checked: NBWorkersError, nothing changed, for what ``name`` does not
        have. The lock is held and every dead letter is written."""
        if group is not None:
            if w is None or group not in w.dead.groups:
                raise NBWorkersError(
                    f"{name!r} has no dead letters in the failure group {group!r}; "
                    f"nw.failures({name!r}) lists its groups (each .fingerprint). "
                    "Nothing was changed."
                )
            return [group], None
        if ids is None:
            return None, None
        if w is None or not w.dead.count:
            if ids:
                raise NBWorkersError(f"{name!r} has no dead letters")
            return None, []
        wanted = sorted({parse_id(i, "m") for i in ids})
        rows = [row for chunk in self.store.dead_rows(name, seqs=wanted) for row in chunk]
        missing = sorted(set(wanted) - {row.seq for row in rows})
        if missing:
            raise NBWorkersError(
                f"{name!r} has no dead letter {', '.join(f'm{s}' for s in missing)}; "
                f"see nw.dead_letters({name!r}). Nothing was changed."
            )
        return None, rows

    def _take(self, w: WorkerState | None, name: str, ids, group, each=None) -> int:
        """Remove the dead letters ``ids`` (all when None), or those of the failure
        ``group``, of ``w``, calling ``each`` with each chunk of their rows (``DeadRow``) first;
        how many (the lock is held). All of it is written at once, in one batch."""
        if w is not None and w.dead.count:
            self.writer.write_now()
        digests, rows = self._chosen(w, name, ids, group)
        if w is None or not w.dead.count or rows == []:
            return 0
        if each is not None:
            handed: list = []  # rows whose chunk ``each`` took whole
            try:
                for chunk in self.store.dead_rows(name, digests) if rows is None else [rows]:
                    each(chunk)
                    handed.extend(chunk)
            except BaseException:  # a read failed half-way: what was requeued stays requeued
                if handed:
                    self.writer.undead([row.seq for row in handed])
                    w.dead.remove(handed)
                    self.writer.write_now(check=False)
                raise
        before = w.dead.count
        if rows is None:
            self.writer.undead_groups(name, digests)
            w.dead.drop(digests)
        else:
            self.writer.undead([row.seq for row in rows])
            w.dead.remove(rows)
        # Done in memory now; on a full disk the writer thread writes it once it can.
        written = self.writer.write_now(check=False)
        if rows is not None and written:  # the groups they left (first seen, ids) recounted
            try:
                summary = self.store.dead_summary(name)
            except NBWorkersError as exc:  # DuckDB dropped its connection (a full disk)
                log.warning(
                    "the failure groups of %r are counted again at the next restart (%s)", name, exc
                )
            else:
                w.dead.drop(None)
                w.dead.load(summary)
        return before - w.dead.count

    def requeue(self, name: str, ids=None, group: str | None = None) -> list[str]:
        """Queue dead letters of ``name`` again (all by default, or those of the failure
        ``group``) as new messages, attempts from 1; returns the new message ids."""
        self.registry.known_or_valid(name)
        ids = _ids_or_group("requeue", ids, group)
        new: list[Message] = []
        with _uninterrupted(), self.registry.lock:
            self.registry.check_running()
            w = self.registry.workers.get(name)
            now = time.time()

            def queue_again(rows: list) -> None:
                plain: list[bytes] = []  # a run of rows with no key or expiry: one enqueue
                priority = 0
                for row in rows:
                    if row.key is None and row.expires_at is None and row.priority == priority:
                        plain.append(row.data)
                        continue
                    if plain:
                        new.extend(self.intake.enqueue_locked(w, plain, now, None, None, priority))
                    plain, priority = [], row.priority
                    if row.key is None and row.expires_at is None:
                        plain.append(row.data)
                    elif row.key is not None and row.key in w.keys:
                        new.append(w.keys[row.key])
                    else:
                        # Its own time to live again from now (a fresh expiry).
                        ttl = None if row.expires_at is None else row.expires_at - row.enqueued_at
                        new.extend(
                            self.intake.enqueue_locked(
                                w, [row.data], now, None, row.key, row.priority, ttl
                            )
                        )
                if plain:
                    new.extend(self.intake.enqueue_locked(w, plain, now, None, None, priority))

            if self._take(w, name, ids, group, queue_again):
                self.events.after_change(w)
        return [m.id for m in new]

    def discard(self, name: str, ids=None, group: str | None = None) -> int:
        """Drop dead letters of ``name`` (all by default, or those of the failure ``group``);
        how many were dropped."""
        self.registry.known_or_valid(name)
        ids = _ids_or_group("discard", ids, group)
        with _uninterrupted(), self.registry.lock:
            self.registry.check_running()
            w = self.registry.workers.get(name)
            count = self._take(w, name, ids, group)
            if count:
                self.events.after_change(w)
                if self.trimmer is not None:
                    self.trimmer.dropped(count)
        if count and self.trimmer is not None:
            self.trimmer.quiet_moment()
        return count
