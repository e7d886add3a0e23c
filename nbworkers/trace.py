"""A trace: the record of one run of a handler, as ``nw.traces`` returns it."""

from __future__ import annotations

import pickle
import reprlib
from datetime import UTC, datetime

from .errors import NBWorkersError
from .message import message_id

_preview = reprlib.Repr()
_preview.maxstring = 200
_preview.maxother = 200
_preview.maxlevel = 3

NO_RESULT = object()


def preview(value) -> str:
    """A short repr of ``value`` that never raises."""
    try:
        return _preview.repr(value)
    # A user's __repr__ may raise anything, SystemExit included: the trace is still kept.
    except BaseException as exc:  # noqa: BLE001
        return f"<unrepresentable {type(value).__qualname__}: {exc!r}>"


class Trace:
    """What one run took, printed, returned or raised.

    Attributes: ``id``, ``message_id``, ``worker``, ``input`` (a fresh copy of the event),
    ``result``, ``result_repr``, ``error`` (the traceback text, or None), ``stdout`` (everything
    the run printed, stderr included), ``started_at`` (aware datetime), ``duration``
    (seconds), ``replay`` (True when made by ``nw.replay``), ``attempt`` (the message's
    attempt, from 1), ``timed_out`` (True when the run passed its ``--timeout``).
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
        "_result",
        "_result_data",
        "_result_repr",
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
        self._result = result
        self._result_data = result_data
        self._result_repr = result_repr

    @property
    def id(self) -> str:
        return f"t{self.seq}"

    @property
    def message_id(self) -> str:
        return message_id(self.message_seq)

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
        try:
            return pickle.loads(self.input_data)
        except Exception as exc:
            raise NBWorkersError(
                f"trace {self.id}: its input cannot be unpickled ({exc!r}); run the cell that "
                "defines the event's class, then try again"
            ) from exc

    @property
    def result(self):
        """The run's result: the value itself while in memory, else its stored copy or None."""
        if self._result is not NO_RESULT:
            return self._result
        if self._result_data is not None:
            return pickle.loads(self._result_data)
        return None

    @property
    def result_repr(self) -> str:
        if self._result_repr is None:
            self._result_repr = preview(self.result)
        return self._result_repr

    def result_for_storage(self, max_bytes: int) -> tuple[bytes | None, str]:
        """The pickled result when small and picklable, and the repr preview."""
        data = self._result_data
        if data is None and self._result is not NO_RESULT and self._result is not None:
            try:
                data = pickle.dumps(self._result, protocol=pickle.HIGHEST_PROTOCOL)
            except BaseException:  # noqa: BLE001 - an unpicklable result keeps only its repr
                data = None
        if data is not None and len(data) > max_bytes:
            data = None  # also a result pickled in another process (--executor processes)
        return data, self.result_repr

    def __repr__(self) -> str:
        state = "ok" if self.ok else "timed out" if self.timed_out else "error"
        if self.replay:
            state += " (replay)"
        try:
            shown = preview(self.input)
        except NBWorkersError:
            shown = "<cannot be unpickled yet>"
        return (
            f"<Trace {self.id} {self.worker!r} {state} at {self.started_at:%H:%M:%S} "
            f"({self.duration * 1000:.1f} ms) input={shown}>"
        )
