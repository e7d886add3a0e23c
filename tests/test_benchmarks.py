"""The peers benchmark runs (a smoke run: nbworkers and the in-memory bound only, small sizes).

No speed is asserted here: the targets live in the benchmark, and this machine is shared.
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
    assert results["busy"]["busy_done"] >= 0
    assert "PASS" in proc.stdout or "FAIL" in proc.stdout
