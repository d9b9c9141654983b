"""The output directory: an unwritable or full one is one line on stderr and a non-zero exit
(2 for a path the user got wrong, 1 for a disk that fills mid-run), never a traceback, and the
finished run files are never lost; run ids and file names cannot leave the directory."""

from __future__ import annotations

import errno
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from sim import load_experiment
from sim.cli import main
from sim.experiment import runner as runner_module
from sim.results import report as report_module
from sim.results import store as store_module
from sim.results.store import run_path

TINY = str(Path(__file__).parent / "data" / "tiny.yaml")
SMALL = [TINY, "-q", "--no-report", "-j", "1", "--set", "sweep.cpus=[2]"]  # 8 quick runs
RUN_ID = re.compile(r"[0-9a-f]{12,64}")


def one_error_line(err: str) -> str:
    """The single ``vmapsim: error:`` line of ``err`` (asserting there is nothing else)."""
    assert err.startswith("vmapsim: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def disk_fills_after(monkeypatch: pytest.MonkeyPatch, writes: int) -> list[Path]:
    """Make every atomic write after the first ``writes`` fail with ENOSPC, as a full disk
    does; returns the paths written."""
    written: list[Path] = []
    real: Callable[[Path, str], None] = store_module.write_atomic

    def filling(path: Path, text: str) -> None:
        if len(written) >= writes:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, text)
        written.append(path)

    monkeypatch.setattr(store_module, "write_atomic", filling)
    monkeypatch.setattr(report_module, "write_atomic", filling)
    return written


def valid_runs(out: Path) -> dict[str, bytes]:
    """Every run file of ``out``, each checked to be a whole, successful result."""
    files = {p.stem: p.read_bytes() for p in (out / "runs").glob("*.json")}
    for run_id, raw in files.items():
        result = json.loads(raw)
        assert result["run_id"] == run_id and result["status"] == "ok"
    return files


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small sweep, written without trouble."""
    out = tmp_path_factory.mktemp("reference")
    assert main(["run", *SMALL, "-o", str(out)]) == 0
    return out


def test_disk_full_mid_run_keeps_finished_runs(reference: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    disk_fills_after(monkeypatch, 4)  # the manifest and three runs fit
    assert main(["run", *SMALL, "-o", str(tmp_path)]) == 1
    err = one_error_line(capsys.readouterr().err)
    assert f"vmapsim: error: {tmp_path}: cannot write a run file: No space left on device" in err
    assert f"3 finished run(s) are kept in {tmp_path / 'runs'}" in err and "--resume" in err
    kept = valid_runs(tmp_path)
    assert len(kept) == 3 and not list((tmp_path / "runs").glob(".*.tmp"))

    monkeypatch.undo()  # space again: resume computes the other five, keeps the three
    assert main(["run", *SMALL, "-o", str(tmp_path), "--resume"]) == 0
    after = valid_runs(tmp_path)
    assert len(after) == 8 and all(after[k] == v for k, v in kept.items())
    assert (tmp_path / "summary.csv").read_bytes() == (reference / "summary.csv").read_bytes()


def test_disk_full_while_writing_tables(reference: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    disk_fills_after(monkeypatch, 1 + 8)  # the manifest and every run fit, the tables not
    assert main(["run", *SMALL, "-o", str(tmp_path)]) == 1
    err = one_error_line(capsys.readouterr().err)
    assert "cannot write the tables and report: No space left on device" in err
    assert f"all 8 runs are kept in {tmp_path / 'runs'}" in err
    assert f"vmapsim report {tmp_path}" in err
    assert len(valid_runs(tmp_path)) == 8

    monkeypatch.undo()
    assert main(["report", str(tmp_path), "--no-plots"]) == 0
    assert (tmp_path / "summary.csv").read_bytes() == (reference / "summary.csv").read_bytes()


def test_manifest_cannot_be_written_is_a_bad_path(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    disk_fills_after(monkeypatch, 0)  # nothing can be written there at all
    assert main(["run", *SMALL, "-o", str(tmp_path)]) == 2
    err = one_error_line(capsys.readouterr().err)
    assert f"vmapsim: error: {tmp_path}: cannot write to the output directory: No space " in err


def test_output_under_a_regular_file(tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A path through a file cannot be created, not even by root."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    out = blocker / "deeper" / "out"
    assert main(["run", *SMALL, "-o", str(out)]) == 2
    err = one_error_line(capsys.readouterr().err)
    assert f"{out}: cannot create the output directory: Not a directory" in err
    assert blocker.read_text() == "not a directory"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod 0o500")
def test_read_only_output_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        assert main(["run", *SMALL, "-o", str(out)]) == 2
    finally:
        out.chmod(0o700)
    err = one_error_line(capsys.readouterr().err)
    assert f"{out}: cannot create the output directory: Permission denied" in err


def test_run_ids_and_files_stay_inside_the_output_directory(tmp_path: Path) -> None:
    """Run ids are hex hashes, so a run file is always DIR/runs/<hex>.json, whatever the
    experiment's variant names or description hold."""
    hostile = tmp_path / "hostile.yaml"
    hostile.write_text(Path(TINY).read_text()
                       .replace("[linux-4.5, linux-4.7]",
                                "[{name: ../../etc/passwd, base: linux-4.7}, linux-4.5]")
                       .replace("seed: 7", "seed: 7\ndescription: '/tmp/x/../../y'"))
    experiment = load_experiment(hostile)
    out = (tmp_path / "out").resolve()
    for spec in experiment.specs():
        assert RUN_ID.fullmatch(spec.run_id), spec.run_id
        path = run_path(out, spec.run_id).resolve()
        assert path.parent == out / "runs" and path.name == f"{spec.run_id}.json"


def test_default_output_directory_of_a_hostile_name(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]
                                                    ) -> None:
    """Without -o the directory is results/<name>; a name that climbs out is refused."""
    hostile = tmp_path / "hostile.yaml"
    hostile.write_text(Path(TINY).read_text().replace("name: tiny", "name: ../../escape"))
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(hostile), "-q", "--no-report", "-j", "1",
                 "--set", "sweep.cpus=[2]"]) == 2
    err = one_error_line(capsys.readouterr().err)
    assert "name: expected a name usable as a directory name" in err
    assert not (tmp_path.parent / "escape").exists()


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "another run's"])
def test_damaged_run_file_is_recomputed_on_resume(reference: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  damage: str) -> None:
    """A run file a crash (or a stray copy) left unusable is detected and computed again;
    the other files are not touched."""
    for path in (reference / "runs").glob("*.json"):
        (tmp_path / "runs").mkdir(exist_ok=True)
        (tmp_path / "runs" / path.name).write_bytes(path.read_bytes())
    files = sorted((tmp_path / "runs").glob("*.json"))
    victim, other = files[0], files[1]
    text = victim.read_bytes()
    victim.write_bytes({"truncated": text[: len(text) // 2], "empty": b"",
                        "garbage": b"\x00\xff not json",
                        "another run's": other.read_bytes()}[damage])
    before = {p.name: p.stat().st_mtime_ns for p in files if p != victim}
    computed: list[str] = []
    real = runner_module.run
    monkeypatch.setattr(runner_module, "run", lambda spec: computed.append(spec.run_id)
                        or real(spec))
    assert main(["run", *SMALL, "-o", str(tmp_path), "--resume"]) == 0
    assert computed == [victim.stem]
    assert {p.name: p.stat().st_mtime_ns for p in files if p != victim} == before
    assert victim.read_bytes() == text
    assert (tmp_path / "summary.csv").read_bytes() == (reference / "summary.csv").read_bytes()
