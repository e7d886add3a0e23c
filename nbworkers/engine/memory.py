"""Giving memory back to the system once a big queue has drained or many dead letters went.

The objects of ended messages are freed, but glibc's allocator keeps the freed pages in the
process for reuse, so a kernel's resident memory stays near its peak: 200,000 failures, the
requeue of their group and its drain left a process at 305 MiB, 160 MiB with the free pages
handed back by ``malloc_trim(0)`` (``benchmarks/failures.py --memory``).

It is called at quiet moments only, never under the engine's lock: when ``nw.wait`` returns
with everything drained, after ``nw.discard`` of many letters, and on the panels' idle tick;
and only once at least ``TRIM_AFTER`` messages ended (or dead letters were dropped) since the
last time, with nothing queued or running. Elsewhere than glibc (macOS, Windows, musl) there
is no ``malloc_trim`` and nothing is done.
"""

from __future__ import annotations

import ctypes
import sys
import threading
from collections.abc import Callable

from .registry import Registry

# Messages ended or dead letters dropped since the last trim before a quiet moment trims.
TRIM_AFTER = 10_000


def libc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the C library this process runs on
    except (OSError, AttributeError):  # musl and others have no malloc_trim
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class Trimmer:
    """Counts what ended since the last trim and trims at a quiet moment."""

    def __init__(self, registry: Registry, trim: Callable[[int], int] | None):
        self.registry = registry
        self._trim = trim
        self._dropped = 0  # dead letters discarded (their messages end no other way)
        with registry.lock:  # (what a file's counts say ended before this process freed nothing)
            self._ended_at_trim = self._ended()
        self._trimming = threading.Lock()  # one trim at a time
        self.trims = 0  # how many times memory was handed back (tests, diagnostics)

    def dropped(self, count: int) -> None:
        """``count`` dead letters were discarded (the engine lock is held)."""
        self._dropped += count

    def _ended(self) -> int:
        return self._dropped + sum(w.done + w.failed for w in self.registry.workers.values())

    def quiet_moment(self) -> bool:
        """Hand freed memory back if enough ended since the last time and nothing is queued or
        running (the engine lock must not be held: a trim takes milliseconds). True if it did."""
        if self._trim is None:
            return False
        reg = self.registry
        with reg.lock:
            ended = self._ended()
            if ended - self._ended_at_trim < TRIM_AFTER:
                return False
            if any(w.running or w.queued() for w in reg.workers.values()):
                return False
            self._ended_at_trim = ended
        if not self._trimming.acquire(blocking=False):
            return False  # another thread is trimming now
        try:
            self._trim(0)
            self.trims += 1
        finally:
            self._trimming.release()
        return True
