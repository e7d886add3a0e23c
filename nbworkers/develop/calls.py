"""What the calls of ``@nw.recorded`` functions leave in a trace: ``Call`` (one call: the
function's name, previews of its arguments and result, its error, and its pickled result or
exception, for a replay to give back) and ``Calls`` (a trace's calls, in call order, bounded).

Plain data: nothing here runs user code except ``Calls.add``, which copies a call's result the
way a run's result is copied (``trace.run_result``), on the thread that made the call.
"""

from __future__ import annotations

import json
import pickle

from ..errors import NBWorkersError
from ..message import ClassNotDefined, load_event
from ..trace import _BoundedBuffer, _TooBig, preview, run_result

# A call's pickled result (or exception) larger than this keeps only its preview, as a run's
# result does at NBWorkers.result_max_bytes' default.
CALL_MAX_BYTES = 65536
# A trace keeps the values of its calls up to this many bytes in all, and at most this many
# calls: past them, calls keep only their previews, then are counted and not kept at all.
TRACE_MAX_BYTES = 1 << 20
MAX_CALLS = 1000

_NONE = pickle.dumps(None, protocol=pickle.HIGHEST_PROTOCOL)
_FORMAT = 1  # of Calls.stored()'s blob


def _shown(value) -> str:
    """``preview(value)``, faster for the small plain values most arguments are."""
    kind = type(value)
    if (kind is str and len(value) <= 100) or kind is bool or kind is float or value is None:
        return repr(value)
    if kind is int and -(10**18) < value < 10**18:
        return repr(value)
    return preview(value)


def args_text(args: tuple, kwargs: dict) -> str:
    """``'a', 2, key='b'``: the arguments of a call as they would be written (previews)."""
    shown = [_shown(a) for a in args]
    if kwargs:
        shown += [f"{k}={_shown(v)}" for k, v in kwargs.items()]
    return ", ".join(shown)


def error_text(exc: BaseException) -> str:
    """``ValueError: boom``, never raising (a user's ``__str__`` may)."""
    try:
        message = str(exc)
    except BaseException:  # noqa: BLE001 - a user's __str__ may raise anything
        message = "<unprintable>"
    name = type(exc).__qualname__
    return f"{name}: {message}" if message else name


class Call:
    """One call of a ``@nw.recorded`` function.

    ``name`` (the function's qualified name), ``args`` (a preview of its arguments),
    ``result`` (a preview of what it returned; None when it raised), ``error`` (``"Type:
    message"`` of what it raised, or None), ``data`` (the pickled result or exception, or
    None when it could not be kept: ``note`` says why), ``replayed`` (in a replay's trace: True
    when the result came from the replayed trace, False when the function was called for real).
    """

    __slots__ = ("args", "data", "error", "name", "note", "replayed", "result")

    def __init__(self, name, args, result, error, data, note=None, replayed=False):
        self.name = name
        self.args = args
        self.result = result
        self.error = error
        self.data = data
        self.note = note
        self.replayed = replayed

    @property
    def kept(self) -> bool:
        """Whether a replay can give its result (or exception) back."""
        return self.data is not None

    def value(self):
        """A fresh copy of what the call returned (or of the exception it raised)."""
        if self.data is None:
            raise NBWorkersError(f"the result of {self.name}() was not kept: {self.note}")
        try:
            return load_event(self.data)
        except ClassNotDefined as exc:
            raise NBWorkersError(
                f"the recorded result of {self.name}() cannot be unpickled yet: {exc}"
            ) from exc
        except Exception as exc:
            raise NBWorkersError(
                f"the recorded result of {self.name}() cannot be unpickled "
                f"({type(exc).__name__}: {exc})"
            ) from exc

    def line(self) -> str:
        """``fetch('u') -> 200``, ``fetch('u') raised ValueError: boom``, with what became of
        it in a replay and why its value was not kept."""
        outcome = f"raised {self.error}" if self.error is not None else f"-> {self.result}"
        text = f"{self.name}({self.args}) {outcome}"
        if self.replayed:
            text += "  [replayed]"
        if self.note:
            text += f"  [not kept: {self.note}]"
        return text

    def as_dict(self) -> dict:
        return {
            "call": self.name,
            "args": self.args,
            "result": self.result,
            "error": self.error,
            "kept": self.kept,
            "replayed": self.replayed,
        }

    def __repr__(self) -> str:
        return f"<Call {self.line()}>"

    def __eq__(self, other) -> bool:
        return isinstance(other, Call) and _fields(self) == _fields(other)

    __hash__ = None


