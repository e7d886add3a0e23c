"""The command line: ``python -m nbworkers status [PATH]`` shows a database file's queues.

``status`` reads the file through ``store.read_status``, which opens it read-only: looking never
changes a notebook's queues, and runs no SQL the file defines. Exit codes: 0 shown, 1 held by
another process, 2 bad file, 3 too slow to read.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime

from .config import DB_ENV, DB_FOLDER
from .errors import NBWorkersError, StatusTimeoutError, StoreLockedError
from .store import STATUS_TIMEOUT_S, Status, WorkerStatus, read_status

EXIT_OK = 0
EXIT_LOCKED = 1  # a kernel (or another process) holds the file
EXIT_BAD_FILE = 2  # no such file, a folder, not a DuckDB or not an nbworkers database
EXIT_TIMEOUT = 3  # reading took longer than --timeout

_DESCRIPTION = """\
nbworkers from a terminal. A notebook's workers, crons, queues, traces and dead letters live in a
DuckDB file: .nbworkers/<notebook name>.duckdb in the folder its kernel started in (or the file
NBWORKERS_DB names)."""

_STATUS_DESCRIPTION = """\
Print each worker and cron of a database file with its counts, the unhandled names (messages for
a name that never had a worker) and the latest failed runs.

The file is opened read-only and never changed. Safe on any file: only nbworkers' own tables
are read, and no SQL the file defines is run (a file whose nbworkers names are views, or whose
tables compute a column, is refused); no other file is read; reading stops after --timeout
seconds. A running kernel holds its notebook's file, and DuckDB then lets no other process open
it, not even to read: status says which process holds it. Look from inside that kernel instead
(%nbworkers, or nw.sql("select * from workers")), or shut it down first.

