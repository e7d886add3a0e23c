"""The database file and its write-ahead log on disk, kept safe: refused when a link or another
user's, a new database private (0600) from its first byte, a private log made again after each
checkpoint, a log DuckDB could not replay in full detected, and a damaged file set aside, never
deleted. ``DatabaseFiles(path)`` does this for one path; the ``DuckDBStore`` holds one.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import tempfile
import time
from pathlib import Path

import duckdb

from ..errors import NBWorkersError, StoreCorruptError
from . import wal

_HOW_TO_MOVE = (
    "pick another file with %config NBWorkers.db_path = 'other.duckdb' "
    "(or the NBWORKERS_DB environment variable)"
)
# A queue table is appended to and deleted from all day: checkpointing its WAL at 1 MB instead
# of DuckDB's 16 MiB keeps the file and DuckDB's memory small (measured: RSS growth over 1M
# messages 38 -> 21 MB) at no cost to throughput.
_CHECKPOINT_THRESHOLD = "1MB"
# Said when a write is refused: what was not written yet waits in memory.
_WAITING = (
    " What was not written yet stays in memory and is written as soon as that file is gone "
    "(in a shared folder such as /tmp, only its owner or an administrator can remove it)."
)


def _owner(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _process_description(pid: str) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return f"PID {pid}"
    cmd = raw.replace(b"\0", b" ").decode(errors="replace").strip()
    return f"PID {pid}: {cmd[:200]}" if cmd else f"PID {pid}"


def _common_prefix(a: bytes, b: bytes) -> int:
    """How many first bytes ``a`` and ``b`` have in common."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        mid = (low + high + 1) // 2
        if a[:mid] == b[:mid]:
            low = mid
        else:
            high = mid - 1
    return low


