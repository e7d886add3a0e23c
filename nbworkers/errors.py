"""Errors nbworkers raises for things a user can fix.

In IPython they show as the user's own lines and the message, without the frames inside
nbworkers (IPython's ``_render_traceback_`` protocol): what went wrong is the user's call,
not nbworkers' code.
"""

from __future__ import annotations

import linecache
import os
import types

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


class NBWorkersError(RuntimeError):
    """A problem the user can fix; the message says how."""

    def _render_traceback_(self) -> list[str]:
        """What IPython shows instead of the traceback: the user's lines, then the message."""
        try:
            return _render(self)
        # IPython would print its own "Unexpected exception formatting exception" instead.
        except Exception:  # noqa: BLE001
            return [f"{type(self).__name__}: {self}"]


class ArgumentValueError(NBWorkersError, ValueError):
    """An argument nbworkers cannot use (a bad name, a negative limit...); a ValueError."""


class ArgumentTypeError(NBWorkersError, TypeError):
    """An argument of a type nbworkers cannot use (None where a name goes...); a TypeError."""


class StoreLockedError(NBWorkersError):
    """The queue database is held by another process."""


class StoreCorruptError(NBWorkersError):
    """The queue database could not be read; it was moved aside and a fresh one will be used."""


class MessageFailed(NBWorkersError):
    """``nw.result``: the message's run failed for good (a dead letter). ``message_id``,
    ``worker`` and ``traceback`` (the last attempt's traceback text) say which and how."""

    def __init__(self, message_id: str, worker: str, traceback: str):
        self.message_id = message_id
        self.worker = worker
        self.traceback = traceback
        lines = [line for line in traceback.splitlines() if line.strip()]
        # A stop, an expiry or a cancel says why in its first line; a failure in its last.
        said = lines and lines[0].startswith(("Stopped:", "Expired:", "Cancelled:"))
        if said:
            why = lines[0].strip()
        else:
            why = lines[-1].strip() if lines else "(no traceback)"
        where = (
            "its error is in this error's .traceback"
            if said and len(lines) == 1
            else "its whole traceback is in this error's .traceback"
        )
        if not traceback.startswith("Cancelled:"):  # a removed message is no dead letter
            where += f"; nw.dead_letters({worker!r}) lists it unless it was requeued, discarded "
            where += "or was a cron's run"
        super().__init__(f"message {message_id} to {worker!r} failed: {why} ({where})")

    def __reduce__(self):
        return (type(self), (self.message_id, self.worker, self.traceback))


class StatusTimeoutError(NBWorkersError):
    """Reading a database file for ``python -m nbworkers status`` took longer than allowed."""


class RunStopped(BaseException):
    """Raised in a handler running on a thread when ``nw.stop`` stops its run.

    A ``BaseException``, as ``KeyboardInterrupt`` is: the ``except Exception`` of a handler's
    retry loop or error logging must not swallow a stop. ``try``/``finally`` and ``with``
    blocks still run their clean-up."""


def _ours(filename: str) -> bool:
    """True for a file of the nbworkers package."""
    return os.path.abspath(filename).startswith(_PACKAGE)


def without_our_frames(tb: types.TracebackType | None) -> types.TracebackType | None:
    """``tb`` without the frames inside nbworkers (a new chain; ``tb`` is left as it was)."""
    kept = []
    while tb is not None:
        if not _ours(tb.tb_frame.f_code.co_filename):
            kept.append(tb)
        tb = tb.tb_next
    chain = None
    for t in reversed(kept):
        chain = types.TracebackType(chain, t.tb_frame, t.tb_lasti, t.tb_lineno)
    return chain


def _render(exc: BaseException) -> list[str]:
    import IPython  # the caller: this runs only when IPython shows the error

    shell = IPython.get_ipython()
    ipython = os.path.dirname(os.path.abspath(IPython.__file__)) + os.sep
    tb = without_our_frames(exc.__traceback__)
    # The outermost frames are IPython running the cell (run_code): not the user's either
    while tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(ipython):
        tb = tb.tb_next
    lines = []
    while tb is not None:
        code = tb.tb_frame.f_code
        line = linecache.getline(code.co_filename, tb.tb_lineno, tb.tb_frame.f_globals)
        lines += [_where(shell, code, tb.tb_lineno), f"----> {tb.tb_lineno} {line.rstrip()}", ""]
        tb = tb.tb_next
    lines.append(f"{type(exc).__name__}: {exc}")
    lines += getattr(exc, "__notes__", [])
    return lines


def _where(shell, code: types.CodeType, lineno: int) -> str:
    """Where a frame is, as IPython says it: ``Cell In[3], line 2`` for a notebook cell."""
    compiler = getattr(shell, "compile", None)
    label = compiler.format_code_name(code.co_filename) if compiler is not None else None
    if label:
        return f"{label[0]} {label[1]}, line {lineno}"
    return f"File {code.co_filename}:{lineno}, in {code.co_name}()"
