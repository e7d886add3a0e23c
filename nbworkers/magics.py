"""The ``%%worker`` cell magic."""

from __future__ import annotations

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from . import api, handlers
from .errors import NBWorkersError


@magics_class
class WorkerMagics(Magics):
    """Magics that turn cells into background handlers."""

    @magic_arguments()
    @argument("name", help="The worker's name: 1-64 letters, digits, '-', '_' or '.'.")
    @argument(
        "--concurrency",
        type=int,
        default=None,
        help="How many runs may go at once (default 4, or %%config NBWorkers.default_concurrency).",
    )
    @argument("--paused", action="store_true", help="Pause the worker (kept until nw.resume).")
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

        Running the cell again replaces the code for the next messages.
        """
        args = parse_argstring(self.worker, line)
        try:
            name = handlers.check_name(args.name)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
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
        try:
            api.runtime().define(name, handler, args.concurrency, args.paused)
        except NBWorkersError as exc:
            raise UsageError(str(exc)) from None
