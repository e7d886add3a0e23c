"""The ``%%worker`` cell magic."""

from __future__ import annotations

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.utils.process import arg_split

from . import api, cron_cells, handlers, schedule
from .develop import tryout
from .engine.policy import Policy
from .errors import NBWorkersError
from .executors import EXECUTORS

_timeout_option = argument(
    "--timeout",
    type=float,
    default=None,
    help="Seconds a run may take; past that it is abandoned and counts as failed.",
)
_executor_option = argument(
    "--executor",
    choices=EXECUTORS,
    default="threads",
    help="Where the cell runs: threads (default: the kernel's threads), processes (a process "
    "pool, for CPU-heavy code) or dask (the cluster given to nw.use_dask).",
)

_try_option = argument(
    "--try",
    dest="try_n",
    nargs="?",
    const=10,
    type=int,
    default=None,
    metavar="N",
    help="Run this code on the inputs of the last N traces (default 10) and show old "
    "against new results, without making it live: Apply (or nw.apply(NAME)) does.",
)


_keep_option = argument(
    "--keep",
    type=int,
    default=None,
    help="How many of its traces to keep, in memory and on disk (default 10, or %%config "
    "NBWorkers.traces_kept).",
)


_rate_option = argument(
    "--rate",
    default=None,
    help="At most this many runs start in any window of a second, minute or hour: 10/s, "
    "600/m, 5/h (bursts up to that many; a run waiting for its turn stays queued).",
)
_batch_option = argument(
    "--batch",
    type=int,
    default=None,
    metavar="N",
    help="Run up to N messages at once: event is the list of their events, message the list "
    "of their messages; the batch succeeds or fails (and retries) as a unit.",
)
_batch_wait_option = argument(
    "--batch-wait",
    type=float,
    default=None,
    metavar="S",
    help="Seconds a partial batch waits for more messages before it runs anyway (default 1).",
)


