"""A value as one short line of text, for live values: a bounded repr, and DataFrames, Series
and arrays as their shape and dtype plus a head (pandas and numpy are never imported here: a
value is recognised by its type's module and name)."""

from __future__ import annotations

import itertools
import reprlib

TIMES = "\u00d7"  # the multiplication sign, as in "(\u00d73)" runs and a "4\u00d72" shape
MAX_CHARS = 120  # the longest a value is shown
MAX_HEAD = 3  # rows (or elements) of a DataFrame, Series or array shown
MAX_BLOCK = 4000  # characters of printed output or a traceback shown (as the panels do)


class _Repr(reprlib.Repr):
    """reprlib's, with dicts and sets in their own order as ``repr`` shows them: reprlib sorts
    them, which costs a sort of the whole container each time one is shown (a loop filling a
    dict shows it at every iteration) and shows a dict out of its insertion order."""

    def repr_dict(self, x, level):
        if not x:
            return "{}"
        if level <= 0:
            return "{" + self.fillvalue + "}"
        pieces = [
            f"{self.repr1(k, level - 1)}: {self.repr1(v, level - 1)}"
            for k, v in itertools.islice(x.items(), self.maxdict)
        ]
        if len(x) > self.maxdict:
            pieces.append(self.fillvalue)
        return "{" + ", ".join(pieces) + "}"

    def repr_set(self, x, level):
        if not x:
            return "set()"
        return self._repr_iterable(x, level, "{", "}", self.maxset)

    def repr_frozenset(self, x, level):
        if not x:
            return "frozenset()"
        return self._repr_iterable(x, level, "frozenset({", "})", self.maxfrozenset)


_repr = _Repr()
_repr.maxlevel = 3
_repr.maxlist = _repr.maxtuple = _repr.maxset = _repr.maxfrozenset = _repr.maxdeque = 8
_repr.maxdict = 6
_repr.maxstring = MAX_CHARS
_repr.maxlong = 40
_repr.maxother = MAX_CHARS

# Values that cannot change after they were made: shown when a run ends, not when assigned
# (most values a loop assigns are these, and most of a loop's iterations are not kept).
IMMUTABLE = (int, float, complex, bool, type(None), str, bytes, range)


def one_line(text: str, limit: int = MAX_CHARS) -> str:
    """``text`` on one line (newlines shown as ⏎), cut to ``limit`` characters with '…'."""
    text = text.replace("\r\n", "⏎").replace("\n", "⏎").replace("\r", "⏎")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clip(text: str, limit: int = MAX_BLOCK) -> str:
    """``text`` cut to its first ``limit`` characters, saying how many more there were (what
    a run printed, its traceback: shown in a cell or a panel, kept whole elsewhere)."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n… ({len(text) - limit:,} more characters)"


def is_immutable(value) -> bool:
    if type(value) in IMMUTABLE:
        return True
    return type(value) is tuple and len(value) <= 8 and all(type(v) in IMMUTABLE for v in value)


def show(value, limit: int = MAX_CHARS) -> str:
    """``value`` as one line of at most ``limit`` characters; never raises."""
    try:
        kind = type(value)
        module = kind.__module__.partition(".")[0]
        if module == "pandas" and kind.__name__ in ("DataFrame", "Series"):
            text = _pandas(value, kind.__name__)
        elif module == "numpy" and kind.__name__ == "ndarray":
            text = _array(value)
        else:
            text = _repr.repr(value)
    except Exception as exc:  # noqa: BLE001 - a broken __repr__ is shown, not raised
        text = f"<repr failed: {type(exc).__name__}: {exc}>"
    return one_line(text, limit)


def _pandas(value, kind: str) -> str:
    head = value.head(MAX_HEAD)
    if kind == "Series":
        name = f" {value.name!r}" if value.name is not None else ""
        items = ", ".join(_repr.repr(v) for v in head.tolist())
        more = ", …" if len(value) > MAX_HEAD else ""
        return f"Series{name} {len(value):,} · {value.dtype} · [{items}{more}]"
    rows, cols = value.shape
    dtypes = ", ".join(f"{c}: {t}" for c, t in list(value.dtypes.items())[:8])
    if cols > 8:
        dtypes += ", …"
    records = " | ".join(
        ", ".join(f"{c}={_repr.repr(v)}" for c, v in list(row.items())[:8])
        for row in head.to_dict("records")
    )
    more = " | …" if rows > MAX_HEAD else ""
    return f"DataFrame {rows:,}{TIMES}{cols:,} ({dtypes}) · {records}{more}"


def _array(value) -> str:
    shape = TIMES.join(f"{n:,}" for n in value.shape) or "scalar"
    flat = value.ravel()[:MAX_HEAD].tolist()
    items = ", ".join(_repr.repr(v) for v in flat)
    more = ", …" if value.size > MAX_HEAD else ""
    return f"ndarray {shape} · {value.dtype} · [{items}{more}]"
