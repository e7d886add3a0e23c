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


# nw.stop on a threads run raises its exception with PyThreadState_SetAsyncExc; with a trace
# function installed (coverage.py's, as in CI's `coverage run`, which also traces the kernels it
# starts) the exception was seen never to land in a spinning handler: the test hangs. A known
# limit left open (README, Flow control), so these tests run without a tracer only.
import sys as _sys  # noqa: E402

import pytest as _pytest  # noqa: E402

stops_threads = _pytest.mark.skipif(
    _sys.gettrace() is not None,
    reason="nw.stop of a thread run does not land under a trace function (coverage): known limit",
)
