"""Where nbworkers' time goes on the hot path: py-spy over ``peers.py --profile drain|emit``.

Starts ``peers.py --profile drain|emit``, which sets up first (drain: 1,000,000 messages queued to
a paused worker; emit: a paused worker), attaches ``py-spy record --format raw --threads``
(``pip install py-spy``), and only then lets it run the workload once (drain: resume until
``rt.wait``, trivial handler, concurrency 4; emit: 2,000,000 single ``emit`` calls, then
``flush``). Prints where the samples fall:
per thread, and the functions with the most samples of their own ("self") and including what
they call ("total"), as % of all samples. ``--gil`` keeps only samples taken while the thread
held the GIL (the Python work that competes for it); without it, a thread waiting inside
DuckDB or a lock still counts, idle threads never do.

    python benchmarks/profile.py drain                 # about 20 s of drain
    python benchmarks/profile.py emit --gil --top 15
    python benchmarks/profile.py drain --raw /tmp/drain.raw   # keep the raw stacks
    python benchmarks/profile.py --summarize /tmp/drain.raw   # summarise a raw file again
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]*)(?::\d+)?\)$")


def frame_name(frame: str) -> str:
    """``func (path/file.py:12)`` -> ``file.py:func`` (line numbers merged)."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    return f"{os.path.basename(m['file'])}:{m['func']}"


def frame_line(frame: str) -> str:
    """``func (path/file.py:12)`` -> ``file.py:12 func``."""
    m = re.match(r"^(?P<func>.*) \((?P<file>[^()]*)\)$", frame.strip())
    if not m:
        return frame.strip()
    return f"{os.path.basename(m['file'])} {m['func']}"


def thread_group(label: str) -> str:
    """``thread (0x7f..): nbworkers-run-bench-2`` -> ``nbworkers-run-*``."""
    name = label.split(":", 1)[1].strip() if ":" in label else "main"
    name = re.sub(r"-\d+$", "-*", name)
    return re.sub(r"^nbworkers-run-.*", "nbworkers-run-* (handlers)", name)


def summarize(path: str, top: int) -> str:
    threads: Counter[str] = Counter()
    lines_own: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            frames = stack.split(";")
            label = frames[0] if frames[0].startswith("thread") else "thread: main"
            frames = [fr for fr in frames if not fr.startswith("thread")]
            if frames:
                lines_own[frame_line(frames[-1])] += n
            frames = [frame_name(fr) for fr in frames]
            samples += n
            threads[thread_group(label)] += n
            if frames:
                own[frames[-1]] += n
                for name in set(frames):
                    total[name] += n
    if not samples:
        return f"{path}: no samples"
    lines = [f"{samples:,} samples"]

    def pct(n: int) -> str:
        return f"{100 * n / samples:5.1f}%"

    lines.append("by thread:")
    lines += [f"  {pct(n)}  {name}" for name, n in threads.most_common()]
    lines.append(f"top {top} functions by own samples:")
    lines += [f"  {pct(n)}  {name}" for name, n in own.most_common(top)]
    lines.append(f"top {top} functions by total samples (with what they call):")
    skip = ("threading.py:", "<module>", "peers.py:main", "peers.py:profile")
    shown = [(name, n) for name, n in total.most_common() if not name.startswith(skip)]
    lines += [f"  {pct(n)}  {name}" for name, n in shown[:top]]
    lines.append(f"top {top // 2} source lines by own samples:")
    lines += [f"  {pct(n)}  {name}" for name, n in lines_own.most_common(top // 2)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", nargs="?", choices=("drain", "emit"))
    parser.add_argument("--size", type=int, help="messages (drain 1,000,000; emit 2,000,000)")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--gil", action="store_true", help="only samples holding the GIL")
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--raw", help="keep py-spy's raw output here")
    parser.add_argument("--summarize", metavar="RAW", help="summarise an existing raw file")
    args = parser.parse_args(argv)
    if args.summarize:
        print(summarize(args.summarize, args.top))
        return 0
    if not args.what:
        parser.error("say what to profile: drain or emit")
    pyspy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(pyspy):
        parser.error("py-spy is not installed: pip install py-spy")
    size = args.size or (1_000_000 if args.what == "drain" else 2_000_000)
    target = [sys.executable, os.path.join(HERE, "peers.py"), "--profile", args.what]
    with tempfile.TemporaryDirectory() as tmp:
        raw = args.raw or os.path.join(tmp, f"{args.what}.raw")
        # The target sets up first (queueing the backlog is not what is profiled), says READY,
        # and runs the workload once py-spy is attached and it reads a line.
        proc = subprocess.Popen(
            [*target, "--size", str(size)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        ready = proc.stdout.readline()
        if not ready.startswith("READY"):
            proc.kill()
            raise SystemExit(f"the target did not start: {ready!r}")
        cmd = [pyspy, "record", "--format", "raw", "--threads", "-r", str(args.rate), "-o", raw]
        cmd += ["--pid", str(proc.pid)] + (["--gil"] if args.gil else [])
        spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)  # py-spy attached
        proc.stdin.write("go\n")
        proc.stdin.flush()
        done = proc.stdout.readline().strip()
        proc.wait()
        _, err = spy.communicate(timeout=60)
        if spy.returncode:
            raise SystemExit(f"py-spy failed: {err.strip()}")
        print(f"{done}\n{args.what}{' (GIL held)' if args.gil else ''}: {summarize(raw, args.top)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
