"""Telling the user about failures: the ``on_failure`` callbacks hear of every failed run, and
after ``NBWorkers.failure_notice_after`` failures in a row a notice shows under the next cell
(and the panel says "failing").

While the failures go on, the notices stay readable however many runs fail: a failure group
(``nbworkers/fingerprint.py``) not named before is told of once, as it first fails in a
streak; later failures of groups already named are only counted, and each cell that runs next
shows one line per group with how many more failed (``Events.take_notices``)."""

from __future__ import annotations

from ...fingerprint import error_line
from ...trace import Trace
from ..worker import Run, WorkerState
from . import RunPolicy


def last_line(error: str) -> str:
    """The failure's own line ("KeyError: 'text'"): not a note after it, nor the box an
    ExceptionGroup's traceback ends with."""
    return error_line(error) or error


GROUPS_NAMED = 1000  # groups of one worker told of by name; past that, only counted


class FailureNotice(RunPolicy):
    def __init__(self, registry, events):
        self.after = registry.settings.failure_notice_after
        self.events = events
        self.named: dict[str, set[str]] = {}  # by worker: the groups told of by name

    def after_failure(self, w: WorkerState, run: Run, trace: Trace) -> bool:
        if run.batch_index:
            return False  # a batch failed: told once, for its first message
        if w.failing >= self.after:
            self._tell(w, trace)
        self.events.failed(w.name, trace)
        return False

    def _tell(self, w: WorkerState, trace: Trace) -> None:
        """A run of ``w`` failed, at least ``after`` in a row: a notice, or a count."""
        group = trace.failure
        named = self.named.setdefault(w.name, set())
        if w.failing != self.after and group.digest in named and self.events.counted(w.name, group):
            return  # one more of a group told of and counted already: a drain's hot path
        label = f"{w.kind_name} {w.name!r}"
        see = f"nw.traces({w.name!r})" if w.is_cron else f"nw.failures({w.name!r})"
        if w.failing == self.after:
            named.add(group.digest)
            self.events.notice(
                f"nbworkers: {label} has failed {w.failing} runs in a row; "
                f"the latest: {last_line(trace.error)}  (see nw.traces({w.name!r}); "
                f"its group {group.digest}: {group.title}, in {see})"
            )
        elif group.digest not in named and len(named) < GROUPS_NAMED:
            named.add(group.digest)
            self.events.notice(
                f"nbworkers: {label} fails for a new cause: {group.title} "
                f"(group {group.digest}; see {see})"
            )
        else:
            self.events.count_failure(w.name, label, group, see)
