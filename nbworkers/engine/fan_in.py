"""Fan-in: ``nw.emit_many(events, name, then="tally")`` (Celery's chord).

The messages of one ``emit_many`` are numbered consecutively, so a group is its first number
and its count. When every member has ended (done, or dead: failed for good, or removed before
it ran), worker ``then`` gets one message whose event is ``{"results": [...], "errors":
[...], "ids": [...]}`` in the group's order.

Durable and exactly once: the group's row is written with its messages; each member's end is
written with its result row (``results.py``); the ``then`` message and the deletion of the
group's row are recorded under the lock that settles the last member, so they reach the file in
one transaction, with that member's end. A restart reads the open groups and their members'
results back (``load``).

The ``then`` event is built without running user code under the lock: it is the pickle of a
call to ``fan_in_event`` with the members' pickled results, which the ``then`` run unpickles in
its own thread, like any event.
"""

from __future__ import annotations

import bisect
import pickle

from ..errors import ArgumentValueError
from ..handlers import check_name
from ..message import Message, load_event, message_id
from ..store.rows import FanInRow, Loaded
from .registry import Registry
from .worker import WorkerState


def fan_in_event(ids: list[str], datas: list, errors: list) -> dict:
    """The event a ``then`` worker receives (called when its message is unpickled)."""
    return {
        "results": [None if data is None else load_event(data) for data in datas],
        "errors": list(errors),
        "ids": list(ids),
    }


class _Deferred:
    """Pickles as a call to ``fan_in_event``: the members' results stay pickled until the
    ``then`` run unpickles its event."""

    __slots__ = ("args",)

    def __init__(self, *args):
        self.args = args

    def __reduce__(self):
        return (fan_in_event, self.args)


def check_then(then) -> str:
    """``then`` if it is a valid worker name, else ArgumentValueError saying so."""
    try:
        return check_name(then)
    except ArgumentValueError as exc:
        raise ArgumentValueError(f"emit_many: then={exc}") from None


class _Group:
    __slots__ = ("count", "datas", "ended", "errors", "first", "left", "then", "worker")

    def __init__(self, first: int, count: int, worker: str, then: str):
        self.first = first
        self.count = count
        self.worker = worker
        self.then = then
        self.datas: list[bytes | None] = [None] * count
        self.errors: list[str | None] = [None] * count
        self.ended = bytearray(count)  # 1 for each member that ended
        self.left = count  # members not ended yet


class FanIn:
    """The open fan-in groups of one engine; every method expects the lock held."""

    def __init__(self, registry: Registry, writer, intake):
        self.registry = registry
        self.writer = writer
        self.intake = intake
        self.groups: dict[int, _Group] = {}  # by first seq
        self._firsts: list[int] = []  # the groups' first seqs, in order

    def start(self, w: WorkerState, messages: list[Message], then: str, now: float) -> None:
        """``messages`` were just queued for ``w`` by one ``emit_many(..., then=then)``."""
        if not messages:  # nothing to wait for: the then event goes at once
            self._emit_then(then, [], [], [])
            return
        first = messages[0].seq
        group = _Group(first, len(messages), w.name, then)
        self._add(group)
        self.writer.fan_in(FanInRow(first, group.count, w.name, then, now))

    def _add(self, group: _Group) -> None:
        self.groups[group.first] = group
        bisect.insort(self._firsts, group.first)

    def ended(self, row: tuple) -> None:
        """A message ended (a ``ResultRow``'s fields): if it belongs to a group, note it, and
        emit the group's ``then`` message if it was the last."""
        seq = row[0]
        i = bisect.bisect_right(self._firsts, seq) - 1
        if i < 0:
            return
        group = self.groups[self._firsts[i]]
        k = seq - group.first
        if k >= group.count or group.ended[k]:
            return
        group.ended[k] = 1
        group.datas[k] = row[4]
        group.errors[k] = row[3]
        group.left -= 1
        if group.left == 0:
            self._finish(group)

    def _finish(self, group: _Group) -> None:
        if self.writer.stopped:
            # Nothing recorded now reaches the file, the member's end included: the member runs
            # again at the next start, and the group ends then.
            return
        del self.groups[group.first]
        self._firsts.remove(group.first)
        ids = [message_id(group.first + k) for k in range(group.count)]
        self._emit_then(group.then, ids, group.datas, group.errors)
        self.writer.fan_in_done(group.first)

    def _emit_then(self, then: str, ids: list, datas: list, errors: list) -> None:
        data = pickle.dumps(_Deferred(ids, datas, errors), protocol=pickle.HIGHEST_PROTOCOL)
        reg = self.registry
        self.intake.enqueue_locked(reg.state(then), [data], reg.clock())

    # ----- start-up ----------------------------------------------------------------------------

    def load(self, loaded: Loaded) -> None:
        """The groups open when the file was last written, with their members that had ended;
        members neither ended nor queued any more (lost) count as failed."""
        if not loaded.fan_ins:
            return
        for row in loaded.fan_ins:
            self._add(_Group(row.first_seq, row.count, row.worker, row.then))
        ended: set[int] = set()
        for row in loaded.fan_in_results:
            ended.add(row.seq)
            self.ended(tuple(row))
        queued = {m.seq for m in loaded.messages}
        for row in loaded.fan_ins:
            for seq in range(row.first_seq, row.first_seq + row.count):
                if seq not in ended and seq not in queued:
                    self.ended(
                        (
                            seq,
                            row.worker,
                            None,
                            "Lost: the database holds neither this message nor how it ended",
                            None,
                            None,
                        )
                    )
