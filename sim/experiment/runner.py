"""Running an experiment: execute its run specs, store each result as it arrives, report.

Runs execute on any :mod:`sim.executors` executor (serially, in local worker processes, on a
Dask cluster); results are identical on each because a run is a pure function of its spec.
Results stream back in completion order and each is written at once, atomically, to
``DIR/runs/<run_id>.json``, so an interrupted sweep keeps every finished run and ``resume``
computes only the others. A run that raises is recorded as failed (with its error and spec)
and the others go on.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sim.config.loader import ConfigError
from sim.experiment.executors import default_jobs, open_executor
from sim.experiment.experiment import Experiment
from sim.experiment.progress import Progress, SimTimeProgress
from sim.experiment.resume import finished_runs, prepare_output, refuse_other_versions
from sim.results.dirlock import exclusive
from sim.results.paired import paired_rows
from sim.results.plots import available as plots_available
from sim.results.report import write_report, write_tables
from sim.results.store import RUNS, Manifest, OutputError, summary_rows, write_manifest, write_run
from sim.simulation import RunSpec, run

__all__ = ["ExperimentResult", "default_jobs", "run_experiment", "run_safely"]


@dataclass
class ExperimentResult:
    """Every run's result (in spec order), the summary rows and the paired differences."""

    experiment: Experiment
    results: list[dict[str, Any]]
    rows: list[dict[str, Any]]
    paired: list[dict[str, Any]] = field(default_factory=list)
    reused: int = 0
    """Runs taken from the output directory (``resume``) rather than computed."""
    plots: list[Path] = field(default_factory=list)

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [r for r in self.results if r.get("status") != "ok"]


def run_safely(spec: RunSpec, progress: Callable[[float], None] | None = None
               ) -> dict[str, Any]:
    """``run(spec)``, with an exception turned into a failed-run record."""
    try:
        return run(spec) if progress is None else run(spec, progress=progress)
    except Exception as exc:  # a failed run must not stop the sweep
        return failed_result(spec, exc)


