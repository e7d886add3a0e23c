"""A trace: the record of one run of a handler, as ``nw.traces`` returns it."""

from __future__ import annotations

import io
import pickle
import reprlib
from datetime import UTC, datetime
from typing import NamedTuple

from .errors import NBWorkersError
from .fingerprint import fingerprint
from .message import ClassNotDefined, load_event, message_id

_preview = reprlib.Repr()
_preview.maxstring = 200
_preview.maxother = 200
_preview.maxlevel = 3

NO_RESULT = object()
# The repr of a result that its run did not copy: the run ended with enough messages queued
# that later traces would replace its own (a drain), yet they did not (the queue was purged,
# or the runtime stopped, meanwhile).
NOT_COPIED = "<not kept: runs queued after this one were to replace this trace>"


def preview(value) -> str:
    """A short repr of ``value`` that never raises."""
    try:
        return _preview.repr(value)
    # A user's __repr__ may raise anything, SystemExit included: the trace is still kept.
    except BaseException as exc:  # noqa: BLE001
        return f"<unrepresentable {type(value).__qualname__}: {exc!r}>"


class RunResult(NamedTuple):
    """What a run returned, ready for its trace: the value itself (NO_RESULT when it came back
    from another process), its pickled copy (None when the value is None, does not pickle or
    pickles to more than ``result_max_bytes``) and its repr preview."""

    value: object
    data: bytes | None
    repr: str | None


class _TooBig(Exception):
    """A result's pickle grew past its limit."""


class _BoundedBuffer(io.BytesIO):
    """Where a result is pickled: it refuses to grow past ``limit`` bytes, so that a huge
    result stops being pickled as soon as it is known not to be kept."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit

    def write(self, data) -> int:
        if self.tell() + memoryview(data).nbytes > self.limit:
            raise _TooBig
        return super().write(data)


# Exact types whose repr and pickle run no user code and cost little (a result is copied on
# every run, so a drain pays for it per message): copied without reprlib or a bounded buffer
# (and, in a pool process, pickled without cloudpickle's setup: executors/child.py).
PLAIN = frozenset([int, float, bool, str, bytes])


def run_result(value, max_bytes: int) -> RunResult:
    """The trace's copies of a run's result: its repr preview, and its pickle if at most
    ``max_bytes``. This runs user code (``__repr__``, ``__reduce__``...): call it in the
    run's own thread, where its time limit applies and its output is captured."""
    if value is None:
        return RunResult(value, None, "None")
    if type(value) in PLAIN and (
        not isinstance(value, str | bytes) or len(value) <= _preview.maxstring
    ):
        try:
            shown = repr(value)
        except ValueError:  # an int of more digits than sys.set_int_max_str_digits allows
            shown = ""
        if not shown or len(shown) > _preview.maxlong:  # reprlib shortens it: the same text
            shown = preview(value)
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        return RunResult(value, data if len(data) <= max_bytes else None, shown)
    shown = preview(value)
    buffer = _BoundedBuffer(max_bytes)
    try:
        pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    # Too big, or unpicklable (its __reduce__ may raise anything): only its repr is kept.
    except BaseException:  # noqa: BLE001
        return RunResult(value, None, shown)
    return RunResult(value, buffer.getvalue(), shown)


def result_pickle(value, max_bytes: int) -> bytes | None:
    """Only the pickle of a run's result (None for None, for a result that does not pickle or
    pickles to more than ``max_bytes``): what ``nw.result`` needs of a run whose trace will be
    replaced anyway (``Run.keep_result``). User code (``__reduce__``): the run's thread."""
    if value is None:
        return None
    if type(value) in PLAIN:
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        return data if len(data) <= max_bytes else None
    buffer = _BoundedBuffer(max_bytes)
    try:
        pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    except BaseException:  # noqa: BLE001 - too big, or its __reduce__ raised: not kept
        return None
    return buffer.getvalue()


