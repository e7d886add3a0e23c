"""The kernel's line to a pool process (executors/channel.py): frames come out whole and in
order however the socket cuts them, and a closed end is an EOFError."""

from __future__ import annotations

import socket
import threading

import pytest

from nbworkers.executors.channel import Channel


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    ours, theirs = Channel(a), Channel(b)
    yield ours, theirs
    ours.close()
    theirs.close()


def test_frames_sent_together_come_out_one_by_one(pair):
    ours, theirs = pair
    for value in ["done", {"stdout": "hi\n"}, ("emit", (b"x", "w"))]:
        theirs.send(value)
    # (the first read takes all three: the next two come from what it kept)
    assert [ours.recv() for _ in range(3)] == ["done", {"stdout": "hi\n"}, ("emit", (b"x", "w"))]


def test_a_frame_cut_into_pieces_comes_out_whole(pair):
    ours, theirs = pair
    frame = bytes(range(256)) * 40
    whole = len(frame).to_bytes(8, "big") + frame
    sending = threading.Thread(
        target=lambda: [theirs.sock.sendall(whole[i : i + 7]) for i in range(0, len(whole), 7)]
    )
    sending.start()
    assert ours.recv_bytes() == frame
    sending.join(10)


def test_a_frame_bigger_than_a_read_comes_out_whole(pair):
    ours, theirs = pair
    big = bytes(range(256)) * 12_000  # 3 MB: past one read (64 KiB) and one joined write
    sending = threading.Thread(target=lambda: (theirs.send_bytes(big), theirs.send("after")))
    sending.start()
    assert ours.recv_bytes() == big
    assert ours.recv() == "after"
    sending.join(10)


def test_an_end_closed_midway_through_a_frame_is_an_eof(pair):
    ours, theirs = pair
    theirs.sock.sendall((100).to_bytes(8, "big") + b"only part")
    theirs.close()
    with pytest.raises(EOFError):
        ours.recv_bytes()
    with pytest.raises(EOFError):  # and again: nothing more will come
        ours.recv()


def test_a_big_frame_after_small_ones_read_together_comes_out_whole(pair):
    ours, theirs = pair
    big = bytes(range(256)) * 1_000  # 256 KB
    # All on the socket before the first read: that read takes the small frames and the
    # start of the big one
    theirs.send("out")
    theirs.send("more")
    sending = threading.Thread(target=lambda: (theirs.send_bytes(big), theirs.send("done")))
    sending.start()
    assert ours.recv() == "out" and ours.recv() == "more"
    assert ours.recv_bytes() == big
    assert ours.recv() == "done"
    sending.join(10)


def test_a_default_socket_timeout_does_not_make_the_channel_give_up():
    # A notebook's socket.setdefaulttimeout (for urllib, say) made a pool process waiting for
    # its next job take the empty read for the kernel's end, and runs longer than it fail
    socket.setdefaulttimeout(0.05)
    try:
        a, b = socket.socketpair()
    finally:
        socket.setdefaulttimeout(None)
    ours, theirs = Channel(a), Channel(b)
    later = threading.Timer(0.3, lambda: theirs.send("late"))
    later.start()
    assert ours.recv() == "late"  # waited past the timeout
    later.join()
    ours.close()
    theirs.close()