@magics_class
class WorkerMagics(Magics):
    """Magics that turn cells into background handlers: ``%%worker`` and ``%%cron``."""

    @magic_arguments()
    @argument("name", help="The worker's name: 1-64 letters, digits, '-', '_' or '.'.")
    @argument(
        "--concurrency",
        type=int,
        default=None,
        help="How many runs may go at once (default 4, or %%config NBWorkers.default_concurrency).",
    )
    @argument("--paused", action="store_true", help="Pause the worker (kept until nw.resume).")
    @argument(
        "--retries",
        type=int,
        default=0,
        help="Run a failed message up to N more times; after that it is a dead letter.",
    )
    @argument(
        "--backoff",
        type=float,
        default=1.0,
        help="Seconds before the first retry, doubling each time (with jitter; at most 1 h).",
    )
    @_try_option
    @_timeout_option
    @_executor_option
    @_keep_option
    @argument(
        "--ttl",
        type=float,
        default=None,
        help="Seconds a message may wait in the queue from its emit; one still queued after "
        "that is not run but becomes a dead letter (reason expired). emit(..., ttl=) wins.",
    )
    @_rate_option
    @_batch_option
    @_batch_wait_option
    @cell_magic
    def worker(self, line, cell):
        """Make this cell the background handler of worker NAME.

        The cell runs once per message emitted to NAME, on a background thread, with the
        emitted value in ``event`` and the message (``.id``, ``.worker``, ``.enqueued_at``,
        ``.attempt``) in ``message``. It sees the notebook's globals; its own variables stay
        private to one run; the value of a last bare expression is the run's result. What it
        prints goes to its trace (``nw.traces(NAME)``), not into the cell you are running.

        Examples::

            %%worker resize
            thumb = make_thumb(event["path"])
            thumb.size

            emit({"path": "cat.png"}, "resize")      # from any cell or handler

            %%worker fetch --retries 3 --backoff 2 --timeout 30
            fetch(event["url"])                      # 3 retries after 1-2 s, 2-4 s, 4-8 s

            %%worker crunch --executor processes --concurrency 2
            heavy_pure_python(event)                 # in a process pool, off the GIL

            %%worker score --keep 50
            model.predict(event)                     # its last 50 traces are kept

            %%worker quote --ttl 30
            price(event)                             # a message queued 30 s is dropped
            %%worker fetch --rate 10/s
            requests.get(event["url"]).json()        # at most 10 starts in any second

            %%worker load --batch 500 --batch-wait 0.2
            db.insert_rows(event)                    # event: a list of up to 500 events

        With ``--executor processes`` or ``dask`` the cell, the event and the notebook
        globals it names are pickled (cloudpickle) and run elsewhere: changes it makes to
        globals stay there; ``emit`` still reaches the notebook.

        Running the cell again replaces the code for the next messages. To check new code on
        real inputs first, add ``--try``: it runs on the inputs of the last 10 traces (``--try
        25``: 25), here, and a table shows old and new results while the worker goes on with
        its current code; the table's Apply button, ``nw.apply(NAME)`` or running the cell
        without ``--try`` makes it live, with the options of its line::

            %%worker resize --try --retries 3
            thumb = make_thumb(event["path"], quality=90)
            thumb.size
        """
        args = parse_argstring(self.worker, line)
        try:
            name = handlers.check_name(args.name)
            policy = Policy(
                args.retries,
                args.backoff,
                args.timeout,
                args.executor,
                args.keep,
                ttl_s=args.ttl,
                rate=_unquoted(args.rate),
                batch=args.batch,
                batch_wait_s=args.batch_wait,
            )
        except ValueError as exc:
            raise UsageError(_as_option(str(exc))) from None
        if args.concurrency is not None and args.concurrency < 1:
            raise UsageError(f"--concurrency must be at least 1, not {args.concurrency}")
        try:
            handler = handlers.from_cell(
                name, cell, self.shell.user_ns, transform=self.shell.transform_cell
            )
        except SyntaxError as exc:
            exc.add_note(
                f"The cell was not registered: worker {name!r} keeps its previous code, if any."
            )
            raise
        if args.try_n is not None:
            return _try(name, handler, args.try_n, args.concurrency, args.paused, policy)
        try:
            api.runtime().define(name, handler, args.concurrency, args.paused, policy)
        except NBWorkersError as exc:
            raise UsageError(str(exc)) from None
        tryout.forget(name)
        self._show_panel(name)

    def _show_panel(self, name: str) -> None:
        # Only a kernel has a front end to draw widgets; a terminal IPython shows nothing.
        if getattr(self.shell, "kernel", None) is not None:
            from .widgets import show_panel

            show_panel(name, cron_cells.cell_id(self.shell))

    @magic_arguments()
    @argument(
        "--side",
        action="store_true",
        help="Open it in JupyterLab's side area, where it stays in view while you scroll "
        "(needs the sidecar package).",
    )
    @line_magic
    def nbworkers(self, line=""):
        """Show the dashboard: the pipeline drawn, every worker and cron with counts and
        controls, and the names that received messages but have no worker yet (Unhandled)."""
        from IPython.display import display

        from .widgets import Dashboard

        args = parse_argstring(self.nbworkers, line)
        if args.side:
            try:
                from sidecar import Sidecar
            except ImportError:
                raise UsageError(
                    "%nbworkers --side needs the sidecar package, which opens widgets in "
                    "JupyterLab's side area: pip install sidecar (then reload the JupyterLab "
                    "page). Without --side, the dashboard shows under this cell."
                ) from None
        try:
            dashboard = Dashboard()
        except NBWorkersError as exc:
            raise UsageError(str(exc)) from None
        if not args.side:
            display(dashboard)
            return
        # (opened once the dashboard is made: an error leaves no empty side panel)
        with Sidecar(title="nbworkers", anchor="right"):
            display(dashboard)

    @magic_arguments()
    @argument(
        "interval",
        help="every-minute, hourly, every-12-hours, daily, weekly, fortnightly; a duration "
        '(30s, 5m, 2h, 3d); a quoted cron expression ("0 9 * * MON-FRI"); or @hourly, @daily, '
        "@weekly, @monthly, @yearly.",
    )
    @argument("name", nargs="?", default=None, help="The cron's name (default: one per cell).")
    @argument(
        "--at",
        default=None,
        help="Run at this wall-clock time, HH:MM (in the zone of --tz, else "
        "NBWorkers.timezone, else the kernel's local time).",
    )
    @argument(
        "--tz",
        default=None,
        help="The IANA time zone of --at or the cron expression, such as Europe/Paris "
        "(default: NBWorkers.timezone, else the kernel's local zone).",
    )
    @argument("--paused", action="store_true", help="Pause the cron (kept until nw.resume).")
    @_try_option
    @_timeout_option
    @_executor_option
    @_keep_option
    @cell_magic
    def cron(self, line, cell):
        """Run this cell on a schedule, in the background.

        The cell runs once per interval with ``message`` (``.id``, ``.attempt``...) and no
        ``event``. An interval cron runs at once, then every interval after its last run;
        with ``--at`` or a cron expression it runs at those wall-clock times, in ``--tz``'s
        zone, else ``NBWorkers.timezone``'s, else the kernel's (daylight saving as Debian
        cron: see docs/crons.md). Runs never overlap: a tick that comes while a
        run is still going is skipped and counted.

        Examples::

            %%cron hourly refresh
            prices = fetch_prices()

            %%cron daily report --at 09:30
            send_report()

            %%cron "0 9 * * MON-FRI" standup --tz Europe/Paris

            %%cron @daily cleanup

        ``nw.run_now(NAME)`` runs it once without moving the schedule; ``nw.next_run(NAME)``
        says when it runs next; ``nw.pause`` / ``nw.resume`` work as for workers.
        Running the cell again replaces the cron; it never adds a second one. ``--try``
        runs the cell's new code on the last 10 runs (``--try N``: N) without making it live,
        as ``%%worker NAME --try`` does; Apply (or ``nw.apply(NAME)``) makes it live on the
        schedule of its line.
        """
        # Intermixed: the NAME may come after the options too (%%cron daily --at 09:30 digest),
        # which plain argparse refuses for an optional positional
        try:
            args = self.cron.parser.parse_intermixed_args(arg_split(line))
        except UsageError as exc:
            raise UsageError(cron_cells.usage(str(exc))) from None
        try:
            plan = schedule.parse(args.interval, args.at, args.tz)
            policy = Policy(timeout_s=args.timeout, executor=args.executor, keep=args.keep)
        except ValueError as exc:
            raise UsageError(_as_option(str(exc))) from None
        cell_id = cron_cells.cell_id(self.shell)
        name = args.name or cron_cells.default_name(plan, cell_id)
        try:
            handlers.check_name(name)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        try:
            handler = handlers.from_cell(
                name, cell, self.shell.user_ns, transform=self.shell.transform_cell, kind="cron"
            )
        except SyntaxError as exc:
            exc.add_note(
                f"The cell was not registered: cron {name!r} keeps its previous code, if any."
            )
            raise
        if args.try_n is not None:
            return _try(name, handler, args.try_n, None, args.paused, policy, plan)
        try:
            rt = api.runtime()
            previous = cron_cells.of_cell(cell_id)
            if previous and previous != name:
                rt.undefine(previous)  # the cell was renamed: it owns one cron, not two
            rt.define_cron(name, handler, plan, args.paused, policy)
        except NBWorkersError as exc:
            raise UsageError(str(exc)) from None
        tryout.forget(name)
        # (the line with the body: two cells of one interval differ by their --at, say)
        cron_cells.defined(name, f"{line}\n{cell}", cell_id, None if args.name else args.interval)
        if not args.name:
            print(f"cron {name!r}: {plan.describe()}")
        self._show_panel(name)


def _try(name, handler, n, concurrency, paused, policy, plan=None):
    """``--try N``: the table of ``handler`` tried on the last ``n`` traces of ``name``."""
    if n < 1:
        raise UsageError(f"--try takes a number of traces of at least 1, not {n}")
    try:
        return tryout.try_handler(name, handler, n, concurrency, paused, policy, plan)
    except NBWorkersError as exc:
        raise UsageError(str(exc)) from None


def _as_option(text: str) -> str:
    """A Policy error in the magic's words: --retries rather than retries, and no None (which
    an option cannot be: it is left out instead)."""
    text = text.replace(" (or None)", "")
    for option in ("retries", "backoff", "timeout", "keep", "ttl"):
        if text.startswith(option):
            return "--" + text
    for option, flag in (("batch_wait", "--batch-wait"), ("batch", "--batch"), ("rate", "--rate")):
        if text.startswith(option):
            return flag + text[len(option) :]
    return text


def _unquoted(value: str | None) -> str | None:
    """An option's value without the quotes a shell would have taken off (``--rate '10/s'``):
    IPython passes them through."""
    if value is not None and len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value