class Trace:
    """What one run took, printed, returned or raised.

    Attributes: ``id``, ``message_id``, ``worker``, ``input`` (a fresh copy of the event),
    ``result``, ``result_repr``, ``error`` (the traceback text, or None), ``stdout`` (everything
    the run printed, stderr included), ``started_at`` (aware datetime), ``duration``
    (seconds), ``replay`` (True when made by ``nw.replay``), ``attempt`` (the message's
    attempt, from 1), ``timed_out`` (True when the run passed its ``--timeout``), ``calls``
    (the calls of ``@nw.recorded`` functions the run made, in call order, or None when it
    made none: a list of ``nbworkers.develop.calls.Call``), ``message_ids`` (the messages the
    run covered: a batch's, in order), ``batch_size`` (their number for a batch, else None) and
    ``progress`` (what ``message.progress`` said last, or None; kept while the kernel runs,
    not in the file).
    """

    __slots__ = (
        "seq",
        "message_seq",
        "worker",
        "input_data",
        "started_at_s",
        "duration",
        "stdout",
        "error",
        "replay",
        "attempt",
        "timed_out",
        "calls",
        "_result",
        "_result_data",
        "_result_repr",
        "message_seqs",
        "_failure",
        "progress",
    )

    def __init__(
        self,
        seq: int,
        message_seq: int,
        worker: str,
        input_data: bytes | None,
        started_at_s: float,
        duration: float,
        stdout: str,
        error: str | None,
        replay: bool = False,
        result=NO_RESULT,
        result_data: bytes | None = None,
        result_repr: str | None = None,
        attempt: int = 1,
        timed_out: bool = False,
        calls=None,
        message_seqs: list[int] | None = None,
    ):
        self.seq = seq
        self.message_seq = message_seq
        self.worker = worker
        self.input_data = input_data
        self.started_at_s = started_at_s
        self.duration = duration
        self.stdout = stdout
        self.error = error
        self.replay = replay
        self.attempt = attempt
        self.timed_out = timed_out
        self.calls = calls
        self._result = result
        self._result_data = result_data
        self._result_repr = result_repr
        self.message_seqs = message_seqs  # a batch's messages (--batch); None for one message
        self._failure = None  # its failure group, once asked (``failure``)
        self.progress = None  # what message.progress said last (nbworkers/progress.py)

    @property
    def failure(self):
        """The failure group of a failed run (``nbworkers/fingerprint.py``), made once."""
        found = self._failure
        if found is None:
            found = self._failure = fingerprint(self.error)
        return found

    @property
    def id(self) -> str:
        return f"t{self.seq}"

    @property
    def message_id(self) -> str:
        return message_id(self.message_seq)

    @property
    def message_ids(self) -> list[str]:
        """The ids of the messages this run covered: a batch's (``--batch``), or its one."""
        if self.message_seqs is None:
            return [self.message_id]
        return [message_id(seq) for seq in self.message_seqs]

    @property
    def batch_size(self) -> int | None:
        """How many messages this batch run covered; None for a run of one message."""
        return None if self.message_seqs is None else len(self.message_seqs)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def started_at(self) -> datetime:
        return datetime.fromtimestamp(self.started_at_s, UTC)

    @property
    def input(self):
        """A fresh copy of the event this run received (None for a run with no input)."""
        if self.input_data is None:
            return None
        return self._load("input", self.input_data)

    @property
    def result(self):
        """The run's result: the value itself while in memory, else its stored copy or None."""
        if self._result is not NO_RESULT:
            return self._result
        if self._result_data is not None:
            return self._load("result", self._result_data, "; result_repr shows what it was")
        return None

    def _load(self, what: str, data: bytes, hint: str = ""):
        """A fresh copy of the pickled ``what`` (input or result), or NBWorkersError saying
        why it cannot be unpickled."""
        try:
            return load_event(data)
        except ClassNotDefined as exc:
            raise NBWorkersError(
                f"trace {self.id}: its {what} cannot be unpickled yet: {exc}"
            ) from exc
        except Exception as exc:
            raise NBWorkersError(
                f"trace {self.id}: its {what} cannot be unpickled ({type(exc).__name__}: {exc})"
                f"{hint}"
            ) from exc

    @property
    def result_repr(self) -> str:
        if self._result_repr is None:
            if self._uncopied:
                return NOT_COPIED
            return preview(self.result)  # a failed run: "None"
        return self._result_repr

    @property
    def _uncopied(self) -> bool:
        return self._result is not NO_RESULT and self.error is None

    def stored_result(self) -> tuple[bytes | None, str | None]:
        """The pickled result and its repr preview, as made when the run ended (None, None
        for a failed run): what the writer stores. It runs no user code."""
        if self._result_repr is None and self._uncopied:
            return None, NOT_COPIED  # its value is in memory only: .result still has it
        return self._result_data, self._result_repr

    def __repr__(self) -> str:
        state = "ok" if self.ok else "timed out" if self.timed_out else "error"
        if self.replay:
            state += " (replay)"
        if self.message_seqs is not None:
            state += f" batch of {len(self.message_seqs):,}"
        try:
            shown = preview(self.input)
        except NBWorkersError:
            shown = "<cannot be unpickled yet>"
        return (
            f"<Trace {self.id} {self.worker!r} {state} at {self.started_at:%H:%M:%S} "
            f"({self.duration * 1000:.1f} ms) input={shown}>"
        )

    def by_id(self) -> tuple[bytes | None, str | None]:
        """What ``nw.result`` keeps of this run's result: its pickle (None for a None result
        or a failed run) and, when a result could not be kept (it does not pickle, or
        pickles to more than ``result_max_bytes``), why, with its repr. No user code."""
        data = self._result_data
        if data is not None or self.error is not None:
            return data, None
        if self._result is None or (self._result is NO_RESULT and self._result_repr == "None"):
            return None, None
        shown = self._result_repr
        return None, (
            "its result was not kept: it does not pickle, or pickles to more than "
            "NBWorkers.result_max_bytes" + ("" if shown is None else f" (it was {shown})")
        )
