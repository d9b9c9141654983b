"""Small things that add up: file modes follow the umask, --force leaves nothing of the
previous experiment, a closed pipe is not an error, report.md says why plots are missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sim.cli import main

TINY = ("name: tiny\nmachine: desktop-8c16t\nworkload: seed-i915\nvariants: [linux-4.7]\n"
        "duration: 100us\nreplications: 1\nsweep: {cpus: [1, 2]}\n")


def run(tmp_path: Path, text: str, *args: str) -> Path:
    exp, out = tmp_path / "e.yaml", tmp_path / "out"
    exp.write_text(text)
    assert main(["run", str(exp), "-o", str(out), "-q", "-j", "1", *args]) == 0
    return out


def test_result_files_follow_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        out = run(tmp_path, TINY, "--no-report")
    finally:
        os.umask(previous)
    for path in [out / "summary.csv", out / "lock_stat.txt", *(out / "runs").glob("*.json")]:
        assert path.stat().st_mode & 0o777 == 0o644, path


def test_force_leaves_nothing_of_the_previous_experiment(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = run(tmp_path, TINY.replace("variants: [linux-4.7]",
                                     "variants: [linux-4.5, linux-4.7]\nbaseline: linux-4.5"))
    assert (out / "paired.csv").exists() and list((out / "plots").glob("*paired.png"))
    run(tmp_path, TINY.replace("sweep: {cpus: [1, 2]}", "sweep: {cpus: [2, 4]}"), "--force",
        "--no-report")
    assert not (out / "paired.csv").exists() and not (out / "report.md").exists()
    assert not list((out / "plots").glob("*.png"))


def test_a_closed_pipe_is_not_an_error() -> None:
    listing = subprocess.run(f"{sys.executable} -m sim list variants | head -1", shell=True,
                             capture_output=True, text=True)
    assert listing.stdout.count("\n") == 1 and listing.stderr == ""


def test_report_md_says_plots_were_left_out_on_request(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = run(tmp_path, TINY, "--no-report")
    assert main(["report", str(out), "--no-plots"]) == 0
    text = (out / "report.md").read_text()
    assert "--no-plots" in text and "need matplotlib" not in text


@pytest.mark.parametrize(("args", "code"), [(["--help"], 0), (["/no/such/raw"], 2),
                                             ([], 2), (["/"], 2)])
def test_trace2csv_answers_without_a_traceback(args: list[str], code: int) -> None:
    tool = Path(__file__).parents[1] / "tools" / "trace2csv.py"
    done = subprocess.run([sys.executable, str(tool), *args], capture_output=True, text=True)
    assert done.returncode == code and "Traceback" not in done.stderr
    assert code == 0 or done.stderr.count("\n") <= 2


@pytest.mark.parametrize("extra", [[], ["ops=3000"], ["workload=test_vmalloc-fix_size_alloc_test"]],
                         ids=["duration", "ops", "finishing-kind"])
def test_a_run_with_its_progress_bar_gives_the_same_numbers(extra: list[str]) -> None:
    """The single-run bar moves in steps of 0.1% of simulated time (with ops or a finishing
    kind too), and slicing the run for it changes nothing."""
    import json as json_module

    import sim

    spec = sim.load_experiment("seed", ["sweep.cpus=[4]", "sweep.workload.background.count=[100]",
                                        "replications=1", "duration=2ms", "warmup=0",
                                        *extra]).specs()[0]
    seen: list[float] = []
    with_bar = sim.run(spec, progress=seen.append)
    plain = sim.run(spec)
    assert json_module.dumps(with_bar["metrics"]) == json_module.dumps(plain["metrics"])
    assert seen == sorted(seen) and seen[-1] == 1.0 and (len(seen) >= 100 or extra)