class DatabaseFiles:
    """The file ``path`` (absolute, or ``:memory:``, which has no files) and its log."""

    def __init__(self, path: str):
        self.path = path

    def set_aside(self, reason: str, log_only: bool = False) -> NBWorkersError:
        """Rename a file DuckDB cannot read (and its log) to ``NAME.corrupt-<time>``, so that
        the next start makes a fresh one; never delete a byte of it. ``log_only``: the file
        itself was fine, only its write-ahead log could not be replayed."""
        path = self.path
        kept = base = f"{path}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}"
        n = 1
        while os.path.lexists(kept) or os.path.lexists(kept + ".wal"):
            n += 1
            kept = f"{base}-{n}"
        moved = []
        try:
            for suffix in ("", ".wal"):
                if os.path.lexists(path + suffix):
                    os.rename(path + suffix, kept + suffix)
                    moved.append(kept + suffix)
        except OSError as error:
            return NBWorkersError(
                f"nbworkers' queue database {path!r} is damaged and cannot be read "
                f"({reason}), and it could not be moved aside ({error.strerror}). "
                f"Move or rename it yourself (nbworkers never deletes it), or {_HOW_TO_MOVE}."
            )
        wal_note = ""
        if log_only:
            wal_note = (
                f" Only its write-ahead log was unreadable: without {kept + '.wal'!r}, "
                f"{kept!r} opens as of its last checkpoint."
            )
        return StoreCorruptError(
            f"nbworkers' queue database {path!r} is damaged and cannot be read "
            f"({reason}). Nothing was deleted: it was moved aside to "
            f"{' and '.join(map(repr, moved))}. Run the cell again to start with a fresh, "
            "empty database in its place; the queued messages, traces and pause states of the "
            f"damaged one are not in it (to look for them: "
            f"duckdb.connect({kept!r}, read_only=True)).{wal_note}"
        )

    def secure(self) -> None:
        # Events can carry secrets: the database is readable by its owner only (a file made
        # by an older nbworkers, or copied in, may not be).
        if self.path == ":memory:":
            return
        for name in (self.path, self.path + ".wal"):
            if os.path.exists(name):
                os.chmod(name, 0o600)
        self.private_wal()

    def prepare(self) -> bytes | None:
        """Before DuckDB opens anything: refuse a database or log that is a link or another
        user's, make a new database private from its first byte, and return the bytes of a
        write-ahead log waiting to be replayed (None when there is none)."""
        if self.path == ":memory:":
            return None
        if not self.own(self.path):
            self.create_private()
        wal = self.path + ".wal"
        if not self.own(wal):
            return None
        with open(wal, "rb") as f:
            return f.read() or None

    def own(self, name: str, writing: bool = False) -> bool:
        """True if ``name`` is a file of this process's user, False if there is none; raise
        NBWorkersError, writing nothing to it, if it is a symbolic link or someone else's (in
        a shared folder such as /tmp, another user can make it first to read or change what
        nbworkers writes there)."""
        try:
            st = os.lstat(name)
        except FileNotFoundError:
            return False
        what = "queue database" if name == self.path else "queue database's write-ahead log"
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(name)
            if name == self.path:
                fix = (
                    "If the link is yours, give nbworkers the real file: %config "
                    f"NBWorkers.db_path = {os.path.realpath(name)!r}; otherwise {_HOW_TO_MOVE}."
                )
            else:
                fix = f"Remove the link (nbworkers makes the log itself), or {_HOW_TO_MOVE}."
            raise NBWorkersError(
                f"nbworkers will not use its {what} {name!r}: it is a symbolic link (to "
                f"{target!r}), which could send your messages into another file. Nothing was "
                f"written to it. {fix}{_WAITING if writing else ''}"
            )
        me = os.geteuid()
        if st.st_uid != me:
            raise NBWorkersError(
                f"nbworkers will not use its {what} {name!r}: it belongs to "
                f"{_owner(st.st_uid)}, not to you ({_owner(me)}), who could read and change "
                "what nbworkers writes there. Nothing was written to it. Keep the database in "
                f"a folder only you can write (the default, .nbworkers/ beside the notebook, "
                f"is one): {_HOW_TO_MOVE}. If the file is yours after all (copied from "
                f"another account), make it yours with chown.{_WAITING if writing else ''}"
            )
        return True

    def create_private(self) -> None:
        """Make a new, empty database readable by its owner only from its first byte.

        DuckDB creates files with the umask's mode (usually readable by everyone) and refuses
        an empty file; the process-wide umask cannot be changed for one thread. So the empty
        database is made in a private (0700) temporary folder beside it, and copied into a
        file created 0600."""
        scratch = tempfile.mkdtemp(prefix=".nbworkers-new-", dir=os.path.dirname(self.path))
        try:
            made = os.path.join(scratch, "new.duckdb")
            duckdb.connect(made).close()
            with open(made, "rb") as f:
                empty = f.read()
        finally:
            shutil.rmtree(scratch)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            self.own(self.path)  # made meanwhile: used only if it is ours
            return
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
            view = memoryview(empty)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            os.unlink(self.path)  # ours, and holding nothing yet
            raise
        finally:
            os.close(fd)

    def check_replayed(self, con, log: bytes, drop) -> None:
        """Raise StoreCorruptError (the file and its log moved aside) if DuckDB, opening the
        file, dropped commits of ``log``, the write-ahead log found beside it.

        DuckDB says nothing when it stops replaying early (see ``wal``), but cuts the log
        where it stopped at its next write: one small write shows how far it went. ``con`` is
        the connection that opened it, closed by ``drop`` before the log is put back."""
        con.execute("SET checkpoint_threshold = '1TB'")  # keep the log to compare it
        con.execute("PRAGMA disable_checkpoint_on_shutdown")  # the file as it was, if damaged
        con.execute("CREATE OR REPLACE TABLE nbworkers_wal_check (x INTEGER)")
        con.execute("DROP TABLE nbworkers_wal_check")
        with open(self.path + ".wal", "rb") as f:
            now = f.read()
        if now[: len(log)] != log:
            replayed = _common_prefix(now, log)
            if wal.lost_commits(log, replayed):
                drop()
                self.restore_log(log)
                raise self.set_aside(
                    "its write-ahead log cannot be replayed in full: DuckDB stopped at byte "
                    f"{replayed} of {len(log)}, before commits",
                    log_only=True,
                )
        con.execute("PRAGMA enable_checkpoint_on_shutdown")
        con.execute(f"SET checkpoint_threshold = '{_CHECKPOINT_THRESHOLD}'")

    def restore_log(self, log: bytes) -> None:
        """Put back the write-ahead log as it was found (DuckDB cut it at its first write)."""
        fd, name = tempfile.mkstemp(prefix=".nbworkers-log-", dir=os.path.dirname(self.path))
        with os.fdopen(fd, "wb") as f:
            f.write(log)
            f.flush()
            os.fsync(f.fileno())
        os.replace(name, self.path + ".wal")

    def private_wal(self) -> None:
        """Create the write-ahead log, empty and 0600, before DuckDB does: DuckDB deletes it at
        every checkpoint and would create it again readable by everyone (umask), whereas it
        writes into an existing one keeping its mode. One that is there already must be this
        user's file, not a link (``own``)."""
        if self.path != ":memory:" and not self.make_wal():
            self.own(self.path + ".wal", writing=True)

    def make_wal(self) -> bool:
        """Create the empty, private write-ahead log; False if there is one already."""
        try:
            fd = os.open(
                self.path + ".wal", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600
            )
        except FileExistsError:
            return False
        os.close(fd)
        return True

    def remake_wal(self) -> None:
        """After a commit or checkpoint (which may have deleted the log): make the log again at
        once, so that no one else can make it before the next write. Errors wait for that
        write, which checks again (``private_wal``) and reports them."""
        if self.path == ":memory:":
            return
        try:
            self.make_wal()
        except OSError:
            pass  # reported by the next write's private_wal, with nothing written

    def drop_empty_wal(self) -> None:
        """Once the file is closed, remove the empty log ``remake_wal`` left after the last
        checkpoint: nothing writes any more, and the next open makes it private again."""
        if self.path == ":memory:":
            return
        wal = self.path + ".wal"
        try:
            st = os.lstat(wal)
            if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and st.st_size == 0:
                os.unlink(wal)
        except FileNotFoundError:
            pass  # DuckDB's own close removed it, or there was none


def make_folder(folder: Path) -> None:
    """Make ``folder`` for the database, and its missing parents, each private (0700)."""
    # Every folder made is 0700, not only the last: mkdir's parents get the umask's mode,
    # world-writable under umask 000, and whoever can write a folder can swap what is in it.
    missing = [p for p in folder.parents if not p.exists()]
    try:
        for path in [*reversed(missing), folder]:
            path.mkdir(mode=0o700, exist_ok=True)  # a file in the way raises
    except OSError as exc:
        raise NBWorkersError(
            f"nbworkers cannot create the folder {os.path.abspath(folder)!r} for its queue "
            f"database ({exc.strerror}); {_HOW_TO_MOVE}"
        ) from exc
