"""The kernel's line to a pool process: pickled frames over a socket pair.

A frame is its length (8 bytes, big-endian) and its bytes. A read takes whatever the socket
holds, up to 64 KiB, in one system call, and keeps the rest for the next frame; a bigger frame
is read straight into a buffer of its size. ``multiprocessing``'s ``Connection``, used before,
reads a frame's length, then its bytes: two system calls a frame, each releasing the GIL, and
a kernel busy with a drain of quick process runs pays for every handoff to its other threads
(a run is two frames; docs/measurements.md, "Trivial process runs at parity").

The socket always blocks: a ``socket.setdefaulttimeout`` set in the notebook (for urllib,
say) would otherwise make both ends non-blocking, and a process waiting for its next job would
take the empty read for the kernel's end.
"""

from __future__ import annotations

import pickle
import socket
import struct

_LENGTH = struct.Struct("!Q")
_READ = 65536  # bytes asked of the socket at a time, for frames up to this size
_JOINED_MAX = 65536  # a frame up to this size goes in one write with its length


class Channel:
    """Frames of bytes (``send_bytes``, ``recv_bytes``) or of pickled values (``send``,
    ``recv``) on a connected stream socket. Not for two readers (or two writers) at once."""

    __slots__ = ("sock", "_buffer")

    def __init__(self, sock: socket.socket):
        sock.setblocking(True)
        self.sock = sock
        self._buffer = bytearray()  # what was read past the last frame

    @classmethod
    def from_fd(cls, fd: int) -> Channel:
        return cls(socket.socket(fileno=fd))

    def send_bytes(self, data: bytes) -> None:
        head = _LENGTH.pack(len(data))
        if len(data) <= _JOINED_MAX:
            self.sock.sendall(head + data)
        else:  # (no copy of a big frame just to put 8 bytes before it)
            self.sock.sendall(head)
            self.sock.sendall(data)

    def recv_bytes(self) -> bytes | bytearray:
        """The next frame; EOFError when the other end closed (or died) first."""
        buffer = self._buffer
        while len(buffer) < _LENGTH.size:
            self._read()
        (size,) = _LENGTH.unpack_from(buffer)
        end = _LENGTH.size + size
        if size > _READ:
            return self._read_big(size)
        while len(buffer) < end:
            self._read()
        with memoryview(buffer) as view:
            frame = bytes(view[_LENGTH.size : end])
        del buffer[:end]
        return frame

    def _read(self) -> None:
        chunk = self.sock.recv(_READ)
        if not chunk:
            raise EOFError("the other end of the channel closed")
        self._buffer += chunk

    def _read_big(self, size: int) -> bytearray:
        """A frame of ``size`` bytes, more than a read: what the buffer holds (all of it this
        frame's, being less than a read), then the rest, read into it in place."""
        frame = bytearray(size)
        have = len(self._buffer) - _LENGTH.size
        frame[:have] = memoryview(self._buffer)[_LENGTH.size :]
        self._buffer.clear()
        with memoryview(frame) as view:
            while have < size:
                got = self.sock.recv_into(view[have:])
                if not got:
                    raise EOFError("the other end of the channel closed")
                have += got
        return frame

    def send(self, value) -> None:
        self.send_bytes(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))

    def recv(self):
        return pickle.loads(self.recv_bytes())

    def close(self) -> None:
        self.sock.close()
