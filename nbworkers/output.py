"""Per-run capture of what a handler prints, so it lands in its trace and not in a cell.

``sys.stdout`` and ``sys.stderr`` are shared by every thread. While the runtime runs, both are
wrapped by a router that sends a write to the capture of the run on the calling thread, if
there is one, and to the real stream otherwise.

A run cannot break the kernel's streams: ``sys.stdout.close()`` in a run closes that run's
capture only, and a stream a run leaves unusable (None, closed, or the process's own
``sys.__stdout__``, which in a kernel is its log and not the notebook) is put back when
the run ends, or when another run starts first, with a line in that run's output saying so.
"""

from __future__ import annotations

import sys
import threading

_local = threading.local()
_NAMES = ("stdout", "stderr")


class Capture:
    """Collects one run's output; with ``tee`` the output also reaches the real stream."""

    __slots__ = ("parts", "tee", "closed", "_previous", "_routers")

    def __init__(self, tee: bool = False):
        self.parts: list[str] = []
        self.tee = tee
        self.closed: set[str] = set()  # the streams this run closed ("stdout", "stderr")

    def text(self) -> str:
        return "".join(self.parts)

    def write(self, text: str) -> None:
        self.parts.append(text)

    def __enter__(self):
        if not (isinstance(sys.stdout, _Router) and isinstance(sys.stderr, _Router)):
            # Something (%%capture, redirect_stdout) put its own stream in place, or a run
            # still going left an unusable one
            for name, stream in _wrap():
                self.write(
                    f"nbworkers: sys.{name} was {_describe(stream)} when this run started (set "
                    "by another run or a cell); the kernel's stream was put back.\n"
                )
        self._routers = (sys.stdout, sys.stderr)
        self._previous = getattr(_local, "capture", None)
        _local.capture = self
        return self

    def __exit__(self, *exc):
        _local.capture = self._previous
        self._put_back()
        return False

    def _put_back(self) -> None:
        """Put our router back where the run left an unusable stream, and say so."""
        for name, router in zip(_NAMES, self._routers, strict=True):
            stream = getattr(sys, name, None)
            if stream is router or not isinstance(router, _Router):
                continue
            if not _broken(name, stream, router):
                continue  # another usable stream: a cell's %%capture, say
            setattr(sys, name, router)
            self.write(
                f"nbworkers: sys.{name} was set to {_describe(stream)} during this run (by "
                "this run, or code running at the same time); the kernel's stream was put "
                "back. A run's output is captured for its trace: print as usual.\n"
            )


def _broken(name: str, stream, router) -> bool:
    """``stream`` cannot stand for the kernel's ``sys.<name>`` where ``router`` stood."""
    if _unusable(stream):
        return True
    original = getattr(sys, f"__{name}__", None)
    real = getattr(router, "_nbworkers_real", None)
    return stream is original and real is not original


def _unusable(stream) -> bool:
    if stream is None or not callable(getattr(stream, "write", None)):
        return True
    try:
        return stream.closed is True
    except Exception:  # noqa: BLE001 - a stream without a working .closed still writes
        return False


def _describe(stream) -> str:
    if stream is None:
        return "None"
    for name in _NAMES:
        if stream is getattr(sys, f"__{name}__", None):
            return f"sys.__{name}__ (the kernel process's own stream, not the notebook)"
    return f"a closed or unwritable {type(stream).__name__}"


class _Router:
    """Stands in for sys.stdout/sys.stderr; everything but ``write``, ``flush`` and ``close``
    goes to the real stream."""

    def __init__(self, real, name: str):
        self._nbworkers_real = real
        self._nbworkers_name = name

    def write(self, text):
        capture = getattr(_local, "capture", None)
        if capture is None:
            if self._nbworkers_name in getattr(_local, "closed", ()):
                raise ValueError("I/O operation on closed file.")
            return self._nbworkers_real.write(text)
        if self._nbworkers_name in capture.closed:
            raise ValueError("I/O operation on closed file.")
        capture.write(text if isinstance(text, str) else str(text))
        if capture.tee:
            self._nbworkers_real.write(text)
        return len(text)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        capture = getattr(_local, "capture", None)
        if capture is None:
            if self._nbworkers_name in getattr(_local, "closed", ()):
                # Closed for this thread only: nothing to flush, and no error, as ipykernel's
                # own stream after a close (it flushes after every cell, a subshell's too).
                return None
        elif self._nbworkers_name in capture.closed:
            raise ValueError("I/O operation on closed file.")
        return self._nbworkers_real.flush()

    def close(self):
        capture = getattr(_local, "capture", None)
        if capture is not None:
            capture.closed.add(self._nbworkers_name)  # the run's capture, never the kernel's
        elif threading.current_thread() is threading.main_thread():
            return self._nbworkers_real.close()  # a cell's: as without nbworkers
        else:
            # A thread outside any run (one a handler started: runs' captures are per thread,
            # not inherited; or an ipykernel 7 subshell's cells): closing the kernel's stream
            # would make every later cell's print fail. Closed for this thread only, as a run's
            # close is for that run only.
            if not hasattr(_local, "closed"):
                _local.closed = set()
            _local.closed.add(self._nbworkers_name)

    @property
    def closed(self) -> bool:
        capture = getattr(_local, "capture", None)
        if capture is not None:
            return self._nbworkers_name in capture.closed
        return self._nbworkers_name in getattr(_local, "closed", ()) or self._nbworkers_real.closed

    def __getattr__(self, name):
        return getattr(self._nbworkers_real, name)


_install_lock = threading.Lock()
_installs = 0
_last: dict[str, _Router] = {}  # the router last put in place, per stream


def install() -> None:
    """Route sys.stdout/sys.stderr through the capture router (counted; see ``uninstall``)."""
    global _installs
    with _install_lock:
        _installs += 1
        if _installs == 1:
            _wrap(kernels=True)


def _wrap(kernels: bool = False) -> list[tuple[str, object]]:
    """Put routers in place; the unusable streams that the last router replaced.
    ``kernels``: the streams found are the kernel's, to put back when a run leaves one
    unusable; while installed, a usable stream a run finds in place is a cell's (such as
    %%capture's buffer), wrapped only for now."""
    replaced = []
    for name in _NAMES:
        stream = getattr(sys, name, None)
        if isinstance(stream, _Router):
            continue
        last = _last.get(name)
        if _unusable(stream) and last is not None and not _unusable(last._nbworkers_real):
            setattr(sys, name, last)  # a run left it unusable: the kernel's stream again
            replaced.append((name, stream))
        else:  # None too, in a process started without one: runs' output is still captured
            router = _Router(stream, name)
            if kernels or last is None or not _installs:
                _last[name] = router
            setattr(sys, name, router)
    return replaced


def uninstall() -> None:
    """Undo one ``install``; the last one puts the real streams back if still ours."""
    global _installs
    with _install_lock:
        _installs = max(0, _installs - 1)
        if _installs == 0:
            for name in _NAMES:
                stream = getattr(sys, name)
                if isinstance(stream, _Router):
                    setattr(sys, name, stream._nbworkers_real)
