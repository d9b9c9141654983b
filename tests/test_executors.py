"""Executors: the same results, bit for bit, serially, in local processes and on Dask; a run
that raises is recorded and the sweep goes on."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

import sim
from sim.cli import main
from sim.experiment import runner as runner_module
from sim.experiment.executors import ProcessExecutor, SerialExecutor, open_executor
from sim.experiment.experiment import Experiment, load_experiment
from sim.results.store import CHECKSUM, checksum_of
from sim.simulation import RunSpec

TINY = str(Path(__file__).parent / "data" / "tiny.yaml")
SMALL = ["--set", "sweep.cpus=[1,2]", "--set", "sweep.workload.background.count=[100]",
         "--set", "baseline=linux-4.5"]


def _run(out: Path, *args: str) -> int:
    return main(["run", TINY, "-o", str(out), "-q", "--no-report", *SMALL, *args])


def _metrics(out: Path) -> dict[str, str]:
    """Every run's result file, by run id (the text of its metrics and lock_stat)."""
    return {p.stem: json.dumps([json.loads(p.read_text())[k] for k in ("metrics", "lock_stat")])
            for p in (out / "runs").glob("*.json")}


@pytest.fixture(scope="module")
def serial(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("serial")
    assert _run(out, "-j", "1") == 0
    return out


def _same(a: Path, b: Path) -> None:
    for name in ("summary.csv", "paired.csv", "lock_stat.txt"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert _metrics(a) == _metrics(b) and len(_metrics(a)) == 8


def test_local_processes_match_serial(serial: Path, tmp_path: Path) -> None:
    assert _run(tmp_path, "-j", "2") == 0
    _same(serial, tmp_path)


def test_dask_cluster_matches_serial(serial: Path, tmp_path: Path) -> None:
    import distributed  # the test extra installs it

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None,
                                  silence_logs=logging.ERROR) as cluster:
        assert _run(tmp_path / "join", "--scheduler", cluster.scheduler_address) == 0
    _same(serial, tmp_path / "join")
    assert _run(tmp_path / "own", "--executor", "dask", "-j", "2") == 0  # vmapsim's own cluster
    _same(serial, tmp_path / "own")


def test_executor_choice() -> None:
    assert isinstance(open_executor("local", 1), SerialExecutor)
    pool = open_executor("local", 2)
    assert isinstance(pool, ProcessExecutor)
    with pool:
        assert sorted(r.result() for _, r in pool.map_unordered(abs, [-3, 1, -2])) == [1, 2, 3]


def test_scheduler_needs_dask_executor(tmp_path: Path, capsys) -> None:
    assert _run(tmp_path, "--executor", "local", "--scheduler", "tcp://127.0.0.1:1") == 2
    assert "needs --executor dask" in capsys.readouterr().err


def test_failed_run_is_recorded_and_the_sweep_goes_on(tmp_path: Path, monkeypatch,
                                                      capsys) -> None:
    real = runner_module.run

    def flaky(spec):
        if spec.variant == "linux-4.7" and spec.point["cpus"] == 2 and spec.replication == 1:
            raise RuntimeError("injected by the test")
        return real(spec)

    monkeypatch.setattr(runner_module, "run", flaky)
    assert _run(tmp_path, "-j", "1") == 1
    err = capsys.readouterr().err
    assert "1 of 8 runs failed" in err and "RuntimeError: injected by the test" in err
    results = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*.json")]
    failed = [r for r in results if r["status"] != "ok"]
    assert len(results) == 8 and len(failed) == 1
    (bad,) = failed
    assert bad["error"] == "RuntimeError: injected by the test"
    assert bad["run_id"] in err and "Traceback" in bad["traceback"]
    assert bad["spec"]["point"] == {"cpus": 2, "workload.background.count": 100}
    summary = (tmp_path / "summary.csv").read_text().splitlines()
    ops = [line for line in summary if ",ops_per_sec," in line]
    assert sorted(line.rsplit(",", 1)[1] for line in ops) == ["1", "2", "2", "2"]


class _OneBadSpec(Experiment):
    """An experiment whose second run has a configuration no file could produce (0 CPUs): its
    run raises in the worker process."""

    def specs(self) -> list[RunSpec]:
        specs = super().specs()
        bad = specs[1]
        specs[1] = RunSpec(bad.experiment, {**bad.config, "cpus": 0}, bad.point,
                           bad.replication, bad.seed, bad.entropy)
        return specs


def test_failure_in_a_worker_process(tmp_path: Path) -> None:
    exp = load_experiment(TINY, [s for s in SMALL if s != "--set"])
    outcome = sim.run_experiment(_OneBadSpec(**vars(exp)), tmp_path, jobs=2, report=False)
    (bad,) = outcome.failures
    assert bad["error"].startswith("ValidationError") and bad["spec"]["config"]["cpus"] == 0
    assert len(outcome.results) == 8
    written = json.loads((tmp_path / "runs" / f"{bad['run_id']}.json").read_text())
    assert written.pop(CHECKSUM) == checksum_of(bad) and written == bad


def test_dask_executor_without_dask(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    assert _run(tmp_path, "--executor", "dask", "-j", "1") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'vmapsim[dask]'" in err
