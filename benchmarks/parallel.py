"""How much a sweep gains from local worker processes: serial against ``-j N``, in one process.

Run from the repository root::

    python benchmarks/parallel.py            # a 40-run sweep, serial then -j 2
    python benchmarks/parallel.py --jobs 4 --json parallel.json

The sweep is ``tests/data/tiny.yaml`` widened to 40 runs (2 variants x 4 CPU counts x 5
replications at one background size), each run long enough (a few hundred milliseconds of wall
time) that process start-up is a small part of it. Both executions write no files; the
speed-up is serial wall time over parallel wall time, and the summaries of both are checked to
be identical (parallel execution must not change results).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import sim

EXPERIMENT = Path(__file__).resolve().parent.parent / "tests" / "data" / "tiny.yaml"
OVERRIDES = ["sweep.cpus=[1,2,4,8]", "sweep.workload.background.count=[2000]",
             "replications=5", "duration=4ms", "warmup=0.5ms"]


def timed_run(jobs: int) -> tuple[float, list[dict]]:
    experiment = sim.load_experiment(str(EXPERIMENT), OVERRIDES)
    started = time.perf_counter()
    outcome = sim.run_experiment(experiment, jobs=jobs)
    return time.perf_counter() - started, outcome.rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()
    runs = len(sim.load_experiment(str(EXPERIMENT), OVERRIDES).specs())
    serial_s, serial_rows = timed_run(1)
    parallel_s, parallel_rows = timed_run(args.jobs)
    if serial_rows != parallel_rows:
        raise SystemExit("parallel execution changed the summary: a determinism bug")
    figures = {"runs": runs, "host_cpus": os.cpu_count(), "jobs": args.jobs,
               "serial_s": round(serial_s, 2), "parallel_s": round(parallel_s, 2),
               "speedup": round(serial_s / parallel_s, 2)}
    print(f"{runs} runs: serial {serial_s:.1f} s, -j {args.jobs} {parallel_s:.1f} s, "
          f"speed-up {figures['speedup']}x on {figures['host_cpus']} host CPUs "
          "(identical summaries)")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
