"""Configuration: the traitlets ``NBWorkers`` object that ``%config NBWorkers`` shows."""

from __future__ import annotations

import os
from pathlib import Path

from traitlets import Float, Int, TraitError, Unicode, validate
from traitlets.config import Configurable

from .engine.settings import Settings
from .errors import ArgumentValueError
from .zone import Zone

DB_ENV = "NBWORKERS_DB"
DB_FOLDER = ".nbworkers"  # a notebook's database is in it, in the folder its kernel started in
# The folder the kernel started in (nbworkers is imported when the extension loads, before
# any cell can change folder): where the default database lives.
try:
    _START_DIR = os.getcwd()
except FileNotFoundError:  # started in a folder since removed: relative to the current one
    _START_DIR = "."


class NBWorkers(Configurable):
    """Options for nbworkers; set them with ``%config NBWorkers.option = value``."""

    db_path = Unicode(
        "",
        help=(
            "The DuckDB file holding queues and traces. Empty: $NBWORKERS_DB if set, else "
            ".nbworkers/<notebook name>.duckdb in the folder the kernel started in. "
            "':memory:' keeps everything in memory (nothing survives a restart). "
            "Changing it moves the runtime to the new file; handlers stay defined."
        ),
    ).tag(config=True)
    default_concurrency = Int(
        4,
        help="How many runs of one worker may go at once unless --concurrency says otherwise.",
    ).tag(config=True)
    traces_kept = Int(10, help="How many traces are kept per worker (newest first).").tag(
        config=True
    )
    flush_interval_s = Float(
        0.005,
        help=(
            "Shortest gap between two group commits of the background writer, in seconds; "
            "after a costly commit the gap is nine times its CPU time, up to 0.1 s, so that "
            "commits take at most about a tenth of a core. Emitted messages reach disk within "
            "about this plus one commit, and always before the emitting cell finishes."
        ),
    ).tag(config=True)
    result_max_bytes = Int(
        65536,
        help="A run's result is stored pickled when it pickles to at most this many bytes; "
        "a repr preview is always stored.",
    ).tag(config=True)

    storm_rate = Int(
        1000,
        help="Storm guard: a worker whose own runs emit to it more than this many messages a "
        "second, for storm_seconds seconds in a row, is paused (with the reason shown).",
    ).tag(config=True)
    storm_seconds = Int(
        5, help="Storm guard: how many seconds in a row over storm_rate pause a worker."
    ).tag(config=True)
    max_queued = Int(
        10_000_000,
        help="Storm guard: a worker with more than this many messages waiting is paused "
        "(nothing is dropped; resume it when ready).",
    ).tag(config=True)
    failure_notice_after = Int(
        5,
        help="After this many failed runs in a row, a worker's panel and the next cell you "
        "run show a notice.",
    ).tag(config=True)

    max_processes = Int(
        0,
        help="How many processes the pool of --executor processes may run at once, for all "
        "workers together (0: one per CPU). A run that finds them all busy waits for one.",
    ).tag(config=True)
    dask_address = Unicode(
        "",
        help="The Dask scheduler that --executor dask runs on when nw.use_dask(client) was "
        "not called, such as 'tcp://127.0.0.1:8786'; connected on first use.",
    ).tag(config=True)

    idle_thread_s = Float(
        10.0,
        help="How long a worker's run thread with nothing to do stays, in seconds; it ends "
        "then, and a new one starts when a message arrives.",
    ).tag(config=True)

    results_kept_s = Float(
        3600.0,
        help="How long, in seconds, nw.result(message_id) can answer for a message that "
        "ended (done or a dead letter): its result or error is kept by id in the database "
        "that long, across restarts, then pruned. Read when nbworkers starts: after a change, "
        "%reload_ext nbworkers (or a new kernel) applies it.",
    ).tag(config=True)

    queue_window = Int(
        50_000,
        help="How many of a worker's ready messages are kept in the kernel's memory; the "
        "others stay only in the database and are read back, in order, as those run, so "
        "that memory does not grow with the queue. Read when nbworkers starts.",
    ).tag(config=True)

    timezone = Unicode(
        "",
        help="IANA time zone for cron --at times and cron expressions, such as 'Europe/Paris'; "
        "a cron's --tz (tz=) wins. Empty: the kernel's local zone. A change applies at once, "
        "to the crons already defined too.",
    ).tag(config=True)

    @validate("timezone")
    def _valid_zone(self, proposal):
        name = proposal["value"]
        if name:
            try:
                Zone(name)
            except ArgumentValueError as exc:
                raise TraitError(f"NBWorkers.timezone: {exc}; the option is unchanged") from None
        return name

    def settings(self) -> Settings:
        """The runtime's settings, from these options."""
        return Settings(
            traces_kept=self.traces_kept,
            default_concurrency=self.default_concurrency,
            flush_interval_s=self.flush_interval_s,
            result_max_bytes=self.result_max_bytes,
            timezone=self.timezone or None,
            storm_rate=self.storm_rate,
            storm_seconds=self.storm_seconds,
            max_queued=self.max_queued,
            failure_notice_after=self.failure_notice_after,
            max_processes=self.max_processes,
            dask_address=self.dask_address,
            idle_thread_s=self.idle_thread_s,
            results_kept_s=self.results_kept_s,
            queue_window=self.queue_window,
        )

    def resolved_db_path(self) -> str:
        """The database path to open, from the option, the environment or the notebook name.

        The default (and a relative NBWORKERS_DB) is in the folder the kernel started in,
        whatever folder a cell or a handler moved to since: %reload_ext or nw.shutdown after
        a %cd must find the same queue, not make an empty one in the new folder."""
        if self.db_path:
            return self.db_path
        if os.environ.get(DB_ENV):
            return os.path.join(_START_DIR, os.environ[DB_ENV])
        return str(Path(_START_DIR) / DB_FOLDER / f"{notebook_stem()}.duckdb")


def notebook_stem() -> str:
    """The running notebook's file name without suffix, or 'nbworkers' when unknown."""
    session = os.environ.get("JPY_SESSION_NAME", "")
    stem = Path(session).stem if session else ""
    return stem or "nbworkers"
