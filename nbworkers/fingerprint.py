"""Fingerprints of failures: which failures share a cause, in the manner of error trackers
(Sentry's grouping), so that a million dead letters of one ``KeyError`` are one group.

A fingerprint is made from a failure's formatted traceback (what every executor gives: a
thread, a pool process and a Dask worker all hand the engine the same text), from three parts:

- the exception's type (``KeyError``), as the traceback's last line names it;
- its message, normalised: quoted values (``'text'``, ``"x"``), hex addresses (``0x7f..``),
  UUIDs, ids such as ``m123`` and numbers are replaced by placeholders, so ``KeyError: 'a'``
  and ``KeyError: 'b'`` raised at one line are one group;
- where the handler raised it: the line of the innermost frame in the handler's own code (a
  cell's ``<worker NAME #N>``, whatever its version N; for a function handler, the innermost
  frame outside the standard library and installed packages), not library frames.

Pure functions of the text, cached: identical tracebacks (the common case, a million times the
same error) cost one dict lookup each.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from typing import NamedTuple

from . import tracebacks

DIGEST_CHARS = 12  # hex characters of the sha1 kept: 48 bits, plenty within one worker
_MESSAGE_MAX = 500  # characters of a message looked at (a huge repr is cut there)
_TITLE_MAX = 100

_TRACEBACK = "Traceback (most recent call last):"
_FRAME_RE = re.compile(r'^  File "(.*)", line (\d+)(?:, in (.*))?$', re.M)
_CELL_RE = re.compile(r"^<(?:worker|cron) .+ #\d+>$")
_LIBRARY_RE = re.compile(
    r"site-packages|dist-packages|[/\\]lib[/\\]python\d|^<frozen |[/\\]nbworkers[/\\]"
)
_EXCEPTION_RE = re.compile(r"^([A-Za-z_][\w.]*)(?::\s?(.*))?$", re.S)

# The message's variable parts, replaced in this order (quotes first: a quoted value may
# hold anything the later patterns match).
_NORMALISE = [
    (re.compile(r"'(?:[^'\\\n]|\\.)*'"), "<str>"),
    (re.compile(r'"(?:[^"\\\n]|\\.)*"'), "<str>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<hex>"),
    (re.compile(r"\b[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}\b"), "<uuid>"),
    (re.compile(r"[-+]?\d+(?:\.\d+(?:[eE][-+]?\d+)?|[eE][-+]?\d+)"), "<n>"),  # 1.5, 1e+16
    (re.compile(r"\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b"), "<hex>"),
    (re.compile(r"\b[A-Za-z]{1,2}\d+\b"), "<id>"),
    (re.compile(r"[-+]?\d+(?:[.,_]\d+)*(?:[eE][-+]?\d+)?"), "<n>"),
]


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """The group of a failure: ``digest`` (12 hex characters, stable across runs, processes
    and versions of nbworkers that keep this scheme) and a readable ``title`` such as
    ``"KeyError: 'text' at line 2"`` (from the first failure seen of the group)."""

    digest: str
    title: str


class Parsed(NamedTuple):  # (not a frozen dataclass: made for every failure, it cost 1 µs)
    """The parts of a failure's text a fingerprint is made from."""

    type: str  # "KeyError"; "" when the text names none
    message: str  # the first line of its message, as raised
    where: str  # "line 2" (a cell), "app.py line 12, in load" (a file) or ""


def normalise(message: str) -> str:
    """``message`` with its variable parts (quoted values, hex, ids, numbers) replaced by
    placeholders."""
    message = message[:_MESSAGE_MAX]
    for pattern, placeholder in _NORMALISE:
        message = pattern.sub(placeholder, message)
    return " ".join(message.split())


def _handler_frame(frames: list[re.Match]) -> re.Match | None:
    """The innermost frame of the handler's own code: a cell's, else the innermost one outside
    libraries, else the innermost one."""
    for frame in reversed(frames):
        if _CELL_RE.match(frame[1]):
            return frame
    for frame in reversed(frames):
        if not _LIBRARY_RE.search(frame[1]):
            return frame
    return frames[-1] if frames else None


_WHERES_MAX = 4096  # tracebacks' frame parts kept (see parse); past that, it starts again
# A traceback's text up to its last frame's line -> (where, whether it has frames)
_wheres: dict[str, tuple[str, bool]] = {}


_GROUP = "Exception Group Traceback"
_BOX_RE = re.compile(r"^  \+ Exception Group Traceback \(most recent call last\):$", re.M)
_PLAIN_RE = re.compile(r"^Traceback \(most recent call last\):$", re.M)


