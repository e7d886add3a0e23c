"""What a DuckDB write-ahead log holds, read without DuckDB: enough to tell whether commits of
it were lost when DuckDB opened the database.

DuckDB replays a log when it opens a database, and stops without a word at a header it cannot
read or at an entry that runs past the end of the file: a crash in the middle of writing a
commit leaves one, and that commit never returned, so dropping it is right. But a damaged
header or size field looks the same to DuckDB, and then every commit after it is dropped.
Each entry's checksum (DuckDB's own, ``checksum``) tells them apart: a torn entry's bytes run
to the end of the file, whatever they hold (even another DuckDB log inside an event), whereas
a damaged size leaves a checksum that matches the bytes up to where the next entry starts.

The format (log version 2, as DuckDB 2.0 writes it; tests/store/test_files.py fails if it changes):
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
    """The complete commits from ``start`` on, and whether commits hide behind a damaged
    entry (its size wrong: the entry before it then fails its checksum, or its own checksum
    matches its bytes only up to a later entry; the entries after it hold flush entries)."""
    found: list[Commit] = []
    data = checkpoint = False
    pos = start
    previous = None  # the last complete entry's position
    while pos + 16 <= len(log):
        (size,) = struct.unpack_from("<Q", log, pos)
        end = pos + 16 + size
        if not _FIELD_TYPE.startswith(log[pos + 16 : min(end, pos + 18)]) or (
            end > len(log) and previous is not None and not _intact(log, previous)
        ):
            # Not an entry: a size before it was damaged (made smaller)
            return found, FLUSH_ENTRY.search(log, pos + 16) is not None
        if end > len(log):
            # A torn last entry (a kill while writing it: its bytes, which may be anything an
            # event holds, even another DuckDB log, run to the end), or a damaged size: then
            # the entry's checksum matches its bytes up to where the next entry starts.
            real_end = _real_end(log, pos)
            if real_end is None:
                return found, False
            after, hidden = commits(log, real_end)
            return found, hidden or bool(after)
        kind = log[pos + 18]
        if kind == _FLUSH:
            found.append(Commit(end, data, checkpoint))
            data = checkpoint = False
        elif kind == _CHECKPOINT:
            checkpoint = True
        else:
            data = True
        previous = pos
        pos = end
    return found, False


_M64 = (1 << 64) - 1
_MIX = 0xBF58476D1CE4E5B9
_REM_M = 0xC6A4A7935BD1E995
_REM_SEED = 0xE17A1465


def _remainder(tail: bytes) -> int:
    """DuckDB's hash of the last 0-7 bytes an entry's checksum covers (ChecksumRemainder)."""
    h = (_REM_SEED ^ (len(tail) * _REM_M)) & _M64
    for i in range(len(tail) - 1, -1, -1):
        h ^= tail[i] << (8 * i)
    if tail:
        h = (h * _REM_M) & _M64
    h ^= h >> 47
    h = (h * _REM_M) & _M64
    h ^= h >> 47
    return h


def checksum(payload: bytes) -> int:
    """DuckDB's checksum of an entry's payload, as stored after its size."""
    blocks = len(payload) // 8
    result = 5381
    for (x,) in struct.iter_unpack("<Q", payload[: blocks * 8]):
        result ^= (x * _MIX) & _M64
    if len(payload) % 8:
        result ^= _remainder(payload[blocks * 8 :])
    return result


def _intact(log: bytes, pos: int) -> bool:
    """Whether the complete entry at ``pos`` matches its checksum."""
    size, stored = struct.unpack_from("<QQ", log, pos)
    return checksum(log[pos + 16 : pos + 16 + size]) == stored


def _real_end(log: bytes, pos: int) -> int | None:
    """Where the entry at ``pos``, whose size runs past the end of ``log``, really ends: the
    start of a later entry such that the bytes between have the entry's checksum, if a flush
    entry follows. None if there is none: the entry was cut short by the end of the file, the
    bytes after its header being its own."""
    (stored,) = struct.unpack_from("<Q", log, pos + 8)
    start = pos + 16
    last_flush = None  # found in C: most torn entries hold none, and cost nothing more
    for match in FLUSH_ENTRY.finditer(log, start):
        last_flush = match.start()
    if last_flush is None:
        return None
    acc, counted = 5381, 0  # the checksum of the first ``counted`` blocks of 8 bytes
    nxt = log.find(_FIELD_TYPE, start + 16)  # a later entry's payload starts at nxt
    while nxt != -1 and nxt <= last_flush + 16:
        end = nxt - 16
        blocks, rest = divmod(end - start, 8)
        for (x,) in struct.iter_unpack("<Q", log[start + counted * 8 : start + blocks * 8]):
            acc ^= (x * _MIX) & _M64
        counted = blocks
        if acc ^ (_remainder(log[end - rest : end]) if rest else 0) == stored:
            return end
        nxt = log.find(_FIELD_TYPE, nxt + 1)
    return None


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
