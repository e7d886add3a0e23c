"""Dead letters: what the engine keeps of them (``nw.dead_letters``, ``requeue`` and
``discard`` are in ``dead_admin``).

A dead letter lives only in the database (``store/dead.py``). In memory a worker keeps
``DeadLetters``: how many it has and their groups by cause (``nw.failures``, the panel's
groups), each a count, its first and last death, its smallest few ids and an example
traceback. A new dead letter is counted there and handed to the writer, which drops it once
written; so a worker with ten million dead letters holds no more memory than one with ten.

A new dead letter is a plain tuple in ``DeadRow``'s field order (``letter``), not an object:
made under the engine's lock for every failure of a drain, and the garbage collector stops
tracking a tuple of plain values, where an object (or a NamedTuple) it tracks until written
made a failing drain's collections twice as frequent.
"""

from __future__ import annotations

from bisect import insort
from typing import TYPE_CHECKING

from ..fingerprint import Fingerprint, fingerprint, known, own_line

if TYPE_CHECKING:
    from ..message import Message

# Fields of a dead letter (``letter``; DeadRow's order) read here
_SEQ, _ERROR, _DIED, _REASON, _DIGEST, _TITLE = 0, 6, 7, 8, 11, 12


def letter(
    message: Message,
    error: str,
    died_at_s: float,
    reason: str = "failed",
    failure: Fingerprint | None = None,
) -> tuple:
    """A message whose last attempt failed (``reason`` "failed"; "stopped" when nw.stop ended
    it), or that expired before it ran ("expired"), as a dead letter for the writer: a plain
    tuple in ``DeadRow``'s field order, its error whole (the store keeps its own line, and the
    whole traceback once per group), then its own line if this thread knows it already
    (``fingerprint.own_line``; None: the store finds it in the text). ``failure``: its group,
    if known already."""
    m = message
    found = fingerprint(error) if failure is None else failure
    return (
        m.seq,
        m.worker,
        m.enqueued_at_s,
        m.attempt,
        m.data,
        m.key,
        error,
        died_at_s,
        reason,
        m.priority,
        m.expires_at_s,
        found.digest,
        found.title,
        own_line(error),
    )


EXAMPLE_IDS = 5  # the smallest ids a group shows


class Group:
    """One failure group of a worker's dead letters: counted, never listed."""

    __slots__ = ("count", "expired", "failure", "first_s", "ids", "last_s", "traceback")

    def __init__(self, failure: Fingerprint, traceback: str, died_at_s: float):
        self.failure = failure
        self.traceback = traceback  # its newest dead letter's, or the file's for the group
        self.count = 0
        self.expired = 0  # of them, those that expired before they ran
        self.first_s = self.last_s = died_at_s
        self.ids: list[int] = []  # its EXAMPLE_IDS smallest seqs, in order


class DeadLetters:
    """A worker's dead letters as counts by group (the engine lock is held)."""

    __slots__ = ("count", "expired", "groups")

    def __init__(self):
        self.count = 0
        self.expired = 0
        self.groups: dict[str, Group] = {}  # by fingerprint digest

    def __len__(self) -> int:
        return self.count

    def add(self, letter: tuple) -> None:
        """Count a new dead letter (``letter``; the writer writes it)."""
        died = letter[_DIED]
        digest = letter[_DIGEST]
        group = self.groups.get(digest)
        if group is None:
            failure = known(digest, letter[_TITLE])
            group = self.groups[digest] = Group(failure, letter[_ERROR], died)
        group.count += 1
        self.count += 1
        if letter[_REASON] == "expired":
            group.expired += 1
            self.expired += 1
        if died < group.first_s:
            group.first_s = died
        if died >= group.last_s:
            group.last_s = died
            group.traceback = letter[_ERROR]
        ids = group.ids
        seq = letter[_SEQ]
        if len(ids) < EXAMPLE_IDS:
            insort(ids, seq)
        elif seq < ids[-1]:
            insort(ids, seq)
            ids.pop()

    def load(self, rows) -> None:
        """Replace the groups of ``rows`` (``DeadGroupRow``s, as the file counts them)."""
        for row in rows:
            group = Group(known(row.fingerprint, row.title), row.traceback, row.first_died)
            group.count, group.expired = row.count, row.expired
            group.last_s = row.last_died
            group.ids = sorted(row.example_seqs)[:EXAMPLE_IDS]
            self.groups[row.fingerprint] = group
        self._recount()

    def remove(self, rows) -> None:
        """Count out these dead letters (``DeadRow``s); a group's ids and times stay as they
        were until it is loaded again."""
        for row in rows:
            group = self.groups.get(row.fingerprint)
            if group is not None:
                group.count -= 1
                group.expired -= row.reason == "expired"
                if not group.count:
                    del self.groups[row.fingerprint]
        self._recount()

    def drop(self, digests: list[str] | None) -> None:
        """Forget the groups ``digests`` (None: all)."""
        if digests is None:
            self.groups = {}
        for digest in digests or ():
            self.groups.pop(digest, None)
        self._recount()

    def _recount(self) -> None:
        self.count = sum(g.count for g in self.groups.values())
        self.expired = sum(g.expired for g in self.groups.values())
