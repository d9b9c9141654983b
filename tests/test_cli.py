"""The command line end to end: run, check, list, results layout, determinism."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from sim.cli import main
from sim.config.loader import catalog_names
from sim.simulation import RunConfig

TINY = str(Path(__file__).parent / "data" / "tiny.yaml")
REQUIRED_METRICS = {
    "ops_per_sec", "vmalloc_p50_ns", "vmalloc_p99_ns", "vfree_p99_ns", "set_memory_p99_ns",
    "purges", "purge_mean_ns", "purge_max_ns", "tlb_flush_full", "tlb_flush_range", "ipis",
    "vmap_area_lock_wait_ns", "vmap_area_lock_hold_max_ns", "purge_lock_contentions",
    "lazy_pages_peak", "alloc_failures",
}


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny")
    assert main(["run", TINY, "-o", str(out), "-j", "1", "-q"]) == 0
    return out


def test_summary_is_tidy_long_form(tiny_run: Path) -> None:
    rows = read_csv(tiny_run / "summary.csv")
    assert list(rows[0]) == ["variant", "cpus", "workload.background.count", "metric", "mean",
                             "ci_low", "ci_high", "n"]
    assert {r["metric"] for r in rows} >= REQUIRED_METRICS
    groups = {(r["variant"], r["cpus"], r["workload.background.count"]) for r in rows}
    assert len(groups) == 2 * 2 * 2
    ops = [r for r in rows if r["metric"] == "ops_per_sec"]
    assert all(r["n"] == "2" and float(r["ci_low"]) <= float(r["mean"]) <= float(r["ci_high"])
               for r in ops)


def test_run_files_describe_their_run(tiny_run: Path) -> None:
    files = sorted((tiny_run / "runs").glob("*.json"))
    assert len(files) == 16
    result = json.loads(files[0].read_text())
    assert result["run_id"] == files[0].stem
    spec = result["spec"]
    RunConfig.model_validate(spec["config"])  # the full resolved config is recorded
    assert spec["seed"] == 7 and spec["replication"] in (0, 1)
    assert set(result["lock_stat"]) == {"vmap_area_lock", "purge_lock", "cpa_lock"}
    assert (tiny_run / "lock_stat.txt").read_text().count("vmap_area_lock") == 8


def test_same_seed_same_summary_serial_and_parallel(tiny_run: Path, tmp_path: Path) -> None:
    assert main(["run", TINY, "-o", str(tmp_path), "-j", "2", "-q", "--no-report"]) == 0
    assert (tmp_path / "summary.csv").read_bytes() == (tiny_run / "summary.csv").read_bytes()


def test_seed_changes_numbers(tiny_run: Path, tmp_path: Path) -> None:
    assert main(["run", TINY, "-o", str(tmp_path), "-q", "--no-report", "--set", "seed=8"]) == 0
    assert (tmp_path / "summary.csv").read_bytes() != (tiny_run / "summary.csv").read_bytes()


def test_check_and_list(capsys) -> None:
    assert main(["check", TINY]) == 0
    assert "16 runs" in capsys.readouterr().out
    assert main(["list", "variants"]) == 0
    out = capsys.readouterr().out
    assert "linux-4.5" in out and "lazy_list=llist" in out
    for what, name in (("cpus", "xeon-2s-112"), ("workloads", "seed-i915"),
                       ("experiments", "seed")):
        assert main(["list", what]) == 0
        assert name in capsys.readouterr().out.split()


def test_python_dash_m_and_builtin_name_from_any_directory(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "sim", "check", "seed"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "ok" in proc.stdout


def test_api_runs_an_experiment(tmp_path: Path) -> None:
    import sim

    exp = sim.load_experiment(TINY, ["sweep.cpus=[2]", "sweep.workload.background.count=[50]",
                                     "replications=2"])
    outcome = sim.run_experiment(exp)
    assert {r["variant"] for r in outcome.rows} == {"linux-4.5", "linux-4.7"}
    assert "ops/s" in sim.format_table(outcome.rows, exp.swept_keys)


def test_wheel_ships_the_catalogs(tmp_path: Path) -> None:
    """A non-editable install carries cpus/, workloads/, experiments/ inside the package, so
    built-in names resolve from any directory."""
    import zipfile

    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                           "-w", str(tmp_path), str(root)],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {proc.stderr.strip()[-200:]}")
    wheel = next(tmp_path.glob("vmapsim-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("sim/catalog/cpus/xeon-2s-112.yaml", "sim/catalog/workloads/seed-i915.yaml",
                 "sim/catalog/experiments/seed.yaml", "sim/mm/presets.yaml",
                 "sim/catalog/workloads/traces/sample.csv"):
        assert name in names


@pytest.mark.parametrize("name", catalog_names("experiments"))
def test_every_catalog_experiment_checks(name: str, capsys) -> None:
    assert main(["check", name]) == 0
    assert "ok (" in capsys.readouterr().out