def _unboxed(error: str) -> str:
    """An exception group's traceback, which ``traceback`` draws in a box (``"  | "`` before
    each line, its sub-exceptions after its own line), as a plain exception's: its frames and
    its own line. Any other text (a plain exception raised last) as it is."""
    if _GROUP not in error:
        return error
    boxes = list(_BOX_RE.finditer(error))
    if not boxes or _PLAIN_RE.search(error, boxes[-1].end()):
        return error
    lines = [_TRACEBACK]
    for line in error[boxes[-1].end() :].splitlines()[1:]:
        if not line.startswith("  | "):
            break  # its sub-exceptions: "  +-+---- 1 ----"
        lines.append(line[4:])
    return "\n".join(lines) + "\n"


def parse(error: str) -> Parsed:
    """The type, message and handler line of a failure from its formatted traceback (or from a
    one-line error such as a time limit's). The frames are parsed once per distinct text up to
    the last frame's line: failures of one cause repeat it, and differ after it."""
    error = _unboxed(error)
    start = error.rfind(_TRACEBACK)  # chained exceptions: the last one raised is last
    block = error[start:] if start >= 0 else error
    last = block.rfind('\n  File "') if start >= 0 else -1
    if last < 0:
        return _exception(block, False, "")
    end = block.find("\n", last + 1)
    end = len(block) if end < 0 else end
    head = block[:end]
    found = _wheres.get(head)
    if found is None:
        frames = list(_FRAME_RE.finditer(head))
        found = (_where(frames), bool(frames))
        if len(_wheres) >= _WHERES_MAX:
            _wheres.clear()
        _wheres[head] = found
    where, frames = found
    return _exception(block[end:] if frames else block, frames, where)


def _where(frames: list[re.Match]) -> str:
    """Where the handler raised it, of a traceback's frames: "line 2" (a cell), "app.py line
    12, in load" (a file) or ""."""
    if not frames:
        return ""
    frame = _handler_frame(frames)
    line = frame[2]
    if _CELL_RE.match(frame[1]):
        return f"line {line}"
    name = re.split(r"[/\\]", frame[1])[-1]
    return f"{name} line {line}" + (f", in {frame[3]}" if frame[3] else "")


def _exception(tail: str, frames: bool, where: str) -> Parsed:
    """The exception's line: the first after the last frame not indented (its source line and
    carets are); for a text without frames, its first non-blank line."""
    exception = next(
        (ln for ln in tail.splitlines() if ln.strip() and (not frames or not ln[:1].isspace())),
        "",
    ).strip()
    matched = _EXCEPTION_RE.match(exception)
    if matched and (matched[2] is not None or not frames) and " " not in matched[1]:
        return Parsed(matched[1], (matched[2] or "").strip(), where)
    if frames and exception and " " not in exception:
        return Parsed(exception, "", where)
    return Parsed("", exception, where)


ERROR_LINE_MAX = 500  # characters of a dead letter's own error line kept on disk
# The sentences nbworkers writes before a traceback (engine/stops.py, engine/dispatch.py): a
# failure's line is theirs, not the exception's ("nbworkers.errors.RunStopped").
OWN_SENTENCES = ("Stopped: nw.stop(", "the event cannot be unpickled, so the handler did not run:")


def error_line(error: str) -> str:
    """A failure's own line (``"KeyError: 'text'"``): the first line not indented after the
    traceback's last frame, or the first (past the ``Traceback`` header) of a text without
    frames; at most ``ERROR_LINE_MAX`` characters. What a dead letter keeps on disk: its group
    keeps the whole traceback once (``failure_groups``). A sentence nbworkers put before the
    traceback ("Stopped: nw.stop(...) stopped this run at ...") comes first: alone, or, when it
    ends with a colon, with the exception's line after it."""
    if error.startswith(OWN_SENTENCES):
        first, _, rest = error.partition("\n")
        if first.endswith(":"):
            return f"{first} {_exception_line(rest)}"[:ERROR_LINE_MAX]
        return first[:ERROR_LINE_MAX]
    return _exception_line(error)


def own_line(error: str) -> str | None:
    """``error_line(error)`` without reading ``error``, when this thread has just formatted
    it by shape (tracebacks.py): the first line of its own line. None for any other text, or
    an own line that reading the text could take otherwise (one holding a frame, a header or
    a group's box), as ``_of_shape`` does. (Where a frame's source line holds a line
    separator other than a newline, this is still the exception's line; ``error_line`` reads
    that source line's pieces.)"""
    last = tracebacks.last_formatted()
    if last is None or last[0] is not error:
        return None
    own = last[2]
    if _reads_otherwise(own) or _GROUP in error or error.startswith(OWN_SENTENCES):
        return None
    # (``splitlines``, as error_line: "\x1e" or "\u2028" end a line too)
    return own.splitlines()[0][:ERROR_LINE_MAX]


def _reads_otherwise(own: str) -> bool:
    """Whether an exception's own line holds what reading its whole traceback takes for
    something else: a frame, a traceback's header or a group's box."""
    return '\n  File "' in own or _TRACEBACK in own or _GROUP in own


