"""The peers benchmark runs (a smoke run: nbworkers and the in-memory bound only, small sizes).

No speed is asserted here: the targets live in the benchmark, and this machine is shared; what
is checked is that the run completes, reports every target as judged and exits accordingly.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_peers_benchmark_quick_smoke(tmp_path):
    out = tmp_path / "peers.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "peers.py"),
            "--quick",
            "--systems",
            "nbworkers,memory",
            "--skip",
            "flat",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert out.exists(), proc.stdout + proc.stderr
    results = json.loads(out.read_text())
    summary = results["peers"]["summary"]
    assert set(summary) == {"nbworkers", "memory"}
    for figures in summary.values():
        assert figures["drain"] > 0 and figures["emit"] > 0
        assert figures["latency_samples"] >= 50
    assert results["dispatch"]["n"] > 0
    # The runtime made progress beside a busy cell: messages ran and probes started
    busy = results["busy"]
    assert busy["busy_done"] > 0 and busy["probes_started"] > 0, busy
    # Every target is reported as it was judged, and the exit code says whether all were met
    targets = results["targets"]
    assert targets, "no target was judged"
    for target in targets:
        verdict = "PASS" if target["passed"] else "FAIL"
        assert f"{verdict}  {target['name']}: {target['measured']}" in proc.stdout
    assert proc.returncode == (0 if all(t["passed"] for t in targets) else 1), proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr


def test_memory_benchmark_smoke_pages_a_queue_longer_than_its_window(tmp_path):
    out = tmp_path / "memory.json"
    sizes = ["--sizes", "2000", "6000", "--window", "1000", "--settle", "0"]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "memory.py"), *sizes, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads(out.read_text())
    assert [r["n"] for r in rows] == [2000, 6000]
    assert [r["in_memory"] for r in rows] == [1000, 1000]  # the rest stayed in the file
    assert all(r["rate"] > 0 and r["open_s"] > 0 for r in rows)
    assert "drain rate with 6,000 queued / with 2,000" in proc.stdout
