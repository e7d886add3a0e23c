"""Waiting on a condition with a bound, instead of sleeping a fixed time."""

from __future__ import annotations

import os
import sys
import time


def wait_until(condition, timeout: float = 10.0) -> bool:
    """True once ``condition()`` is; False if ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs: not gone, and not a zombie (killed, not yet reaped)."""
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    # (reaped meanwhile, between the signal and the read: reading its stat fails with ESRCH)
    except (ProcessLookupError, FileNotFoundError):
        return False


def wait_blocked_in_c(ident: int, function: str, timeout: float = 10.0) -> bool:
    """True once thread ``ident`` sits in a C call made from a Python function named
    ``function`` (``"wait"`` for an Event's or a Condition's wait): its innermost Python frame
    is there and stays at one instruction for 50 ms. A thread running Python moves on within
    the 5 ms switch interval; one in C runs no bytecode, so an exception sent to it waits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        first = _innermost(ident)
        if first is not None and first[0] == function:
            time.sleep(0.05)
            if _innermost(ident) == first:
                return True
        time.sleep(0.01)
    return False


def thread_stack(ident: int) -> list[str]:
    """The names of the Python functions thread ``ident`` is in, innermost first."""
    frame = sys._current_frames().get(ident)
    names = []
    while frame is not None:
        names.append(frame.f_code.co_name)
        frame = frame.f_back
    return names


def _innermost(ident: int) -> tuple[str, int] | None:
    frame = sys._current_frames().get(ident)
    return None if frame is None else (frame.f_code.co_name, frame.f_lasti)
