"""Failures grouped by cause (``nw.failures``): a worker's current dead letters by fingerprint
(``nbworkers/fingerprint.py``), most numerous first.

A group is the unit that keeps the full example traceback (its newest dead letter's); its
counts are those of the dead letters kept now, so requeueing or discarding changes them.

The groups of a worker are kept up to date without a hook where dead letters come and go:
its list of dead letters is only appended to, or replaced by another list (requeue, discard),
so an index that remembers the list and how much of it it has counted counts only the new
tail, and counts again from scratch only after a replacement.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from datetime import datetime

from ..errors import NBWorkersError
from ..fingerprint import Fingerprint
from .registry import Registry
from .worker import DeadLetter, WorkerState

EXAMPLE_IDS = 5  # message ids a group shows
TIMES = "\u00d7"  # the multiplication sign of "1,000 x KeyError..."


@dataclass(frozen=True)
class Failure:
    """One group of a worker's dead letters that failed for the same cause."""

    fingerprint: str  # the group's digest: nw.requeue(name, group=...), nw.discard(...)
    title: str  # "KeyError: 'text' at line 2"
    traceback: str  # the newest dead letter's traceback (an example)
    count: int  # dead letters of the group kept now
    first_seen: datetime  # when the oldest of them died
    last_seen: datetime  # when the newest of them died
    example_ids: tuple[str, ...]  # the ids of its first few dead letters, by id

    def __str__(self) -> str:
        return f"{self.count:,} {TIMES} {self.title} [{self.fingerprint}]"


class _Group:
    """A group being counted: its count, its oldest few ids and its newest letter."""

    __slots__ = ("count", "failure", "first_s", "ids", "newest")

    def __init__(self, failure: Fingerprint, letter: DeadLetter):
        self.failure = failure
        self.count = 0
        self.first_s = letter.died_at_s
        self.ids: list[int] = []  # the seqs of its first EXAMPLE_IDS dead letters
        self.newest = letter


class _Index:
    """The groups of one worker's list of dead letters, counted up to ``seen``."""

    __slots__ = ("groups", "letters", "seen")

    def __init__(self, letters: list[DeadLetter]):
        self.letters = letters
        self.seen = 0
        self.groups: dict[str, _Group] = {}

    def update(self) -> dict[str, _Group]:
        groups = self.groups
        for letter in self.letters[self.seen :]:
            failure = letter.failure
            group = groups.get(failure.digest)
            if group is None:
                group = groups[failure.digest] = _Group(failure, letter)
            group.count += 1
            group.first_s = min(group.first_s, letter.died_at_s)
            if letter.died_at_s >= group.newest.died_at_s:
                group.newest = letter
            if len(group.ids) < EXAMPLE_IDS:
                group.ids.append(letter.message.seq)
        self.seen = len(self.letters)
        return groups


def _ids(seqs: list[int]) -> tuple[str, ...]:
    return tuple(f"m{seq}" for seq in seqs)


def groups(w: WorkerState) -> dict[str, _Group]:
    """The groups of ``w``'s dead letters kept now, by digest (the engine lock is held)."""
    index = w.failure_index
    if index is None or index.letters is not w.dead or index.seen > len(w.dead):
        index = w.failure_index = _Index(w.dead)
    return index.update()


def _order(g: _Group) -> tuple[int, float]:
    return g.count, g.newest.died_at_s  # the most numerous first, then the latest


def _ordered(found: dict[str, _Group]) -> list[_Group]:
    return sorted(found.values(), key=_order, reverse=True)


def top(w: WorkerState, n: int) -> tuple[tuple[str, str, int], ...]:
    """The ``n`` biggest groups of ``w``: (digest, title, count), for a panel."""
    biggest = heapq.nlargest(n, groups(w).values(), key=_order)
    return tuple((g.failure.digest, g.failure.title, g.count) for g in biggest)


def selected(w: WorkerState | None, name: str, group: str) -> set[str]:
    """The digest ``group`` of ``w`` checked: NBWorkersError, saying how to list the groups,
    when ``name`` has no dead letter of that group."""
    if not isinstance(group, str) or w is None or group not in groups(w):
        raise NBWorkersError(
            f"{name!r} has no dead letters in the failure group {group!r}; "
            f"nw.failures({name!r}) lists its groups (each .fingerprint). Nothing was changed."
        )
    return {group}


class Failures:
    """``nw.failures``, for one engine. ``tracebacks``: each group's whole traceback as the
    file kept it, by (worker, fingerprint), for dead letters read back from the file (which
    keep only their own error line)."""

    def __init__(self, registry: Registry, tracebacks: dict[tuple[str, str], str] | None = None):
        self.registry = registry
        self.tracebacks = tracebacks or {}

    def _traceback(self, name: str, g: _Group) -> str:
        """The newest dead letter's traceback, or, if it was read back from the file (its own
        error line only), the group's as the file kept it."""
        error = g.newest.error
        if "\n" in error.strip():
            return error
        return self.tracebacks.get((name, g.failure.digest), error)

    def failures(self, name: str) -> list[Failure]:
        """The dead letters of ``name`` grouped by cause, most numerous first."""
        self.registry.known_or_valid(name)
        with self.registry.lock:
            w = self.registry.workers.get(name)
            found = _ordered(groups(w)) if w is not None else []
            rows = [
                (
                    g.failure,
                    self._traceback(name, g),
                    g.count,
                    g.first_s,
                    g.newest.died_at_s,
                    sorted(g.ids),
                )
                for g in found
            ]
        aware = self.registry.zone.aware
        return [
            Failure(f.digest, f.title, error, count, aware(first), aware(last), _ids(seqs))
            for f, error, count, first, last, seqs in rows
        ]
