"""Settings: provisional (the typed branch brings the real one)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    traces_kept: int = 10
    default_concurrency: int = 4
    flush_interval_s: float = 0.005
    result_max_bytes: int = 65536
    timezone: str | None = None
    storm_rate: int = 1000
    storm_seconds: int = 5
    max_queued: int = 1_000_000
    failure_notice_after: int = 5
    max_processes: int = 0
    dask_address: str = ""
    idle_thread_s: float = 10.0
