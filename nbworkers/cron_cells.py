"""What names a ``%%cron`` cell's cron, and what its line's errors say: the front end's cell
id (JupyterLab and Notebook 7 send one), else the schedule; and argparse's refusals with what
to do instead."""

from __future__ import annotations

import shlex
import sys

from . import schedule

# %%worker's options that a cron has no use for (it runs one at a time, on its schedule)
WORKER_ONLY = (
    "--backoff",
    "--batch",
    "--batch-wait",
    "--concurrency",
    "--rate",
    "--retries",
    "--ttl",
)


def usage(text: str) -> str:
    """argparse's refusal of a %%cron line, with what to do."""
    _, found, rest = text.partition("unrecognized arguments:")
    if not found:
        return text
    extra = rest.split()
    theirs = [word for word in extra if word.split("=")[0] in WORKER_ONLY]
    if theirs:
        return (
            f"{text}: {theirs[0].split('=')[0]} is an option of %%worker; a cron runs one at a "
            "time, on its schedule (its options: --at, --tz, --paused, --timeout, --executor, "
            "--keep, --try)"
        )
    return (
        f"{text}: %%cron takes an INTERVAL, then a NAME, then options; write an interval of "
        'several words as a duration (5m, 2h) or quote it (%%cron "0 9 * * MON-FRI" NAME)'
    )


def cell_id(shell) -> str | None:
    """The front end's id of the running cell (JupyterLab and Notebook 7 send one)."""
    kernel = getattr(shell, "kernel", None)
    try:
        parent = kernel.get_parent() if kernel is not None else shell.parent_header
    except Exception:  # noqa: BLE001 - no kernel parent: a plain IPython shell
        return None
    cell_id = (parent or {}).get("metadata", {}).get("cellId")
    return cell_id if isinstance(cell_id, str) and cell_id else None


def default_name(plan: schedule.Schedule, cell_id: str | None) -> str:
    """One name per cell when the front end says which cell; else one per schedule."""
    if cell_id:
        return f"cron-{cell_id.replace('-', '')[:8]}"
    slug = "".join(c if c.isalnum() else "-" for c in plan.spec.lower()).strip("-")
    return f"cron-{slug}"[:64]


_cron_of_cell: dict[str, str] = {}  # each cell's cron, by cell id (a renamed cell owns one)
# The code of each cron named after its schedule (no NAME, and no cell id to name it after)
_source_of_unnamed: dict[str, str] = {}


def of_cell(cell: str | None) -> str | None:
    """The cron the cell of id ``cell`` defined last, if any."""
    return _cron_of_cell.get(cell) if cell else None


def defined(name: str, source: str, cell: str | None, unnamed_interval: str | None) -> None:
    """Cron ``name`` was defined from ``source`` by the cell of id ``cell`` (None: unknown),
    with no NAME of its own when ``unnamed_interval`` (its INTERVAL) is given."""
    if cell:
        _cron_of_cell[cell] = name
        return
    if unnamed_interval is None:
        return
    if _source_of_unnamed.get(name, source) != source:
        # (a new user's two "%%cron 10s" cells, run by nbclient: one silently replaced the other)
        print(
            f"nbworkers: cron {name!r} now runs this cell's code, in place of another cell's "
            "(or this one's before an edit): without a cell id from the front end (nbconvert, "
            "nbclient), %%cron cells of one interval share one name. Give each a NAME: "
            f"%%cron {shlex.quote(unnamed_interval)} NAME",
            file=sys.stderr,
        )
    _source_of_unnamed[name] = source
