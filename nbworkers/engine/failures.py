"""Failures grouped by cause (``nw.failures``): a worker's current dead letters by fingerprint
(``nbworkers/fingerprint.py``), most numerous first.

A group is the unit that keeps the full example traceback (its newest dead letter's, or for
the letters of an earlier kernel the one the file keeps for the group); its counts are those
of the dead letters kept now, so requeueing or discarding changes them. The groups are
counted as dead letters come and go (``dead.DeadLetters``).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from datetime import datetime

from .dead import Group
from .registry import Registry
from .worker import WorkerState

TIMES = "\u00d7"  # the multiplication sign of "1,000 x KeyError..."


@dataclass(frozen=True)
class Failure:
    """One group of a worker's dead letters that failed for the same cause."""

    fingerprint: str  # the group's digest: nw.requeue(name, group=...), nw.discard(...)
    title: str  # "KeyError: 'text' at line 2"
    traceback: str  # an example: its newest dead letter's traceback (see above)
    count: int  # dead letters of the group kept now
    first_seen: datetime  # when the oldest of them died
    last_seen: datetime  # when the newest of them died
    example_ids: tuple[str, ...]  # the ids of its first few dead letters, by id

    def __str__(self) -> str:
        return f"{self.count:,} {TIMES} {self.title} [{self.fingerprint}]"

    def __repr__(self) -> str:
        # (readable in a notebook's output: the fields by name, times to the second, and the
        # traceback, many lines, by its length only: print(group.traceback) shows it)
        lines = len(self.traceback.splitlines())
        return (
            f"Failure(fingerprint={self.fingerprint!r}, title={self.title!r}, "
            f"count={self.count}, first_seen={_when(self.first_seen)}, "
            f"last_seen={_when(self.last_seen)}, example_ids={self.example_ids!r}, "
            f"traceback=<{lines} line{'' if lines == 1 else 's'}>)"
        )


def _when(moment: datetime) -> str:
    return moment.isoformat(sep=" ", timespec="seconds")


def _ids(seqs: list[int]) -> tuple[str, ...]:
    return tuple(f"m{seq}" for seq in seqs)


def _order(g: Group) -> tuple[int, float]:
    return g.count, g.last_s  # the most numerous first, then the latest


def _ordered(found: dict[str, Group]) -> list[Group]:
    return sorted(found.values(), key=_order, reverse=True)


def top(w: WorkerState, n: int) -> tuple[tuple[str, str, int], ...]:
    """The ``n`` biggest groups of ``w``: (digest, title, count), for a panel."""
    biggest = heapq.nlargest(n, w.dead.groups.values(), key=_order)
    return tuple((g.failure.digest, g.failure.title, g.count) for g in biggest)


class Failures:
    """``nw.failures``, for one engine."""

    def __init__(self, registry: Registry):
        self.registry = registry

    def failures(self, name: str) -> list[Failure]:
        """The dead letters of ``name`` grouped by cause, most numerous first."""
        self.registry.known_or_valid(name)
        with self.registry.lock:
            w = self.registry.workers.get(name)
            found = _ordered(w.dead.groups) if w is not None else []
            rows = [(g.failure, g.traceback, g.count, g.first_s, g.last_s, g.ids) for g in found]
        aware = self.registry.zone.aware
        return [
            Failure(f.digest, f.title, error, count, aware(first), aware(last), _ids(seqs))
            for f, error, count, first, last, seqs in rows
        ]
