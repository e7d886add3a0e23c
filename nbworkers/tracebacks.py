"""A failure's traceback as text, its frames formatted once per shape.

Formatting a traceback (``traceback.format_exception``: the frames, their source lines and
carets) costs far more than the rest of a failed run: it made a failing drain about five times
slower than a successful one. A million messages failing on one ``KeyError`` share one shape,
the same frames stopped at the same instructions, and differ only in the exception's own line
(``KeyError: 'a'``, ``KeyError: 'b'``). So the text of the frames is kept by shape, and only
the exception's line is formatted each time: the very text ``traceback`` gives, at a fraction of
the cost (tests/test_tracebacks.py checks they are equal). Chained exceptions, notes and syntax
errors are formatted whole each time.
"""

from __future__ import annotations

import sys
import threading
import traceback
from types import TracebackType

SHAPES_MAX = 1024  # shapes kept; past that the cache starts again (new cells, new shapes)
# shape -> (the text before the exception's own line, the shape's code objects: kept alive, so
# that no other code object takes one's id while the shape is kept, and a dict of its own for
# fingerprint.py: failures of one shape share a type and a handler line, so their groups are
# known by their own line alone)
_shapes: dict[tuple, tuple[str, tuple, dict]] = {}
# This thread's last traceback formatted by shape: (its text, the shape's dict, its own line).
# The run thread that formats a failure is the one that settles it (engine/dispatch.py), and
# fingerprint.py finds its group from its own line instead of parsing its text.
_last = threading.local()
# From Python 3.12, ``traceback`` adds "Did you mean: ...?" to these exceptions' line, from the
# names around when it is formatted: formatted whole there.
_SUGGESTED = (NameError, AttributeError, ImportError) if sys.version_info >= (3, 12) else ()
# Formatted whole each time: syntax errors (their caret line), groups (their box) and, from
# Python 3.12, the exceptions with suggestions above
_WHOLE = (SyntaxError, BaseExceptionGroup, *_SUGGESTED)
_SYS = vars(sys)  # the sys module's own dict: sys.tracebacklimit = 5 sets it there


def formatted(exc: BaseException, tb: TracebackType | None) -> str:
    """``traceback.format_exception`` of ``exc`` with traceback ``tb``, as one string."""
    if (
        exc.__cause__ is not None
        or exc.__context__ is not None
        or isinstance(exc, _WHOLE)
        or getattr(exc, "__notes__", None) is not None
    ):
        return "".join(traceback.format_exception(type(exc), exc, tb))
    shape = _shape(exc, tb)
    only = _exception_line(exc)
    found = _shapes.get(shape)
    if found is not None:
        text = found[0] + only
        _last.formatted = (text, found[2], only)
        return text
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    if only and text.endswith(only):
        if len(_shapes) >= SHAPES_MAX:
            _shapes.clear()
        found = _shapes[shape] = (text[: -len(only)], _codes(tb), {})
        _last.formatted = (text, found[2], only)
    return text


def last_formatted() -> tuple[str, dict, str] | None:
    """This thread's last traceback formatted by shape: its text, its shape's dict (for
    fingerprint.py) and its own line (``KeyError: 'a'``); None if none yet."""
    return getattr(_last, "formatted", None)


def _exception_line(exc: BaseException) -> str:
    """``traceback.format_exception_only`` of a plain exception (no notes, not a syntax error
    or a group), without building a ``TracebackException``: its type, qualified by its module
    unless builtin or ``__main__``, and its message."""
    kind = type(exc)
    name = kind.__qualname__
    module = kind.__module__
    if module not in ("__main__", "builtins"):
        name = f"{module if isinstance(module, str) else '<unknown>'}.{name}"
    try:
        message = str(exc)
    except BaseException:  # noqa: BLE001 - as traceback says it (its bare except)
        message = "<exception str() failed>"
    return f"{name}: {message}\n" if message else f"{name}\n"


def _shape(exc: BaseException, tb: TracebackType | None) -> tuple:
    """The exception's type and, for each frame, its code object's id and the instruction it
    was at, and ``sys.tracebacklimit`` (frames shown). Ids, not the code objects: hashing a code
    object hashes its bytecode and constants, which cost a failing drain 2 µs a failure; the
    shape keeps its code objects alive (``_codes``), so an id stays theirs. A new version of a
    cell, or a module reloaded, has new code objects: a new shape."""
    # (the module's dict: ``getattr(sys, ..., None)`` builds and drops an AttributeError when
    # it is not set, the usual case, at 0.7 µs a failure)
    shape = [type(exc), _SYS.get("tracebacklimit")]
    while tb is not None:
        shape.append(id(tb.tb_frame.f_code))
        shape.append(tb.tb_lasti)
        tb = tb.tb_next
    return tuple(shape)


def _codes(tb: TracebackType | None) -> tuple:
    """The code objects of a traceback's frames (see ``_shape``)."""
    codes = []
    while tb is not None:
        codes.append(tb.tb_frame.f_code)
        tb = tb.tb_next
    return tuple(codes)


def forget() -> None:
    """Drop every shape kept (tests)."""
    _shapes.clear()
    _last.__dict__.clear()
