"""The kernel's line to a pool process: pickled frames over a socket pair.

A frame is its length (4 bytes, big-endian) and its bytes, as ``multiprocessing``'s
``Connection`` sends them; but a read takes whatever the socket holds, up to 64 KiB, in one
system call, and keeps the rest for the next frame. ``Connection`` reads a frame's length,
then its bytes: two system calls a frame, each releasing the GIL, where a kernel busy with a
drain pays for every handoff to its other threads (a trivial run is two frames).
"""

from __future__ import annotations

import pickle
import socket
import struct

_LENGTH = struct.Struct("!I")
_READ = 65536  # bytes asked of the socket at a time (more when a frame says it is bigger)
_JOINED_MAX = 65536  # a frame up to this size goes in one write with its length


class Channel:
    """Frames of bytes (``send_bytes``, ``recv_bytes``) or of pickled values (``send``,
    ``recv``) on a connected stream socket. Not for two readers (or two writers) at once."""

    __slots__ = ("sock", "_buffer")

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self._buffer = bytearray()

    @classmethod
    def from_fd(cls, fd: int) -> Channel:
        return cls(socket.socket(fileno=fd))

    def fileno(self) -> int:
        return self.sock.fileno()

    def send_bytes(self, data: bytes) -> None:
        head = _LENGTH.pack(len(data))
        if len(data) <= _JOINED_MAX:
            self.sock.sendall(head + data)
        else:  # (no copy of a big frame just to put 4 bytes before it)
            self.sock.sendall(head)
            self.sock.sendall(data)

    def recv_bytes(self) -> bytes:
        """The next frame; EOFError when the other end closed (or died) first."""
        buffer = self._buffer
        while True:
            if len(buffer) >= 4:
                (size,) = _LENGTH.unpack_from(buffer)
                end = 4 + size
                if len(buffer) >= end:
                    with memoryview(buffer) as view:
                        frame = bytes(view[4:end])
                    del buffer[:end]
                    return frame
                wanted = max(_READ, end - len(buffer))
            else:
                wanted = _READ
            chunk = self.sock.recv(wanted)
            if not chunk:
                raise EOFError("the other end of the channel closed")
            buffer += chunk

    def send(self, value) -> None:
        self.send_bytes(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))

    def recv(self):
        return pickle.loads(self.recv_bytes())

    def close(self) -> None:
        self.sock.close()
