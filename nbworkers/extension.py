"""Loading into IPython: ``%load_ext nbworkers`` and the auto-loading kernel."""

from __future__ import annotations

import atexit
import sys

from traitlets import TraitError
from traitlets.config import Config

from . import api
from .config import NBWorkers
from .errors import NBWorkersError
from .magics import WorkerMagics

_shells: dict[int, tuple] = {}


def _after_cell(result=None) -> None:
    # The promise of the README: a message is on disk before the cell that emitted it ends.
    rt = api.running()
    if rt is not None:
        rt.retry_parked()
        if rt.has_unwritten:
            try:
                rt.flush()
            except NBWorkersError as exc:
                # Said under the cell that emitted; what it emitted stays in memory, retried
                print(exc, file=sys.stderr)
        for notice in rt.take_notices():
            print(notice, file=sys.stderr)  # under the cell that just ran


def _on_db_path(change) -> None:
    api.reopen()


def _on_dask_address(change) -> None:
    rt = api.running()
    if rt is not None:
        rt.executors.set_dask_address(change["new"])


def _on_timezone(change) -> None:
    rt = api.running()
    if rt is not None:
        rt.set_timezone(change["new"] or None)


# The options a change of applies at once (observed below); the runtime reads the others
# when it starts, and a change of them while it runs says so.
APPLIED_AT_ONCE = ("db_path", "dask_address", "max_processes", "timezone")
READ_AT_START = tuple(
    name for name in NBWorkers.class_trait_names(config=True) if name not in APPLIED_AT_ONCE
)


def _on_read_at_start(change) -> None:
    if api.running() is not None:
        print(
            f"nbworkers: NBWorkers.{change['name']} = {change['new']!r} applies when nbworkers "
            "starts again: restart the kernel, or run %reload_ext nbworkers and then your "
            "%%worker and %%cron cells (queued messages stay in the file)",
            file=sys.stderr,
        )


def _on_max_processes(change) -> None:
    rt = api.running()
    if rt is not None:
        rt.executors.set_max_processes(change["new"])


def _configuration(ip) -> NBWorkers:
    """The kernel's NBWorkers options. One a %config refused (IPython keeps it in the shell's
    config all the same) or a config file got wrong is left out, saying so: else loading
    failed, and with it every %reload_ext."""
    try:
        return NBWorkers(parent=ip)
    except TraitError:
        section = ip.config.NBWorkers
        for option, value in list(section.items()):
            try:  # (through traitlets' loading: a command line's --NBWorkers.x=7 is a string)
                NBWorkers(config=Config(NBWorkers={option: value}))
            except TraitError as exc:
                del section[option]
                said = str(exc).rstrip(".")
                print(f"nbworkers: {said}; NBWorkers.{option} keeps its default", file=sys.stderr)
        return NBWorkers(parent=ip)


def load_ipython_extension(ip) -> None:
    """Register the magics, put ``emit`` in the namespace, and flush after every cell."""
    if id(ip) in _shells:
        return
    cfg = _configuration(ip)
    ip.configurables = [c for c in ip.configurables if not isinstance(c, NBWorkers)] + [cfg]
    cfg.observe(_on_db_path, "db_path")
    cfg.observe(_on_dask_address, "dask_address")
    cfg.observe(_on_max_processes, "max_processes")
    cfg.observe(_on_timezone, "timezone")
    cfg.observe(_on_read_at_start, list(READ_AT_START))
    api.use_config(cfg)
    ip.register_magics(WorkerMagics)
    ip.push({"emit": api.emit})
    ip.events.register("post_run_cell", _after_cell)
    _shells[id(ip)] = (cfg,)


def unload_ipython_extension(ip) -> None:
    """Write everything and stop every nbworkers thread."""
    if _shells.pop(id(ip), None) is None:
        return
    ip.events.unregister("post_run_cell", _after_cell)
    if ip.user_ns.get("emit") is api.emit:
        # Runs still going (and threads) call the emit global: during the stop it joins the
        # last write, after it it says what to do, instead of a NameError.
        ip.user_ns["emit"] = _emit_after_unload(api.running() or api.stopping())
    api.shutdown()


def _emit_after_unload(rt):
    """The ``emit`` global that ``%unload_ext`` leaves: it emits on ``rt`` (the runtime
    being stopped) until its last write, then raises NBWorkersError."""

    def emit(event, name: str, *, key=None, delay=None, at=None, **options) -> str:
        """nbworkers was unloaded: run ``%load_ext nbworkers`` to emit again."""
        if rt is not None and rt.taking_emits:
            return rt.emit(event, name, key=key, delay=delay, at=at, **options)
        raise NBWorkersError(
            "nbworkers was unloaded (%unload_ext nbworkers): run %load_ext nbworkers to emit "
            "again. Nothing was enqueued; everything emitted before is kept."
        )

    return emit


atexit.register(api.stop_for_exit)
