"""Waiting on a condition with a bound, instead of sleeping a fixed time."""

from __future__ import annotations

import time


def wait_until(condition, timeout: float = 10.0) -> bool:
    """True once ``condition()`` is; False if ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
