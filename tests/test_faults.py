"""Faults of the machine a sweep runs on: a worker killed (the OOM killer), vmapsim told to
stop (SIGTERM) or killed itself (SIGKILL), and a second vmapsim writing into the same output
directory. Finished runs are never lost, no process is left behind, no directory is mixed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import sim
from sim.cli import main
from sim.experiment import runner as runner_module
from sim.experiment.experiment import load_experiment
from sim.simulation import RunSpec

TINY = str(Path(__file__).parent / "data" / "tiny.yaml")
SMALL = ["sweep.cpus=[1,2]", "sweep.workload.background.count=[100]"]
SLOW = ("name: slow\nmachine: desktop-8c16t\nworkload: seed-i915\nvariants: [linux-4.7]\n"
        "duration: 20ms\nreplications: 4\nsweep: {cpus: [2, 4, 8]}\n")
"""Twelve runs of a few seconds each: long enough to be interrupted mid-sweep."""


KILL: dict[str, object] = {"marker": "", "always": False}
"""What :func:`killing_run` does (set before the pool forks its workers)."""


def killing_run(spec: RunSpec):
    """A run function whose worker kills itself (SIGKILL, as the OOM killer would) on the
    first replication of linux-4.7 at 2 CPUs: once (a marker file remembers it), or every
    time. Module level: the pool pickles it by name."""
    chosen = spec.config["cpus"] == 2 and spec.replication == 0 and spec.variant == "linux-4.7"
    if chosen and (KILL["always"] or not os.path.exists(str(KILL["marker"]))):
        Path(str(KILL["marker"])).write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return runner_module.run(spec)


@pytest.mark.parametrize("always", [False, True], ids=["once", "every-time"])
def test_a_killed_worker_costs_only_its_run(tmp_path: Path, monkeypatch, always: bool) -> None:
    marker = str(tmp_path / "killed")
    monkeypatch.setitem(KILL, "marker", marker)
    monkeypatch.setitem(KILL, "always", always)
    monkeypatch.setattr(runner_module, "run_safely", killing_run)
    exp = load_experiment(TINY, SMALL)
    outcome = sim.run_experiment(exp, tmp_path / "out", jobs=2, report=False)
    assert os.path.exists(marker) and len(outcome.results) == len(exp.specs())
    failed = outcome.failures
    if always:  # run twice, died twice: recorded failed; every other run finished
        assert len(failed) == 1 and "ProcessExpired" in failed[0]["error"]
    else:  # retried on a new worker, with the result a serial run gives
        assert not failed
        serial = sim.run_experiment(exp, None, jobs=1)
        assert json.dumps([r["metrics"] for r in outcome.results]) == \
            json.dumps([r["metrics"] for r in serial.results])


def start(tmp_path: Path, *args: str) -> subprocess.Popen:
    exp = tmp_path / "slow.yaml"
    exp.write_text(SLOW)
    return subprocess.Popen([sys.executable, "-m", "sim", "run", str(exp), "-o",
                             str(tmp_path / "out"), "-q", "--no-report", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path)


def wait_for_runs(tmp_path: Path, count: int, process: subprocess.Popen) -> None:
    runs = tmp_path / "out" / "runs"
    for _ in range(1200):
        if len(list(runs.glob("*.json"))) >= count or process.poll() is not None:
            return
        time.sleep(0.05)


def processes_of(tmp_path: Path) -> list[int]:
    """Processes (the parent or its workers) whose command line names this output."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(tmp_path / "out").encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def gone(tmp_path: Path, seconds: float = 10.0) -> bool:
    for _ in range(int(seconds / 0.1)):
        if not processes_of(tmp_path):
            return True
        time.sleep(0.1)
    return False


def test_sigterm_keeps_finished_runs_and_stops_the_workers(tmp_path: Path) -> None:
    process = start(tmp_path, "-j", "2")
    wait_for_runs(tmp_path, 1, process)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143
    assert err.count("\n") == 1 and "terminated" in err and "--resume" in err
    kept = list((tmp_path / "out" / "runs").glob("*.json"))
    assert kept and all(json.loads(p.read_text())["status"] == "ok" for p in kept)
    assert gone(tmp_path)


def test_workers_exit_when_vmapsim_is_killed(tmp_path: Path) -> None:
    process = start(tmp_path, "-j", "2")
    wait_for_runs(tmp_path, 1, process)
    assert len(processes_of(tmp_path)) >= 2  # the parent and its workers
    process.kill()
    process.communicate(timeout=60)
    assert gone(tmp_path), processes_of(tmp_path)


def test_a_second_run_into_the_same_directory_is_refused(tmp_path: Path, capsys) -> None:
    process = start(tmp_path, "-j", "1")
    try:
        wait_for_runs(tmp_path, 1, process)
        assert process.poll() is None
        assert main(["run", str(tmp_path / "slow.yaml"), "-o", str(tmp_path / "out"), "-q",
                     "--resume", "--no-report"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "in use by another vmapsim" in err
        assert str(process.pid) in err
    finally:
        process.kill()
        process.communicate(timeout=60)
    # once the first is gone, its lock goes with it
    assert main(["run", str(tmp_path / "slow.yaml"), "-o", str(tmp_path / "out"), "-q",
                 "--force", "--no-report", "--set", "sweep.cpus=[2]", "--set",
                 "replications=1", "--set", "duration=100us"]) == 0
