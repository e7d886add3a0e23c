"""What a DuckDB write-ahead log holds, read without DuckDB: enough to tell whether commits of
it were lost when DuckDB opened the database.

DuckDB replays a log when it opens a database, and stops without a word at a header it cannot
read or at an entry that runs past the end of the file: a crash in the middle of writing a
commit leaves one, and that commit never returned, so dropping it is right. But a damaged
header or size field looks the same to DuckDB, and then every commit after it is dropped.

The format (log version 2, as DuckDB 2.0 writes it; tests/test_files.py fails if it changes):
a header object, then entries of [size: 8 bytes][checksum: 8 bytes][payload: size bytes], each
payload an object whose first field (100) is the entry type. A commit is its entries followed
by a flush entry; a checkpoint writes a checkpoint entry (and a flush) before it writes the
database, after which everything before it is in the database file.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

_FIELD_TYPE = b"d\x00"  # field 100, little-endian: every entry's type
_HEADER_START = b"d\x00be\x00"  # type 98 (the log's version), then field 101
_CHECKPOINT = ord("c")  # 99
_FLUSH = ord("d")  # 100
# A whole flush entry: size 5, a checksum, its type and the end of the object
FLUSH_ENTRY = re.compile(rb"\x05\x00{7}.{8}d\x00d\xff\xff", re.DOTALL)


@dataclass
class Commit:
    end: int  # offset just after its flush entry
    data: bool  # it changed tables (anything but a checkpoint marker)
    checkpoint: bool  # it marks a checkpoint


def _varint(log: bytes, pos: int) -> int:
    """The offset after the unsigned LEB128 number at ``pos``; ValueError if cut short."""
    for end in range(pos, min(pos + 10, len(log))):
        if not log[end] & 0x80:
            return end + 1
    raise ValueError("a number runs past its end")


def header_end(log: bytes) -> int | None:
    """The offset where the entries start, or None if the header cannot be read."""
    try:
        if not log.startswith(_HEADER_START):
            return None
        pos = _varint(log, len(_HEADER_START))
        if log[len(_HEADER_START) : pos] != b"\x02":  # another version: not read here
            return None
        if log[pos : pos + 2] != b"f\x00":  # field 102: the database's identifier
            return None
        count_end = _varint(log, pos + 2)
        count = log[pos + 2]
        if count != 16:
            return None
        pos = count_end
        for _ in range(count):
            pos = _varint(log, pos)
        if log[pos : pos + 2] != b"g\x00":  # field 103: the checkpoint iteration
            return None
        pos = _varint(log, pos + 2)
        if log[pos : pos + 2] != b"\xff\xff":
            return None
        return pos + 2
    except (ValueError, IndexError):
        return None


def commits(log: bytes, start: int) -> tuple[list[Commit], bool]:
    """The complete commits from ``start`` on, and whether commits hide behind an entry that
    runs past the end (a damaged size: the rest of the file holds flush entries)."""
    found: list[Commit] = []
    data = checkpoint = False
    pos = start
    while pos + 16 <= len(log):
        (size,) = struct.unpack_from("<Q", log, pos)
        end = pos + 16 + size
        if end > len(log) or log[pos + 16 : pos + 18] != _FIELD_TYPE:
            return found, FLUSH_ENTRY.search(log, pos + 16) is not None
        kind = log[pos + 18]
        if kind == _FLUSH:
            found.append(Commit(end, data, checkpoint))
            data = checkpoint = False
        elif kind == _CHECKPOINT:
            checkpoint = True
        else:
            data = True
        pos = end
    return found, False


def lost_commits(log: bytes, replayed: int) -> bool:
    """True if DuckDB, having replayed the first ``replayed`` bytes of ``log`` (at least: the
    bytes up to its stop, and perhaps a few that happen to be the same after it), dropped a
    commit that changed tables and that no later checkpoint carried into the database."""
    start = header_end(log)
    if start is None:  # DuckDB ignored the whole log (a version 2 commit is in it, or none)
        return FLUSH_ENTRY.search(log) is not None
    found, hidden = commits(log, start)
    if hidden:
        return True
    stop = max([c.end for c in found if c.end <= replayed], default=start)
    after = [c for c in found if c.end > stop]
    for i, commit in enumerate(after):
        if commit.data and not any(c.checkpoint for c in after[i + 1 :]):
            return True
    return False
