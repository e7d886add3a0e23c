"""nbworkers' diagnostics: ``logging.getLogger("nbworkers")``.

What nbworkers has to say outside any cell (a write that failed and works again, a broken
``on_failure`` callback or panel, a cron with no next run) is logged here. Until the
application configures logging for ``nbworkers`` itself, the records go to the kernel's own
stderr (its terminal or log, never into a running cell), as ``nbworkers: <message>``, which
is where these messages always went. What a notebook user must see still reaches the cell
(after it runs) or the panel.
"""

from __future__ import annotations

import logging
import sys

log = logging.getLogger("nbworkers")


class _KernelStderr(logging.StreamHandler):
    """A handler on ``sys.__stderr__`` as it is at each record (tests swap it)."""

    def __init__(self):
        super().__init__(sys.__stderr__)

    def emit(self, record: logging.LogRecord) -> None:
        self.setStream(sys.__stderr__)
        super().emit(record)


def _install() -> None:
    if not any(isinstance(h, _KernelStderr) for h in log.handlers):
        handler = _KernelStderr()
        handler.setFormatter(logging.Formatter("nbworkers: %(message)s"))
        log.addHandler(handler)
    # The kernel's own handlers (ipykernel logs to the terminal) would print it twice.
    log.propagate = False
    if log.level == logging.NOTSET:
        log.setLevel(logging.INFO)


_install()
