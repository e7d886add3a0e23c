"""Diagnostics go through logging.getLogger("nbworkers"), to the kernel's own stderr."""

from __future__ import annotations

import io
import logging
import sys

from nbworkers.log import log


def test_a_record_reaches_the_kernels_stderr_once_with_the_nbworkers_prefix(monkeypatch):
    # Given the kernel's own stderr, and a root logger a notebook configured
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "__stderr__", stderr)
    root = io.StringIO()
    handler = logging.StreamHandler(root)
    logging.getLogger().addHandler(handler)
    try:
        # When nbworkers logs a diagnostic
        log.warning("writing to %r works again; nothing was lost", "q.duckdb")
    finally:
        logging.getLogger().removeHandler(handler)
    # Then it is on the kernel's stderr, prefixed, and not printed again by the root logger
    assert stderr.getvalue() == "nbworkers: writing to 'q.duckdb' works again; nothing was lost\n"
    assert root.getvalue() == ""


def test_the_logger_is_the_one_named_nbworkers():
    assert log is logging.getLogger("nbworkers")
