"""Resume and faults: a killed or interrupted sweep keeps its finished runs, ``--resume`` computes
only the others (damaged files again), and a directory of another experiment is refused."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sim.cli import main
from sim.experiment import runner as runner_module

TINY = str(Path(__file__).parent / "data" / "tiny.yaml")
SLOW = [TINY, "--no-report", "--set", "duration=3ms"]  # 16 runs of a few hundred ms each
SMALL = [TINY, "-q", "--no-report", "--set", "sweep.cpus=[2]"]  # 8 quick runs


def _start(out: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sim", "run", *SLOW, "-q", "-o", str(out),
                             *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def _wait_for_files(proc: subprocess.Popen, runs: Path, count: int) -> None:
    deadline = time.monotonic() + 120
    while len(list(runs.glob("*.json"))) < count:
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.01)


def _snapshot(runs: Path) -> dict[str, tuple[int, bytes]]:
    return {p.stem: (p.stat().st_mtime_ns, p.read_bytes()) for p in runs.glob("*.json")}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The same sweep, uninterrupted."""
    out = tmp_path_factory.mktemp("reference")
    assert main(["run", *SLOW, "-q", "-o", str(out), "-j", "2"]) == 0
    return out


@pytest.fixture()
def computed(monkeypatch) -> list[str]:
    """Run ids computed in this process (``-j 1``)."""
    calls: list[str] = []
    real = runner_module.run

    def counting(spec):
        calls.append(spec.run_id)
        return real(spec)

    monkeypatch.setattr(runner_module, "run", counting)
    return calls


def test_killed_sweep_resumes_without_recomputing(reference: Path, tmp_path: Path, computed,
                                                  capsys) -> None:
    runs = tmp_path / "runs"
    proc = _start(tmp_path, "-j", "1")
    _wait_for_files(proc, runs, 3)
    proc.kill()  # SIGKILL: no handler runs
    proc.wait()
    before = _snapshot(runs)
    assert 3 <= len(before) < 16, "the sweep finished before it could be killed"
    for text in (v[1] for v in before.values()):
        assert json.loads(text)["status"] == "ok"  # atomic writes: every file is whole
    damaged = sorted(before)[0]
    (runs / f"{damaged}.json").write_bytes(before[damaged][1][: len(before[damaged][1]) // 2])
    (runs / ".stale.json.123.tmp").write_text("{")  # what a killed writer may leave

    assert main(["run", *SLOW, "-o", str(tmp_path), "-j", "1", "--resume"]) == 0
    err = capsys.readouterr().err
    assert f"resume: {len(before) - 1} of 16 runs already finished" in err
    assert "1 damaged result file(s) recomputed" in err
    manifest = json.loads((tmp_path / "experiment.json").read_text())
    kept = set(before) - {damaged}
    assert sorted(computed) == sorted(set(manifest["run_ids"]) - kept)  # each once, none kept
    after = _snapshot(runs)
    assert all(after[k] == before[k] for k in kept)  # untouched: same bytes, same mtime
    assert json.loads(after[damaged][1])["status"] == "ok"
    assert len(after) == 16 and not list(runs.glob("*.tmp"))
    assert (tmp_path / "summary.csv").read_bytes() == (reference / "summary.csv").read_bytes()


def test_ctrl_c_stops_workers_and_keeps_finished_runs(reference: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    proc = _start(tmp_path, "-j", "2")
    _wait_for_files(proc, runs, 2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "interrupted; finished runs are kept" in err and "Traceback" not in err
    finished = list(runs.glob("*.json"))
    assert all(json.loads(p.read_text())["status"] == "ok" for p in finished)
    assert not list(runs.glob("*.tmp"))
    assert main(["run", *SLOW, "-q", "-o", str(tmp_path), "-j", "2", "--resume"]) == 0
    assert (tmp_path / "summary.csv").read_bytes() == (reference / "summary.csv").read_bytes()


def test_resume_with_everything_finished_computes_nothing(tmp_path: Path, computed) -> None:
    assert main(["run", *SMALL, "-o", str(tmp_path), "-j", "1"]) == 0
    summary = (tmp_path / "summary.csv").read_bytes()
    computed.clear()
    assert main(["run", *SMALL, "-o", str(tmp_path), "-j", "1", "--resume"]) == 0
    assert computed == []
    assert (tmp_path / "summary.csv").read_bytes() == summary


def test_failed_runs_are_retried_on_resume(tmp_path: Path, monkeypatch, computed) -> None:
    counting = runner_module.run

    def broken(spec):
        raise OSError("disk on fire")

    monkeypatch.setattr(runner_module, "run", broken)
    assert main(["run", *SMALL, "-o", str(tmp_path), "-j", "1"]) == 1
    monkeypatch.setattr(runner_module, "run", counting)
    assert main(["run", *SMALL, "-o", str(tmp_path), "-j", "1", "--resume"]) == 0
    assert len(computed) == 8


def test_directory_of_another_experiment_is_refused(tmp_path: Path, capsys) -> None:
    assert main(["run", *SMALL, "-o", str(tmp_path), "-j", "1"]) == 0
    original = (tmp_path / "summary.csv").read_bytes()
    ids = {p.stem for p in (tmp_path / "runs").glob("*.json")}
    assert main(["run", *SMALL, "-o", str(tmp_path), "-j", "1"]) == 0  # same runs: fine
    capsys.readouterr()

    assert main(["run", *SMALL, "-o", str(tmp_path), "--set", "seed=8"]) == 2
    err = capsys.readouterr().err
    assert err == (f"vmapsim: error: {tmp_path}: holds 8 run(s) of another experiment or "
                   "other settings; use --resume to keep the finished runs that match, or "
                   "--force to replace them\n")
    assert {p.stem for p in (tmp_path / "runs").glob("*.json")} == ids  # nothing touched

    assert main(["run", *SMALL, "-o", str(tmp_path), "-j", "1", "--set", "seed=8",
                 "--force"]) == 0
    reseeded = {p.stem for p in (tmp_path / "runs").glob("*.json")}
    assert len(reseeded) == 8 and reseeded.isdisjoint(ids)

    # --resume accepts the foreign files, and the tables cover this experiment's runs only
    assert main(["run", *SMALL, "-o", str(tmp_path), "-j", "1", "--resume"]) == 0
    assert len(list((tmp_path / "runs").glob("*.json"))) == 16
    assert (tmp_path / "summary.csv").read_bytes() == original


def test_resume_and_force_exclude_each_other(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", *SMALL, "-o", str(tmp_path), "--resume", "--force"])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err



def test_output_path_that_cannot_be_a_directory(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["run", *SMALL, "-o", str(blocker)]) == 2
    err = capsys.readouterr().err
    assert err == f"vmapsim: error: {blocker}: cannot create the output directory: Not a " \
                  "directory\n"
