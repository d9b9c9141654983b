"""Provenance: every run file and manifest records the versions that produced it, ``vmapsim
--version`` says them, ``--resume`` refuses run files of other versions unless told, and the
workers of a Dask cluster must run the same versions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sim.cli import main
from sim.config.loader import ConfigError
from sim.config.versions import PACKAGES, check_same_versions, versions
from sim.results.store import CHECKSUM, checksum_of


def test_version_names_vmapsim_and_what_it_runs_on(capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"vmapsim {versions()['vmapsim']} ")
    for package in PACKAGES:
        assert package in out


def test_run_files_and_the_manifest_record_the_versions(finished: Path) -> None:
    for path in (finished / "runs").glob("*.json"):
        assert json.loads(path.read_text())["versions"] == versions()
    assert json.loads((finished / "experiment.json").read_text())["versions"] == versions()


def pretend_older(out: Path) -> None:
    for path in (out / "runs").glob("*.json"):
        result = json.loads(path.read_text())
        result["versions"]["numpy"] = "0.0.1"
        result[CHECKSUM] = checksum_of(result)
        path.write_text(json.dumps(result))


def test_resume_refuses_runs_of_another_version(finished: Path, tmp_path: Path,
                                                capsys) -> None:
    pretend_older(finished)
    capsys.readouterr()
    argv = ["run", str(tmp_path / "tiny.yaml"), "-o", str(finished), "--resume", "-q",
            "--no-report", "-j", "1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "2 run file(s) were written with other versions" in err
    assert "numpy 0.0.1" in err and "--reuse-other-versions" in err
    assert main([a for a in argv if a != "-q"] + ["--reuse-other-versions"]) == 0
    assert "resume: 2 of 2 runs already finished" in capsys.readouterr().err


def test_dask_workers_must_run_the_same_versions() -> None:
    mine = versions()
    check_same_versions(mine, {"tcp://a:1": dict(mine)})
    other = {**mine, "simpy": "9.9"}
    with pytest.raises(ConfigError) as raised:
        check_same_versions(mine, {"tcp://a:1": dict(mine), "tcp://b:2": other})
    assert "tcp://b:2" in str(raised.value) and "simpy 9.9" in str(raised.value)
