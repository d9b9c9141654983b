"""No path the tool writes, reads or deletes escapes the output directory, whatever the run
files, the manifest or the directory's own links say: each such input is one line, exit 2,
and nothing outside is touched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY

from sim.cli import main
from sim.results.store import CHECKSUM, checksum_of


def the_run_file(out: Path) -> Path:
    return next((out / "runs").glob("*.json"))


def test_a_metric_named_like_a_path_writes_no_plot_outside(finished: Path, capsys) -> None:
    pytest.importorskip("matplotlib")
    path = the_run_file(finished)
    result = json.loads(path.read_text())
    result["metrics"]["../../escaped"] = 5.0
    result[CHECKSUM] = checksum_of(result)  # a file made to pass the checksum
    path.write_text(json.dumps(result))
    assert main(["report", str(finished)]) == 2
    err = capsys.readouterr().err
    assert "escaped" in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert not (finished.parent / "escaped.png").exists()
    assert not list(finished.parent.rglob("escaped*.png"))


def test_a_manifest_run_id_with_a_path_is_refused(finished: Path, capsys) -> None:
    outside = finished.parent / "secret.json"
    outside.write_text(json.dumps({"run_id": "../../secret", "status": "ok", "metrics": {}}))
    manifest = finished / "experiment.json"
    data = json.loads(manifest.read_text())
    data["run_ids"].append("../../secret")
    manifest.write_text(json.dumps(data))
    assert main(["report", str(finished), "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert "run_ids" in err and "Traceback" not in err


def test_force_never_deletes_through_a_linked_runs_directory(tmp_path: Path, capsys) -> None:
    exp, out, elsewhere = tmp_path / "tiny.yaml", tmp_path / "out", tmp_path / "elsewhere"
    exp.write_text(TINY)
    elsewhere.mkdir()
    keep = elsewhere / "precious.json"
    keep.write_text("{}")
    out.mkdir()
    (out / "runs").symlink_to(elsewhere, target_is_directory=True)
    assert main(["run", str(exp), "-o", str(out), "-q", "--no-report", "--force"]) == 2
    assert keep.exists()
    assert "symbolic link" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["evil\x1b[2J", "two\nlines", "tab\there", "x" * 101])
def test_an_experiment_name_that_would_misname_the_output_is_refused(tmp_path: Path, capsys,
                                                                   name: str) -> None:
    exp = tmp_path / "named.yaml"
    exp.write_text(TINY.replace("name: tiny", f"name: {json.dumps(name)}"))
    assert main(["check", str(exp)]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and len(err.splitlines()) == 1 and len(err) < 300
    assert not list(tmp_path.glob("results*"))


@pytest.mark.parametrize("sweep", [
    "lazy_max_pages: [auto, 1024]",
    "workload.size: [4 pages, 32KiB]",
    "workload.size: [{dist: fixed, value: 4K}, {dist: uniform, min: 4K, max: 16K}]",
])
def test_a_sweep_of_mixed_documented_forms_gets_its_table(tmp_path: Path, capsys,
                                                          sweep: str) -> None:
    exp = tmp_path / "mixed.yaml"
    exp.write_text(TINY.replace("sweep: {cpus: [1, 2]}", f"cpus: 2\nsweep:\n  {sweep}"))
    assert main(["run", str(exp), "-o", str(tmp_path / "out"), "-q", "--no-report"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert len([line for line in table if line.startswith("linux-4.7")]) == 2


@pytest.mark.parametrize(("text", "where"), [
    ("variants: [{name: x, base: [linux-4.7]}]\n", "base"),
    ("variants: [{name: x, base: {a: 1}}]\n", "base"),
    ("variants: [linux-4.7]\nsweep:\n  zip:\n    - {cpus: [1, 2], true: [1, 2]}\n", "True"),
    ("variants: [linux-4.7]\nsweep:\n  zip:\n    - {cpus: [1, 2], 5: [1, 2]}\n", "5"),
    ("variants: [linux-4.7]\nsweep:\n  lhs: {samples: 2, ranges: {7: [1, 2]}}\n", "7"),
    ("variants: [linux-4.7]\nsweep:\n  9: [1, 2]\n", "9"),
])
def test_keys_and_bases_of_the_wrong_type_are_one_line(tmp_path: Path, capsys, text: str,
                                                       where: str) -> None:
    exp = tmp_path / "typed.yaml"
    exp.write_text("name: typed\nmachine: desktop-8c16t\nworkload: seed-i915\n"
                   "duration: 100us\n" + text)
    assert main(["check", str(exp)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.splitlines()) == 1 and where in err


def test_a_linked_plots_directory_gets_no_plot(finished: Path, tmp_path: Path, capsys) -> None:
    pytest.importorskip("matplotlib")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (finished / "plots").symlink_to(elsewhere)
    assert main(["report", str(finished)]) == 2
    err = capsys.readouterr().err
    assert "plots is a symbolic link" in err and err.count("\n") == 1
    assert not list(elsewhere.iterdir())


def test_a_linked_table_is_replaced_not_followed(finished: Path, tmp_path: Path) -> None:
    precious = tmp_path / "precious.csv"
    precious.write_text("keep me\n")
    (finished / "summary.csv").unlink()
    (finished / "summary.csv").symlink_to(precious)
    assert main(["report", str(finished), "--no-plots"]) == 0
    assert precious.read_text() == "keep me\n"
    assert not (finished / "summary.csv").is_symlink()