def _fields(call: Call) -> tuple:
    return (call.name, call.args, call.result, call.error, call.data, call.note, call.replayed)


class Calls(list):
    """A trace's recorded calls, in call order: at most ``MAX_CALLS`` (``dropped`` counts the
    calls past them), their values at most ``TRACE_MAX_BYTES`` in all (``nbytes``); ``note``
    says why none was kept (``NOT_COPIED``), else None."""

    __slots__ = ("dropped", "nbytes", "note")

    def __init__(self, calls=(), note: str | None = None):
        super().__init__(calls)
        self.dropped = 0
        self.nbytes = 0
        self.note = note

    def copy(self) -> Calls:
        new = Calls(self, self.note)
        new.dropped, new.nbytes = self.dropped, self.nbytes
        return new

    def add(self, name: str, args: str, value, exc: BaseException | None, replayed=False):
        """Keep a call that returned ``value`` (or raised ``exc``). It copies the value
        (``__repr__``, ``__reduce__``: user code), on the calling thread."""
        if len(self) >= MAX_CALLS:
            self.dropped += 1
            return
        if exc is None:
            error = None
            if value is None:
                data, shown = _NONE, "None"
            else:
                _, data, shown = run_result(value, CALL_MAX_BYTES)
        else:
            error, shown, data = error_text(exc), None, _pickled(exc)
        note = None
        if data is None:
            what = "result" if exc is None else "exception"
            note = f"its {what} does not pickle, or pickles to more than {CALL_MAX_BYTES:,} bytes"
        elif self.nbytes + len(data) > TRACE_MAX_BYTES:
            data = None
            note = f"the trace's recorded values passed {TRACE_MAX_BYTES:,} bytes"
        else:
            self.nbytes += len(data)
        self.append(Call(name, args, shown, error, data, note, replayed))

    def lines(self) -> list[str]:
        """One line a call (``Call.line``), and one for the calls not kept."""
        shown = [c.line() for c in self]
        if self.note:
            shown.append(f"(calls not kept: {self.note})")
        if self.dropped:
            shown.append(f"… {self.dropped:,} more calls, not kept (at most {MAX_CALLS:,})")
        return shown

    def stored(self) -> tuple[bytes, str]:
        """What the store keeps: the calls pickled (plain values only), and as JSON text
        (without their values) for ``nw.sql``'s ``traces.calls``."""
        blob = pickle.dumps(
            (_FORMAT, self.dropped, [_fields(c) for c in self], self.note),
            protocol=pickle.HIGHEST_PROTOCOL,
        )
        shown = [c.as_dict() for c in self]
        if self.note:
            shown.append({"call": None, "not_kept": self.note})
        if self.dropped:
            shown.append({"call": None, "not_kept": self.dropped})
        return blob, json.dumps(shown, ensure_ascii=False)

    @classmethod
    def load(cls, blob: bytes) -> Calls:
        """The calls ``stored`` kept. A blob that cannot be read gives one call saying so
        (the trace still loads)."""
        try:
            _, dropped, rows, note = pickle.loads(blob)
            calls = cls((Call(*row) for row in rows), note)
        except Exception as exc:  # noqa: BLE001 - a damaged row must not stop start-up
            calls = cls([Call("?", "", None, None, None, f"unreadable ({exc!r})")])
            return calls
        calls.dropped = dropped
        calls.nbytes = sum(len(c.data) for c in calls if c.data is not None)
        return calls


# The calls of a run that newer traces were to replace (a drain): not copied, as its result
# is not (``Run.keep_result``). Shared by every such run, never changed.
NOT_COPIED = Calls(note="runs queued after this one were to replace this trace")


def _pickled(exc: BaseException) -> bytes | None:
    """``exc`` pickled, if it pickles within ``CALL_MAX_BYTES`` (its traceback is dropped)."""
    buffer = _BoundedBuffer(CALL_MAX_BYTES)
    try:
        pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(exc)
        data = buffer.getvalue()
        load_event(data)  # an exception whose __init__ takes other arguments does not load
    except (_TooBig, BaseException):  # noqa: BLE001 - __reduce__ may raise anything
        return None
    return data
