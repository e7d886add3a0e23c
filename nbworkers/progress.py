"""A run's progress, for its panel: what ``message.progress(done, total, note)`` said last, or
what a ``tqdm`` bar the run prints (to its captured output) shows.

Reporting progress costs a handler an attribute set; the panel is told at most every
``NOTIFY_EVERY_S`` per message. A ``tqdm`` bar costs nothing more: its last line is read from
the run's output when a panel asks.
"""

from __future__ import annotations

import re
import time
from numbers import Real
from typing import NamedTuple

from .errors import ArgumentTypeError, ArgumentValueError

# A run's panel hears of its progress at most this often (a loop may report every item).
NOTIFY_EVERY_S = 0.2
# A tqdm line as it prints by default: "desc:  40%|████      | 4/10 [00:01<00:01, 3.9it/s]",
# or, without a total, "desc: 4it [00:01, 3.9it/s]".
_NUMBER = r"\d+(?:\.\d+)?[kMGT]?"
_TQDM = re.compile(
    rf"^(?:(?P<desc>.*?): )?\s*(?:(?P<pct>\d{{1,3}})%\|[^|]*\| ?(?P<n>{_NUMBER})/"
    rf"(?P<total>{_NUMBER})|(?P<count>{_NUMBER})(?:it| \w+) )\s*\["
)
_SCALE = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
# How much of a run's latest output is searched for a tqdm line
_LOOK_BACK = 8


class Progress(NamedTuple):
    """How far a run got: ``done`` of ``total`` (None: not known), and a note."""

    done: float
    total: float | None
    note: str

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return max(0.0, min(1.0, self.done / self.total))

    def text(self) -> str:
        """'4 of 10 (40 %) · note', '4 done · note'."""
        done = _number_text(self.done)
        shown = f"{done} done" if self.total is None else f"{done} of {_number_text(self.total)}"
        if self.fraction is not None:
            shown += f" ({self.fraction:.0%})".replace("%", " %")
        return f"{shown} · {self.note}" if self.note else shown

    def as_dict(self) -> dict:
        return {"done": self.done, "total": self.total, "note": self.note}


def _number_text(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def checked(done, total, note) -> Progress:
    """``message.progress``'s arguments, checked: a clear error names what to pass."""
    for name, value in (("done", done), ("total", total)):
        if value is None and name == "total":
            continue
        if isinstance(value, bool) or not isinstance(value, Real):
            raise ArgumentTypeError(
                f"message.progress: {name} must be a number, not {type(value).__name__}"
            )
        if value < 0 or value != value:  # negative or NaN
            raise ArgumentValueError(f"message.progress: {name} must be 0 or more, not {value!r}")
    if not isinstance(note, str):
        raise ArgumentTypeError(f"message.progress: note must be a str, not {type(note).__name__}")
    return Progress(done, total, note[:200])


def _tell_runtime(message) -> None:
    from . import current  # the runtime imports this module: imported late

    rt = current.run_owner()
    if rt is not None:  # (None on a Dask worker: its progress comes back with the outcome)
        rt.events.notify(message.worker)


# Whether any run reported progress yet: until then a run's end does not look (outcomes.py).
reported_any = False

# How a run's panel is told: in the kernel, by the runtime; a pool process sends it to the
# kernel instead (executors/child.py), which keeps it on the run's message and tells the panel.
tell = _tell_runtime


def reported(message, progress: Progress) -> None:
    """Keep ``progress`` on ``message`` and tell its panel (at most every NOTIFY_EVERY_S)."""
    global reported_any
    reported_any = True
    now = time.monotonic()
    last = getattr(message, "progress_told_s", None)
    message.progress_now = progress
    if last is not None and now - last < NOTIFY_EVERY_S:
        return
    message.progress_told_s = now
    tell(message)


def shown(said: Progress | None, output: list[str]) -> Progress | None:
    """How far a run got: what ``message.progress`` ``said`` last, else what a tqdm bar in
    its ``output`` (the parts printed, newest last) shows."""
    return said if said is not None else from_output(output)


def from_output(parts: list[str]) -> Progress | None:
    """The progress a ``tqdm`` bar shows in the newest of a run's output ``parts``, if any."""
    for part in reversed(parts[-_LOOK_BACK:]):
        if "\r" not in part and "it/s" not in part and "s/it" not in part:
            continue
        for line in reversed(re.split(r"[\r\n]", part)):
            found = _TQDM.match(line.strip("\x1b[A "))
            if found is not None:
                return _from_match(found)
    return None


def _from_match(found: re.Match) -> Progress:
    note = (found["desc"] or "").strip()
    if found["pct"] is not None:
        return Progress(_scaled(found["n"]), _scaled(found["total"]), note)
    return Progress(_scaled(found["count"]), None, note)


def _scaled(text: str) -> float:
    unit = text[-1] if text[-1] in _SCALE else ""
    return float(text[: len(text) - len(unit)]) * _SCALE[unit]
