"""A queued message: what ``emit`` makes and a handler receives as ``message``."""

from __future__ import annotations

import io
import pickle
from datetime import UTC, datetime

from . import progress
from .errors import ArgumentValueError


def message_id(seq: int) -> str:
    """The id users see for message number ``seq``."""
    return f"m{seq}"


def parse_id(text: str, prefix: str) -> int:
    """The number inside an id such as ``m12`` or ``t7``; ValueError for anything else."""
    if isinstance(text, str) and text.startswith(prefix) and text[1:].isdigit():
        return int(text[1:])
    raise ArgumentValueError(f"{text!r} is not an nbworkers id (ids look like {prefix}123)")


class ClassNotDefined(Exception):
    """An event names a class (or function) that cannot be found: not defined yet in the
    notebook (after a restart, before its cell ran), or in a module that does not import."""

    def __init__(self, module: str, name: str, error: BaseException):
        super().__init__(
            f"{module}.{name} is not defined ({type(error).__name__}: {error}); run the cell "
            "that defines it (or make its module importable)"
        )
        self.error = error


class _ClassFinder(pickle.Unpickler):
    """Unpickles, remembering the class lookup that failed, if one did."""

    missing: tuple[str, str, BaseException] | None = None

    def find_class(self, module, name):
        try:
            return super().find_class(module, name)
        except (AttributeError, ImportError) as exc:
            self.missing = (module, name, exc)
            raise


def load_event(data: bytes):
    """A fresh copy of the event pickled in ``data``.

    Raises ClassNotDefined when a class it names cannot be found; anything else unpickling
    raises (a ``__setstate__``, the callable of a ``__reduce__``: user code) as it is.
    """
    try:
        return pickle.loads(data)
    except (AttributeError, ImportError) as exc:
        # The same types may come from user code (a __setstate__ reading a missing
        # attribute): only a failed class lookup means "not defined yet". Finding out means
        # unpickling again, up to the same failure, which only failures pay for.
        finder = _ClassFinder(io.BytesIO(data))
        try:
            finder.load()
        except BaseException:  # noqa: BLE001 - the same failure again: exc says it
            pass
        if finder.missing is None:
            raise
        raise ClassNotDefined(*finder.missing) from exc


class Message:
    """One emitted value waiting for, or going through, its worker.

    ``data`` is the value pickled at emit time: each run unpickles its own copy.
    ``attempt`` counts runs from 1; ``due_at_s`` is set while it waits for a delay or a
    retry's backoff; ``key`` is its dedupe key. ``priority``: higher runs first among its
    worker's ready messages; ``expires_at_s``: when its own time to live (``emit(...,
    ttl=)``) ends, or None (its worker's ``--ttl`` may still apply); ``expired``: it expired,
    and became a dead letter instead of running.
    """

    __slots__ = (
        "seq",
        "worker",
        "enqueued_at_s",
        "attempt",
        "data",
        "due_at_s",
        "key",
        "started",
        "written",
        "priority",
        "expires_at_s",
        "expired",
        "stop_asked",  # nw.stop asked to stop its run going on now (unset: not asked)
        "progress_now",  # what message.progress said last (unset: nothing)
        "progress_told_s",  # when its panel was last told of it
    )

    def __init__(
        self,
        seq: int,
        worker: str,
        enqueued_at_s: float,
        attempt: int,
        data: bytes,
        due_at_s: float | None = None,
        key: str | None = None,
        priority: int = 0,
        expires_at_s: float | None = None,
    ):
        self.seq = seq
        self.worker = worker
        self.enqueued_at_s = enqueued_at_s
        self.attempt = attempt
        self.data = data
        self.due_at_s = due_at_s
        self.key = key
        self.started = False  # this attempt has begun (a crash then means the next attempt)
        self.written = False  # its row is in the database (or in a batch being written)
        self.priority = priority
        self.expires_at_s = expires_at_s
        self.expired = False

    @property
    def id(self) -> str:
        return message_id(self.seq)

    @property
    def stopping(self) -> bool:
        """True once ``nw.stop`` asked to stop this message's run going on now: a handler on
        a thread may check it in a loop (around ``time.sleep`` or C calls, which the
        ``RunStopped`` raised in its thread cannot interrupt) and return early."""
        try:
            return self.stop_asked
        except AttributeError:  # never asked: left unset, so that a message costs nothing more
            return False

    def progress(self, done, total=None, note: str = "") -> None:
        """Show how far this run got in its panel: ``done`` of ``total`` (None: not known),
        with a short ``note``; a bar while it runs, kept in its trace. Cheap enough to call
        once an item: the panel hears of it at most every 0.2 s."""
        progress.reported(self, progress.checked(done, total, note))

    @property
    def enqueued_at(self) -> datetime:
        return datetime.fromtimestamp(self.enqueued_at_s, UTC)

    @property
    def due_at(self) -> datetime | None:
        """When a delayed message (or a retry) may run; None when it may run now."""
        if self.due_at_s is None:
            return None
        return datetime.fromtimestamp(self.due_at_s, UTC)

    @property
    def expires_at(self) -> datetime | None:
        """When its own time to live ends (``emit(..., ttl=)``); None without one."""
        if self.expires_at_s is None:
            return None
        return datetime.fromtimestamp(self.expires_at_s, UTC)

    def __repr__(self) -> str:
        return f"<Message {self.id} to {self.worker!r}, attempt {self.attempt}>"
