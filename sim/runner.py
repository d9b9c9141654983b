"""Running an experiment: execute its run specs, store results, summarise.

Runs execute serially or in local worker processes (``concurrent.futures``); results are
identical either way because each run is a pure function of its spec. A run that raises is
recorded as failed (with its error and spec) and the others go on.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .experiment import Experiment
from .run import RunSpec, run
from .store import summary_rows, write_lock_stat, write_run, write_summary


@dataclass
class ExperimentResult:
    """Every run's result (in spec order) and the summary rows."""

    experiment: Experiment
    results: list[dict[str, Any]]
    rows: list[dict[str, Any]]

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [r for r in self.results if r.get("status") != "ok"]


def run_safely(spec: RunSpec) -> dict[str, Any]:
    """``run(spec)``, with an exception turned into a failed-run record."""
    try:
        return run(spec)
    except Exception as exc:  # a failed run must not stop the sweep
        return {"run_id": spec.run_id, "spec": spec.to_dict(), "status": "failed",
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc()}


def default_jobs() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def execute(specs: list[RunSpec], jobs: int,
            on_result: Callable[[dict[str, Any]], None]) -> list[dict[str, Any]]:
    """Run ``specs`` on ``jobs`` processes (1: in this process); results in spec order."""
    by_id: dict[str, dict[str, Any]] = {}
    if jobs <= 1 or len(specs) <= 1:
        for spec in specs:
            by_id[spec.run_id] = run_safely(spec)
            on_result(by_id[spec.run_id])
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(run_safely, spec) for spec in specs]
            for future in as_completed(futures):
                result = future.result()
                by_id[result["run_id"]] = result
                on_result(result)
    return [by_id[spec.run_id] for spec in specs]


def run_experiment(experiment: Experiment, out_dir: str | Path | None = None, jobs: int = 1,
                   progress: bool = False) -> ExperimentResult:
    """Run every spec of ``experiment``; with ``out_dir``, write run files and summaries."""
    specs = experiment.specs()
    out = Path(out_dir) if out_dir is not None else None
    done = 0

    def on_result(result: dict[str, Any]) -> None:
        nonlocal done
        done += 1
        if out is not None:
            write_run(out, result)
        if progress:
            print(f"\r  run {done}/{len(specs)}", end="", file=sys.stderr, flush=True)

    results = execute(specs, jobs, on_result)
    if progress:
        print(file=sys.stderr)
    swept = experiment.swept_keys
    rows = summary_rows(results, swept)
    if out is not None:
        write_summary(out, rows, swept)
        write_lock_stat(out, results, swept)
    return ExperimentResult(experiment, results, rows)
