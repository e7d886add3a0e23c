"""``MemoryStore``: a store in dicts, for fast tests of the writer and the runtime.

It keeps what DuckDB would (queued messages, dead letters, the newest traces of each worker,
workers' rows, the next sequence number) and can be told to fail the way a disk does::

    store = MemoryStore()
    rt = Runtime(path, store=store)
    store.fail_with = OSError("No space left on device")  # every apply raises, nothing applied
    store.fail_with = None  # the disk has room again
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from .rows import (
    Batch,
    DeadGroupRow,
    DeadRow,
    FanInRow,
    Loaded,
    MessageRow,
    ResultRow,
    SpillRow,
    TraceRow,
    UpdateRow,
    WorkerRow,
    kept_error,
    letter_line,
    letter_row,
)


class MemoryStore:
    """The ``Store`` protocol in dicts. ``applied`` lists the batches applied, in order.

    ``fail_with``: an exception every ``apply`` raises, with nothing applied, until set to
    None. ``committed_warning``: a text every ``apply`` returns after applying its batch (DuckDB
    committed, then could not checkpoint). ``on_apply``: called with each batch before it is
    applied (to make a write slow, or see one start).
    """

    def __init__(self, path: str = ":memory:", traces_kept: int = 10, next_seq: int = 1):
        self.path = path
        self.traces_kept = traces_kept
        self.next_seq = next_seq
        self.messages: dict[int, MessageRow] = {}
        self.dead: dict[int, DeadRow] = {}
        # (worker, fingerprint) -> the whole traceback of the group's first dead letter
        self.group_tracebacks: dict[tuple[str, str], str] = {}
        self.traces: dict[int, TraceRow] = {}
        self.workers: dict[str, WorkerRow] = {}
        self.rate_starts: list[tuple[str, float]] = []  # (worker, started_at)
        self.results: dict[int, ResultRow] = {}
        self.fan_ins: dict[int, FanInRow] = {}
        self.applied: list[Batch] = []
        self.fail_with: BaseException | None = None
        self.committed_warning: str | None = None
        self.on_apply: Callable[[Batch], object] | None = None
        self.checkpoints = 0
        self.closed = False

    def load(self, window: int | None = None) -> Loaded:
        seqs = [*self.messages, *self.traces, *self.dead]
        seqs += [t.message_seq for t in self.traces.values()]
        messages, spilled, keys = self._window(window)
        return Loaded(
            max(self.next_seq, max(seqs, default=0) + 1),
            list(self.workers.values()),
            messages,
            [self.traces[seq] for seq in sorted(self.traces, reverse=True)],
            self.dead_summary(),
            sorted(self.rate_starts, key=lambda row: row[1]),
            [self.fan_ins[first] for first in sorted(self.fan_ins)],
            [r for seq, r in sorted(self.results.items()) if self._in_fan_in(seq)],
            spilled,
            keys,
        )

    def _window(self, window: int | None) -> tuple[list[MessageRow], list[SpillRow], list]:
        """As ``queued.read_window``: every delayed row and each worker's first ``window``
        ready rows in run order (all when None), the lines of the others, their keys."""
        rows = [self.messages[seq] for seq in sorted(self.messages)]
        if window is None:
            return rows, [], []
        kept, spilled, ready = [], [], {}
        for row in rows:
            if row.due_at is None:
                ready.setdefault(row.worker, []).append(row)
            else:
                kept.append(row)
        for worker, mine in ready.items():
            lines: dict[int, list[MessageRow]] = {}
            for row in mine:
                lines.setdefault(row.priority, []).append(row)
            left = window
            for priority in sorted(lines, reverse=True):
                line = lines[priority]
                kept += line[:left]
                if len(line) > left:
                    last = line[left - 1] if left else None
                    first = last.seq + 1 if last else line[0].seq
                    oldest = last.enqueued_at if last else min(r.enqueued_at for r in line)
                    spilled.append(SpillRow(worker, priority, len(line) - left, first, oldest))
                left = max(0, left - len(line))
        seqs = {row.seq for row in kept}
        keys = [(r.seq, r.worker, r.key) for r in rows if r.key is not None and r.seq not in seqs]
        return kept, spilled, [k for k in keys if self.messages[k[0]].due_at is None]

    def _ready(self, worker: str, priority: int, first: int) -> list[MessageRow]:
        rows = self.messages.values()
        return sorted(
            (
                r
                for r in rows
                if r.worker == worker
                and r.priority == priority
                and r.seq >= first
                and r.due_at is None
            ),
            key=lambda r: r.seq,
        )

    def queued_page(self, worker, priority, first, limit, last=None):
        return self._ready(worker, priority, first)[:limit]

    def queued_seqs(self, worker: str, priority: int, first: int, last: int, limit: int):
        return [r.seq for r in self._ready(worker, priority, first) if r.seq <= last][:limit]

    def queued_row(self, seq: int):
        return self.messages.get(seq)

    def _in_fan_in(self, seq: int) -> bool:
        return any(g.first_seq <= seq < g.first_seq + g.count for g in self.fan_ins.values())

    def result_of(self, seq: int):
        if seq in self.results:
            return self.results[seq], None
        queued = self.messages.get(seq)
        if queued is None and seq in self.dead:  # a dead letter from before results were kept
            dead = self.dead[seq]
            return ResultRow(seq, dead.worker, None, dead.error, None, None), None
        return None, None if queued is None else queued.worker

    def apply(self, batch: Batch) -> str | None:
        if self.on_apply is not None:
            self.on_apply(batch)
        if self.fail_with is not None:
            raise self.fail_with
        self.closed = False  # as DuckDBStore opens its file again
        for row in map(MessageRow._make, batch.inserts):  # plain tuples from the writer
            self.messages[row.seq] = row
        for row in map(UpdateRow._make, batch.updates):
            if row.seq in self.messages:
                self.messages[row.seq] = self.messages[row.seq]._replace(
                    attempt=row.attempt, started=row.started, due_at=row.due_at
                )
        for seq in batch.acks:
            self.messages.pop(seq, None)
        for worker, digests in batch.dead_discards:
            for row in self._dead_of(worker, digests):
                del self.dead[row.seq]
        for letter in batch.dead_inserts:  # as DuckDBStore: its own line, the group's traceback
            row = letter_row(letter)
            self.group_tracebacks.setdefault((row.worker, row.fingerprint), row.error)
            self.dead[row.seq] = row._replace(error=kept_error(row.error, letter_line(letter)))
        for seq in batch.dead_deletes:
            self.dead.pop(seq, None)
        if batch.dead_deletes or batch.dead_discards:
            left = {(d.worker, d.fingerprint) for d in self.dead.values()}
            self.group_tracebacks = {g: t for g, t in self.group_tracebacks.items() if g in left}
        for row in batch.traces:
            self.traces[row.seq] = row
        for row in batch.workers:
            self.workers[row.name] = row
        for row in map(ResultRow._make, batch.results):
            self.results[row.seq] = row._replace(ended_at=batch.results_ended_at)
        for row in batch.fan_in_inserts:
            self.fan_ins[row.first_seq] = row
        for first in batch.fan_in_deletes:
            self.fan_ins.pop(first, None)
        if batch.prune_results_before is not None:
            cutoff = batch.prune_results_before
            for seq in [s for s, r in self.results.items() if r.ended_at < cutoff]:
                if not self._in_fan_in(seq):
                    del self.results[seq]
        if batch.traces:
            self._keep_newest_traces()  # after the workers' rows: they say how many to keep
        if batch.rate_starts:
            back: dict[str, float] = {}
            for name, at, period_s in batch.rate_starts:
                self.rate_starts.append((name, at))
                back[name] = max(back.get(name, at - period_s), at - period_s)
            self.rate_starts = [r for r in self.rate_starts if r[1] > back.get(r[0], r[1] - 1)]
        if batch.next_seq is not None:
            self.next_seq = batch.next_seq
        self.applied.append(batch)
        return self.committed_warning

    def _keep_newest_traces(self) -> None:
        kept: dict[str, int] = {}
        for seq in sorted(self.traces, reverse=True):
            worker = self.traces[seq].worker
            kept[worker] = kept.get(worker, 0) + 1
            row = self.workers.get(worker)
            keep = row.keep if row is not None and row.keep is not None else self.traces_kept
            if kept[worker] > keep:
                del self.traces[seq]

    def _dead_of(self, worker, digests=None, seqs=None) -> list[DeadRow]:
        """As store/dead.py's ``read_rows``, all at once."""
        rows = sorted(self.dead.values(), key=lambda d: (d.died_at, d.seq))
        return [
            d
            for d in rows
            if d.worker == worker
            and (digests is None or d.fingerprint in digests)
            and (seqs is None or d.seq in seqs)
        ]

    def dead_page(self, worker: str, limit: int | None, offset: int) -> list[DeadRow]:
        rows = self._dead_of(worker)
        return rows[offset : None if limit is None else offset + limit]

    def dead_rows(self, worker, digests=None, seqs=None) -> Iterator[list[DeadRow]]:
        rows = self._dead_of(worker, digests, None if seqs is None else set(seqs))
        for start in range(0, len(rows), 2):  # small chunks: the caller must page
            yield rows[start : start + 2]

    def dead_summary(self, worker: str | None = None) -> list[DeadGroupRow]:
        groups: dict[tuple[str, str], list[DeadRow]] = {}
        for d in sorted(self.dead.values(), key=lambda d: (d.died_at, d.seq)):
            if worker is None or d.worker == worker:
                groups.setdefault((d.worker, d.fingerprint), []).append(d)
        return [
            DeadGroupRow(
                w,
                fp,
                rows[0].title or "",
                self.group_tracebacks.get((w, fp), rows[0].error),
                len(rows),
                sum(d.reason == "expired" for d in rows),
                rows[0].died_at,
                rows[-1].died_at,
                sorted(d.seq for d in rows)[:5],
            )
            for (w, fp), rows in groups.items()
        ]

    def sql(self, query: str, params=None):
        raise NotImplementedError(
            "MemoryStore has no SQL: test nw.sql with a DuckDBStore (a file, or ':memory:')"
        )

    def checkpoint(self) -> None:
        self.checkpoints += 1

    def close(self) -> None:
        self.closed = True
