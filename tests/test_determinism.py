"""Results do not depend on Python's string hashing: the same experiment run in processes with
different ``PYTHONHASHSEED`` values (serially and on worker processes) writes byte-identical
run files and tables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TINY = str(Path(__file__).parent / "data" / "tiny.yaml")
SHRUNK = ["--set", "sweep.cpus=[1, 2]", "--set", "workload.background.count=100",
          "--set", "replications=2", "--set", "duration=0.5ms"]  # 8 short runs


def run_with_hash_seed(seed: str, out: Path, jobs: str) -> None:
    """``vmapsim run`` of the shrunk tiny experiment in a fresh interpreter."""
    env = {**os.environ, "PYTHONHASHSEED": seed}
    proc = subprocess.run([sys.executable, "-m", "sim", "run", TINY, *SHRUNK, "-q",
                           "--no-report", "-j", jobs, "-o", str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr


def test_hash_seed_does_not_change_results(tmp_path: Path) -> None:
    first, second = tmp_path / "seed0", tmp_path / "seed12345"
    run_with_hash_seed("0", first, "1")
    run_with_hash_seed("12345", second, "2")  # and on worker processes
    for table in ("summary.csv", "paired.csv", "lock_stat.txt"):
        if (first / table).exists() or (second / table).exists():
            assert (first / table).read_bytes() == (second / table).read_bytes(), table
    assert (first / "summary.csv").stat().st_size > 0
    runs = {p.name: p.read_bytes() for p in (first / "runs").glob("*.json")}
    assert len(runs) == 8
    assert runs == {p.name: p.read_bytes() for p in (second / "runs").glob("*.json")}
