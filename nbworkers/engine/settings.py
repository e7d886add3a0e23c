"""The settings of one runtime, as one value: ``NBWorkers.settings()`` builds it from what
``%config NBWorkers`` sets; tests build their own."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    """How a runtime behaves; each field is the ``NBWorkers`` option of the same name
    (``config.py`` says what each does)."""

    traces_kept: int = 10
    default_concurrency: int = 4
    flush_interval_s: float = 0.005
    result_max_bytes: int = 65536
    timezone: str | None = None  # None: the kernel's local zone
    storm_rate: int = 1000
    storm_seconds: int = 5
    max_queued: int = 10_000_000
    failure_notice_after: int = 5
    max_processes: int = 0  # 0: one per CPU
    dask_address: str = ""
    idle_thread_s: float = 10.0  # how long a run thread with nothing to do lives
    results_kept_s: float = 3600.0  # how long nw.result can answer for a message that ended
    queue_window: int = 50_000  # ready messages of a worker kept in memory (paging.py)
