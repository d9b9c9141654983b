"""A run file carries a checksum of its content and is checked against a schema when read:
``--resume`` recomputes a file that was edited or is malformed, and ``report`` refuses it with
one line, instead of using an edited number or dying on a string metric."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.cli import main
from sim.results.store import CHECKSUM, read_run, run_problem, write_run


def first_run(out: Path) -> Path:
    return sorted((out / "runs").glob("*.json"))[0]


def edit(path: Path, change) -> None:
    result = json.loads(path.read_text())
    change(result)
    path.write_text(json.dumps(result, indent=1))


TAMPERING = {
    "edited-metric": lambda r: r["metrics"].__setitem__("ops_per_sec", 1e12),
    "string-metric": lambda r: r["metrics"].__setitem__("ops_per_sec", "fast"),
    "missing-metric": lambda r: r["metrics"].pop("vmalloc_p99_ns"),
    "null-lock-stat": lambda r: r.__setitem__("lock_stat", None),
    "no-checksum": lambda r: r.pop(CHECKSUM),
}


def test_a_run_file_carries_its_checksum(finished: Path) -> None:
    result = json.loads(first_run(finished).read_text())
    assert result[CHECKSUM].startswith("sha256:") and len(result[CHECKSUM]) == 71
    assert run_problem(result) is None


@pytest.mark.parametrize("how", sorted(TAMPERING))
def test_resume_recomputes_a_tampered_run_file(finished: Path, how: str, tmp_path: Path,
                                               capsys) -> None:
    path = first_run(finished)
    original = json.loads(path.read_text())
    edit(path, TAMPERING[how])
    capsys.readouterr()
    exp = tmp_path / "tiny.yaml"
    assert main(["run", str(exp), "-o", str(finished), "--resume", "--no-report", "-j", "1"]) == 0
    err = capsys.readouterr().err
    assert "1 damaged result file(s) recomputed" in err and "Traceback" not in err
    again = json.loads(path.read_text())
    assert again["metrics"] == original["metrics"]


@pytest.mark.parametrize("how", sorted(TAMPERING))
def test_report_refuses_a_tampered_run_file_in_one_line(finished: Path, how: str,
                                                        capsys) -> None:
    path = first_run(finished)
    edit(path, TAMPERING[how])
    capsys.readouterr()
    assert main(["report", str(finished), "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert path.name in err and "--resume" in err


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20))
def test_the_run_file_reader_never_raises(tmp_path: Path, content) -> None:
    """Fuzz: whatever JSON a run file holds, reading it gives a result or None."""
    run_id = "0123456789abcdef"
    (tmp_path / "runs").mkdir(exist_ok=True)
    (tmp_path / "runs" / f"{run_id}.json").write_text(json.dumps(content))
    assert read_run(tmp_path, run_id) is None or isinstance(read_run(tmp_path, run_id), dict)
    if isinstance(content, dict):
        run_problem(content)  # a reason or None, never an exception


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300))
def test_bytes_as_a_run_file_are_refused(data: bytes) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        (out / "runs").mkdir()
        (out / "runs" / "0123456789abcdef.json").write_bytes(data)
        assert read_run(out, "0123456789abcdef") is None


def test_what_is_written_reads_back(tmp_path: Path, finished: Path) -> None:
    result = json.loads(first_run(finished).read_text())
    result.pop(CHECKSUM)
    (tmp_path / "runs").mkdir()
    write_run(tmp_path, result)
    assert read_run(tmp_path, result["run_id"]) is not None
