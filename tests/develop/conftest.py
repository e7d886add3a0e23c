"""Live values trace the handler with ``sys.settrace`` in the test process itself, and give
back the trace function they found; coverage.py's C tracer does not always pick up where it
left off after that (what it measures afterwards in this process is lost), so under coverage
each test here ends by restarting its measurement. Nothing else depends on it."""

from __future__ import annotations

import warnings

import pytest


@pytest.fixture(autouse=True)
def _coverage_goes_on():
    yield
    try:
        import coverage
        import coverage.exceptions
    except ImportError:
        return
    cov = coverage.Coverage.current()
    if cov is not None:
        cov.stop()
        with warnings.catch_warnings():  # "already imported": measured all along, it is
            warnings.simplefilter("ignore", coverage.exceptions.CoverageWarning)
            cov.start()