def failed_result(spec: RunSpec, exc: BaseException) -> dict[str, Any]:
    """The record of a run that raised ``exc`` (or whose worker died)."""
    return {"run_id": spec.run_id, "spec": spec.to_dict(), "status": "failed",
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": "".join(traceback.format_exception(exc))}


def manifest_of(experiment: Experiment, specs: list[RunSpec]) -> Manifest:
    return Manifest(experiment.name, experiment.description, experiment.seed,
                    experiment.replications, experiment.swept_keys, experiment.variant_names,
                    experiment.baseline, [spec.run_id for spec in specs],
                    experiment.sweep.sampled_keys, list(experiment.rank))


def run_experiment(experiment: Experiment, out_dir: str | Path | None = None, jobs: int = 1,
                   progress: bool = False, *, executor: str = "local",
                   scheduler: str | None = None, resume: bool = False, force: bool = False,
                   report: bool = True, log: Callable[[str], None] | None = None,
                   reuse_other_versions: bool = False, plots: str = "headline"
                   ) -> ExperimentResult:
    """Run every spec of ``experiment`` on ``jobs`` workers of ``executor`` (``local`` or
    ``dask``; ``scheduler`` joins a running Dask cluster).

    With ``out_dir``: refuse a directory holding another experiment's runs unless ``resume``
    (keep the finished runs that match and compute the rest) or ``force`` (start over); write
    each run as it finishes, then the tables and, with ``report``, the plots (when matplotlib
    is installed; the headline metrics', every metric's with ``plots="all"``) and
    ``report.md``. ``log`` receives one-line notes (resumed runs, damaged files). ``resume``
    refuses runs written with other versions unless ``reuse_other_versions``.
    """
    out = Path(out_dir) if out_dir is not None else None
    options = (jobs, progress, executor, scheduler, resume, force, report, log,
               reuse_other_versions, plots)
    if out is None:
        return _run(experiment, None, *options)
    with exclusive(out):  # one vmapsim at a time writes into a directory
        return _run(experiment, out, *options)


def _run(experiment: Experiment, out: Path | None, jobs: int, progress: bool, executor: str,
         scheduler: str | None, resume: bool, force: bool, report: bool,
         log: Callable[[str], None] | None, reuse_other_versions: bool,
         plots: str = "headline") -> ExperimentResult:
    specs = experiment.specs()
    done: dict[str, dict[str, Any]] = {}
    if out is not None:
        try:
            prepare_output(out, specs, resume, force)
            if resume:
                done = _resumable(out, specs, log, reuse_other_versions)
            write_manifest(out, manifest_of(experiment, specs))
        except OSError as exc:  # the directory the user named cannot be written
            raise ConfigError(f"cannot write to the output directory: {_reason(exc)}",
                              str(out)) from None
    kept = len(done)
    todo = [spec for spec in specs if spec.run_id not in done]
    single = progress and len(todo) == 1 and scheduler is None and executor == "local"
    bar = Progress(len(specs), len(done), progress and not single)
    stream = _single_with_time_bar(todo[0]) if single else \
        _execute(todo, executor, jobs, scheduler)
    try:
        for result in stream:
            done[result["run_id"]] = result
            if out is not None:
                try:
                    write_run(out, result)
                except OSError as exc:
                    raise OutputError(
                        f"{out}: cannot write a run file: {_reason(exc)}; the sweep stopped; "
                        f"{kept} finished run(s) are kept in {out / RUNS} (make room, then "
                        "rerun with --resume)") from None
                kept += 1
            bar.update(failed=result.get("status") != "ok")
    finally:
        stream.close()  # on Ctrl-C: stop the workers now, not when the traceback is freed
        bar.close()
    results = [done[spec.run_id] for spec in specs]
    try:
        return _summarise(experiment, specs, results, out, report, len(specs) - len(todo),
                          plots)
    except OSError as exc:
        raise OutputError(f"{out}: cannot write the tables and report: {_reason(exc)}; all "
                          f"{len(specs)} runs are kept in {out / RUNS} (make room, then run "
                          f"'vmapsim report {out}')") from None


def _reason(exc: OSError) -> str:
    """``No space left on device`` (and the file, when the error names one)."""
    text = exc.strerror or str(exc) or type(exc).__name__
    return f"{text} ({exc.filename})" if exc.filename else text


def _single_with_time_bar(spec: RunSpec) -> Generator[dict[str, Any], None, None]:
    """One run in this process, with a bar over its simulated time."""
    bar = SimTimeProgress(spec.variant)
    try:
        yield run_safely(spec, bar)
    finally:
        bar.close()


def _resumable(out: Path, specs: list[RunSpec], log: Callable[[str], None] | None,
               reuse_other_versions: bool) -> dict[str, dict[str, Any]]:
    found = finished_runs(out, specs)
    if not reuse_other_versions:
        refuse_other_versions(out, found)
    if log is not None:
        log(f"resume: {len(found.results)} of {len(specs)} runs already finished"
            + (f"; {len(found.failed)} failed run(s) retried" if found.failed else "")
            + (f"; {len(found.damaged)} damaged result file(s) recomputed"
               if found.damaged else ""))
    return found.results


def _execute(specs: list[RunSpec], kind: str, jobs: int, scheduler: str | None
             ) -> Generator[dict[str, Any], None, None]:
    """Results of ``specs`` in completion order; a worker that dies fails only its runs."""
    if not specs:
        return
    if kind == "local" and scheduler is None:
        jobs = min(jobs, len(specs))
    with open_executor(kind, jobs, scheduler) as pool:
        for spec, future in pool.map_unordered(run_safely, specs):
            try:
                yield future.result()
            except Exception as exc:  # the executor lost the run (a worker died)
                yield failed_result(spec, exc)


def _summarise(experiment: Experiment, specs: list[RunSpec], results: list[dict[str, Any]],
               out: Path | None, report: bool, reused: int, plots: str = "headline"
               ) -> ExperimentResult:
    swept = experiment.swept_keys
    if out is None:
        rows = summary_rows(results, swept)
        paired = paired_rows(results, swept, experiment.variant_names, experiment.baseline) \
            if experiment.baseline else []
        return ExperimentResult(experiment, results, rows, paired, reused)
    manifest = manifest_of(experiment, specs)
    written = write_report(out, manifest, results, plots=plots_available(),
                           every=plots == "all") if report \
        else write_tables(out, manifest, results)
    return ExperimentResult(experiment, results, written.rows, written.paired, reused,
                            written.plots)
