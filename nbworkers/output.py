"""Per-run capture of what a handler prints, so it lands in its trace and not in a cell.

``sys.stdout`` and ``sys.stderr`` are shared by every thread. While the runtime runs, both are
wrapped by a router that sends a write to the capture of the run on the calling thread, if
there is one, and to the real stream otherwise.
"""

from __future__ import annotations

import sys
import threading

_local = threading.local()


class Capture:
    """Collects one run's output; with ``tee`` the output also reaches the real stream."""

    __slots__ = ("parts", "tee", "_previous")

    def __init__(self, tee: bool = False):
        self.parts: list[str] = []
        self.tee = tee

    def text(self) -> str:
        return "".join(self.parts)

    def write(self, text: str) -> None:
        self.parts.append(text)

    def __enter__(self):
        if not (isinstance(sys.stdout, _Router) and isinstance(sys.stderr, _Router)):
            _wrap()  # something (%%capture, redirect_stdout) put its own stream in place
        self._previous = getattr(_local, "capture", None)
        _local.capture = self
        return self

    def __exit__(self, *exc):
        _local.capture = self._previous
        return False


class _Router:
    """Stands in for sys.stdout/sys.stderr; everything but ``write`` goes to the real stream."""

    def __init__(self, real):
        self._nbworkers_real = real

    def write(self, text):
        capture = getattr(_local, "capture", None)
        if capture is None:
            return self._nbworkers_real.write(text)
        capture.write(text if isinstance(text, str) else str(text))
        if capture.tee:
            self._nbworkers_real.write(text)
        return len(text)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def __getattr__(self, name):
        return getattr(self._nbworkers_real, name)


_install_lock = threading.Lock()
_installs = 0


def install() -> None:
    """Route sys.stdout/sys.stderr through the capture router (counted; see ``uninstall``)."""
    global _installs
    with _install_lock:
        _installs += 1
        if _installs == 1:
            _wrap()


def _wrap() -> None:
    if not isinstance(sys.stdout, _Router):
        sys.stdout = _Router(sys.stdout)
    if not isinstance(sys.stderr, _Router):
        sys.stderr = _Router(sys.stderr)


def uninstall() -> None:
    """Undo one ``install``; the last one puts the real streams back if still ours."""
    global _installs
    with _install_lock:
        _installs = max(0, _installs - 1)
        if _installs == 0:
            for name in ("stdout", "stderr"):
                stream = getattr(sys, name)
                if isinstance(stream, _Router):
                    setattr(sys, name, stream._nbworkers_real)
