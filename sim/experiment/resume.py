"""Resuming a sweep: which runs an output directory already holds, and whose runs they are.

Each finished run is one file ``DIR/runs/<run_id>.json``, written atomically, and the run id
hashes the complete spec. So a directory is resumed by reading back the files of the specs
still wanted: a file that is missing, truncated, unparsable, a failed run, or not the record of
exactly this spec is computed again. Files of other run ids belong to another experiment (or
other settings); the runner refuses to mix them in unless told to resume or to start over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sim.config.loader import ConfigError
from sim.config.versions import describe, differences, versions
from sim.results.plots import PLOTS
from sim.results.store import RUNS, TABLES, read_run, run_path, subdirectory
from sim.simulation import RunSpec


@dataclass
class Finished:
    """What a directory holds for a list of specs."""

    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Successful results of wanted specs, by run id."""
    damaged: list[str] = field(default_factory=list)
    """Run ids whose file exists but cannot be used (recomputed)."""
    failed: list[str] = field(default_factory=list)
    """Run ids recorded as failed (retried)."""
    other_versions: dict[str, str] = field(default_factory=dict)
    """Successful results written with other versions (run id: what differs)."""


def prepare_output(out_dir: Path, specs: list[RunSpec], resume: bool, force: bool) -> None:
    """Create ``out_dir/runs``; refuse a directory holding runs of another experiment unless
    ``resume`` or ``force``; with ``force`` (and no ``resume``) remove every earlier result
    file; remove temporary files a killed writer left behind."""
    try:  # not a link: reading, writing and --force's deletions would happen where it points
        runs = subdirectory(out_dir, RUNS)
    except OSError as exc:
        raise ConfigError(f"cannot create the output directory: {exc.strerror or exc}",
                          str(out_dir)) from None
    for tmp in runs.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    wanted = {spec.run_id for spec in specs}
    foreign = [p for p in runs.glob("*.json") if p.stem not in wanted]
    if foreign and not (resume or force):
        raise ConfigError(f"holds {len(foreign)} run(s) of another experiment or other "
                          "settings; use --resume to keep the finished runs that match, or "
                          "--force to replace them", str(out_dir))
    if force and not resume:
        for path in runs.glob("*.json"):
            path.unlink()
        _remove_outputs(out_dir)


def _remove_outputs(out_dir: Path) -> None:
    """The previous experiment's tables, report and plots (a link is removed, never
    followed)."""
    for name in TABLES:
        (out_dir / name).unlink(missing_ok=True)
    plots = out_dir / PLOTS
    if plots.is_dir() and not plots.is_symlink():
        for png in plots.glob("*.png"):
            png.unlink()


def finished_runs(out_dir: Path, specs: list[RunSpec]) -> Finished:
    """The usable results of ``specs`` in ``out_dir``."""
    found = Finished()
    for spec in specs:
        if not run_path(out_dir, spec.run_id).exists():
            continue
        result = read_run(out_dir, spec.run_id)
        if result is None or result.get("spec") != spec.to_dict():
            found.damaged.append(spec.run_id)
        elif result.get("status") != "ok":
            found.failed.append(spec.run_id)
        else:
            found.results[spec.run_id] = result
            diff = differences(versions(), result.get("versions"))
            if diff:
                found.other_versions[spec.run_id] = diff
    return found


def refuse_other_versions(out_dir: Path, found: Finished) -> None:
    """``--resume`` does not mix results of two versions unless told to."""
    if found.other_versions:
        example = next(iter(found.other_versions.values()))
        raise ConfigError(f"{len(found.other_versions)} run file(s) were written with other "
                          f"versions ({example}; here: {describe(versions())}); --force "
                          "recomputes them, --reuse-other-versions keeps them", str(out_dir))