def _exception_line(error: str) -> str:
    error = _unboxed(error)
    start = error.rfind('\n  File "')
    tail = error[start + 1 :] if start >= 0 else error
    for line in tail.splitlines():
        if line.strip() and not line[:1].isspace() and line.rstrip() != _TRACEBACK:
            return line[:ERROR_LINE_MAX]
    return error.strip()[:ERROR_LINE_MAX]


def title_of(parsed: Parsed) -> str:
    """A readable name for the group: ``"KeyError: 'text' at line 2"``."""
    head = ": ".join(p for p in (parsed.type, parsed.message) if p) or "an error"
    if len(head) > _TITLE_MAX:
        head = head[: _TITLE_MAX - 1] + "…"
    title = f"{head} at {parsed.where}" if parsed.where else head
    # Storable as UTF-8 as it is (lone surrogates escaped): written with every dead letter.
    return title.encode("utf-8", "backslashreplace").decode("utf-8")


def digest_of(parsed: Parsed) -> str:
    """The stable hex digest of a failure's group."""
    key = f"{parsed.type}\0{normalise(parsed.message)}\0{parsed.where}"
    return hashlib.sha1(key.encode("utf-8", "surrogatepass")).hexdigest()[:DIGEST_CHARS]


_by_digest: dict[str, Fingerprint] = {}  # one object a group: dead letters share it
_BY_DIGEST_MAX = 100_000  # past that many groups, each failure gets an object of its own


def _shared(digest: str, title: str) -> Fingerprint:
    found = _by_digest.get(digest)
    if found is None:
        found = Fingerprint(digest, title)
        if len(_by_digest) < _BY_DIGEST_MAX:
            found = _by_digest.setdefault(digest, found)
    return found


_CACHED_CHARS = 8192  # longer texts are not kept in the cache (a few MiB at most)


def fingerprint(error: str | None) -> Fingerprint:
    """The fingerprint of a failure from its error text (a formatted traceback)."""
    last = tracebacks.last_formatted()
    if last is not None and last[0] is error:
        return _of_shape(error, last[1], last[2])
    if error is not None and len(error) <= _CACHED_CHARS:
        return _cached(error)
    return _fingerprint(error)


_OWN_LINE_MAX = 1024  # longer own lines are parsed from the text each time
_PER_SHAPE_MAX = 4096  # own lines' skeletons kept per shape; past that, it starts again


def _of_shape(error: str, known: dict, own: str) -> Fingerprint:
    """The fingerprint of ``error``, which this thread just formatted (tracebacks.py): from
    its own line, in ``known``, its shape's dict. A shape fixes the exception's type, its
    frames and so the handler's line: two failures of one shape are one group when their own
    lines have one skeleton (digits 1-9 alike, as ``_by_shape``), and a million failures of
    one cause cost a translate and a lookup each, not parsing their text (about 10 µs of CPU
    a failure in a drain, a third of its time)."""
    if len(own) > _OWN_LINE_MAX or _reads_otherwise(own):
        return _fingerprint(error)  # (a message holding a traceback's text: parsed whole)
    key = own.encode("utf-8", "surrogatepass").translate(_SKELETON_BYTES)  # 10x str.translate
    found = known.get(key)
    if found is None:
        found = _fingerprint(error)
        if len(known) >= _PER_SHAPE_MAX:
            known.clear()
        known[key] = found
    return found


# Digits 1-9 as "1": ``normalise`` gives the same text for two messages that differ only
# there (its patterns treat those digits alike, only "0x" names one, and every digit is
# replaced), so that "texts of 17" and "texts of 42" share one entry of ``_by_shape``.
_SKELETON = str.maketrans("23456789", "11111111")
_SKELETON_BYTES = bytes.maketrans(b"23456789", b"11111111")  # the same, on the UTF-8 bytes
_SHAPES_MAX = 4096  # entries of _by_shape kept; past that, it starts again
# (type, message's skeleton, where) -> its Fingerprint: a million failures whose messages
# differ by a number each (an id, a row) cost a lookup each, not a normalise and a sha1 (7 µs,
# under the engine's lock, where it held every run thread of a failing drain).
_by_shape: dict[tuple[str, str, str], Fingerprint] = {}


def _fingerprint(error: str | None) -> Fingerprint:
    parsed = parse(error or "")
    shape = (parsed.type, parsed.message[:_MESSAGE_MAX].translate(_SKELETON), parsed.where)
    found = _by_shape.get(shape)
    if found is None:
        digest = digest_of(parsed)
        found = _by_digest.get(digest) or _shared(digest, title_of(parsed))
        if len(_by_shape) >= _SHAPES_MAX:
            _by_shape.clear()
        _by_shape[shape] = found
    return found


_cached = functools.lru_cache(maxsize=512)(_fingerprint)  # the same traceback, run after run


def known(digest: str, title: str) -> Fingerprint:
    """The fingerprint ``digest`` read back from the database, with its stored ``title``."""
    return _shared(digest, title)