exit codes: 0 shown; 1 the file is held by another process; 2 no such file, or not an nbworkers
database; 3 reading took longer than --timeout."""


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_BAD_FILE  # a usage error, like argparse's own
    return args.command(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m nbworkers",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(command=None)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    status = commands.add_parser(
        "status",
        help="show the workers, crons, queues and latest failures of a database file",
        description=_STATUS_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    status.add_argument(
        "path",
        metavar="PATH",
        nargs="?",
        help="the database file, e.g. .nbworkers/x.duckdb (default: the file NBWORKERS_DB "
        "names, else the one database in .nbworkers/ of this folder)",
    )
    status.add_argument(
        "--failures",
        metavar="N",
        type=int,
        default=10,
        help="show the N latest failed runs (default 10)",
    )
    status.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        default=STATUS_TIMEOUT_S,
        help=f"stop reading after SECONDS (default {STATUS_TIMEOUT_S:g})",
    )
    status.set_defaults(command=_status)
    return parser


def default_path() -> str:
    """The file ``status`` reads when given none: the one NBWORKERS_DB names, else the only
    database in ``.nbworkers/`` here; else ``.nbworkers`` itself (which ``read_status`` refuses,
    listing the databases it holds, or saying there is none)."""
    named = os.environ.get(DB_ENV)
    if named:
        return named
    try:
        found = [name for name in os.listdir(DB_FOLDER) if name.endswith(".duckdb")]
    except OSError:
        found = []
    return os.path.join(DB_FOLDER, found[0]) if len(found) == 1 else DB_FOLDER


def _status(args) -> int:
    path = args.path if args.path is not None else default_path()
    try:
        status = read_status(path, failures=max(0, args.failures), timeout_s=args.timeout)
    except StoreLockedError as exc:
        print(f"nbworkers status: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    except StatusTimeoutError as exc:
        print(
            f"nbworkers status: {exc}. A large queue takes longer to read: --timeout SECONDS "
            "waits longer.",
            file=sys.stderr,
        )
        return EXIT_TIMEOUT
    except NBWorkersError as exc:
        print(f"nbworkers status: {exc}", file=sys.stderr)
        return EXIT_BAD_FILE
    print(render(status, time.time()), end="")
    return EXIT_OK


# ----- printing -----------------------------------------------------------------------------


def render(status: Status, now: float) -> str:
    """The text ``status`` prints for ``status``, with ages counted from ``now``."""
    lines = [f"nbworkers database {status.path}"]
    lines += _file_lines(status.path, now)
    named = [w for w in status.workers if w.kind is not None]
    unhandled = [w for w in status.workers if w.kind is None and (w.queued or w.running)]
    others = [w for w in status.workers if w.kind is None and not (w.queued or w.running)]
    if not named and not unhandled and not others:
        lines += ["", "No workers, crons or messages yet."]
    if named or others:
        lines += ["", "Workers and crons", *_workers_table(named + others, now)]
    if unhandled:
        lines += [
            "",
            "Unhandled: messages for names that never had a worker or cron",
            *_table(
                ["NAME", "QUEUED", "OLDEST QUEUED"],
                [[w.name, w.queued + w.running, _age(w.oldest_queued_s, now)] for w in unhandled],
            ),
            '  A %%worker NAME cell (or @nw.worker("NAME")) runs them.',
        ]
    if status.failures:
        lines += [
            "",
            "Latest failures, newest first (traces keep only the latest runs of each worker)",
            *_table(
                ["WHEN", "WORKER", "TRACE", "MESSAGE", "ATTEMPT", "ERROR"],
                [
                    [
                        _when(f.at_s),
                        f.worker,
                        f.trace_id,
                        f.message_id,
                        f.attempt,
                        _shorten(
                            ("(replay) " if f.replay else "") + (f.error_line or "(no error text)")
                        ),
                    ]
                    for f in status.failures
                ],
            ),
        ]
    dead = sum(w.dead for w in status.workers)
    if dead:
        lines += [
            "",
            f"{dead} dead letter{'s' if dead != 1 else ''} kept (messages whose last attempt "
            "failed or was stopped, or that expired before they ran). In the kernel,",
            "nw.dead_letters(name) lists them, nw.requeue(name) runs them again, "
            "nw.discard(name) drops them.",
        ]
    return "\n".join(lines) + "\n"


def _file_lines(path: str, now: float) -> list[str]:
    files = [p for p in (path, path + ".wal") if os.path.exists(p)]
    if not files:  # gone since it was read
        return []
    changed = max(os.stat(p).st_mtime for p in files)
    lines = [f"  last written {_when(changed)} ({_age(changed, now)})"]
    if os.path.exists(path + ".wal"):
        lines.append(
            f"  {os.path.basename(path)}.wal is beside it: the last process that wrote the file "
            "did not close it (a killed or crashed kernel?). Its writes are shown here; the next "
            "kernel that opens the file applies them."
        )
    return lines


def _workers_table(workers: list[WorkerStatus], now: float) -> list[str]:
    rows = []
    notes = []
    interrupted = 0
    for w in workers:
        state = "paused" if w.paused else "-"
        rows.append(
            [
                w.name,
                w.kind or "-",
                state,
                w.queued + w.running,
                w.done,
                w.failed,
                w.dead,
                w.retried,
                w.skipped if w.kind == "cron" else "-",
                _age(w.oldest_queued_s, now),
                _when(w.last_run_s),
            ]
        )
        if w.paused:
            notes.append(f"  {w.name} is paused: {w.pause_reason or 'by hand'}")
        interrupted += w.running
    table = _table(
        [
            "NAME",
            "KIND",
            "STATE",
            "QUEUED",
            "DONE",
            "FAILED",
            "DEAD",
            "RETRIED",
            "SKIPPED",
            "OLDEST QUEUED",
            "LAST RUN",
        ],
        rows,
    )
    if interrupted:
        notes.append(
            f"  {interrupted} of the queued messages were running when the file was last "
            "written: they run again, as their next attempt, once their worker is defined."
        )
    return table + notes


def _table(headers: list[str], rows: list[list]) -> list[str]:
    """Columns padded to their widest cell; numbers right-aligned."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    numeric = [any(isinstance(row[i], int) for row in rows) for i in range(len(headers))]

    def line(values):
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return ("  " + "  ".join(parts)).rstrip()

    return [line(headers)] + [line(row) for row in cells]


def _when(epoch_s: float | None) -> str:
    if epoch_s is None:
        return "-"
    return datetime.fromtimestamp(epoch_s).strftime("%Y-%m-%d %H:%M:%S")


def _age(epoch_s: float | None, now: float) -> str:
    if epoch_s is None:
        return "-"
    seconds = max(0.0, now - epoch_s)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def _shorten(text: str, width: int = 100) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
