"""Security: private files, and no network port opened by nbworkers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.kernel import Kernel


def modes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()}


def test_the_folder_and_every_file_in_it_are_private_while_workers_run(tmp_path):
    k = Kernel(str(tmp_path), env={"JPY_SESSION_NAME": str(tmp_path / "secrets.ipynb")})
    folder = tmp_path / ".nbworkers"
    seen: dict[str, set[int]] = {}
    try:
        k.ok("%load_ext nbworkers\nimport nbworkers as nw")
        k.ok("%%worker w\nlen(event)")
        # 300 KB events: the log passes its 1 MB checkpoint again and again, and DuckDB
        # deletes it and makes it anew each time
        for _ in range(6):
            k.ok("nw.emit_many([b'secret' * 50_000] * 4, 'w')\nassert nw.wait('w', timeout=20)")
            for name, mode in modes(folder).items():
                seen.setdefault(name, set()).add(mode)
        assert (folder.stat().st_mode & 0o777) == 0o700
    finally:
        k.shutdown()
    assert set(seen) == {"secrets.duckdb", "secrets.duckdb.wal"}
    assert seen == {"secrets.duckdb": {0o600}, "secrets.duckdb.wal": {0o600}}
    assert all(mode == 0o600 for mode in modes(folder).values())


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def listening(pid: int) -> set[tuple[str, int]]:
    """(protocol, port) of every TCP socket listening and every UDP socket bound by ``pid``,
    found by matching /proc/PID/net/* entries with the process's file descriptors."""
    mine = _socket_inodes(pid)
    found = set()
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        table = Path(f"/proc/{pid}/net/{proto}")
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if inode in mine and (state == "0A" or proto.startswith("udp")):
                found.add((proto.rstrip("6"), int(local.rsplit(":", 1)[1], 16)))
    return found


@pytest.mark.skipif(not Path("/proc/self/net/tcp").exists(), reason="needs Linux's /proc")
def test_nothing_listens_on_a_network_port(kernel):
    pid = kernel.km.provisioner.process.pid
    info = json.loads(Path(kernel.km.connection_file).read_text())
    zmq = {("tcp", info[f"{c}_port"]) for c in ("shell", "iopub", "stdin", "control", "hb")}
    before = listening(pid)
    # The method sees the kernel's own ports (ipykernel also binds a loopback port of its own
    # for output from forked processes, before nbworkers runs)
    assert zmq <= before
    kernel.ok("%%worker w --concurrency 8\nemit(event, 'leaf')")
    kernel.ok("%%worker leaf\nevent")
    kernel.ok("%%cron 1s tick\nNone")
    kernel.ok("%nbworkers")
    kernel.ok("nw.emit_many(range(1000), 'w')\nassert nw.wait(timeout=20)\nnw.flush()")
    assert kernel.eval("nw.counts('leaf')['done']") == 1000
    assert listening(pid) == before
    # And it would have seen one: a socket listening on loopback in the kernel shows up
    kernel.ok("import socket\nprobe = socket.create_server(('127.0.0.1', 0))")
    try:
        assert ("tcp", kernel.eval("probe.getsockname()[1]")) in listening(pid)
    finally:
        kernel.ok("probe.close()")
