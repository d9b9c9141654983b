"""Inputs a hostile or careless user gives: files that are not files, files too large to read,
traces whose content must not reach the terminal, more workers than cores. Each is one line
and exit 2 (or, for ``-j``, a note), never a hang or a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sim.cli import main
from sim.config.loader import MAX_FILE_BYTES
from sim.config.trace_csv import MAX_TRACE_BYTES

SAMPLE = Path(__file__).parents[1] / "workloads" / "traces" / "sample.csv"


def experiment_replaying(tmp_path: Path, trace: str) -> Path:
    path = tmp_path / "e.yaml"
    path.write_text("name: e\nmachine: desktop-8c16t\nvariants: [linux-4.7]\n"
                    f"duration: 100us\nworkload: {{name: w, kind: trace, trace: '{trace}'}}\n")
    return path


def one_line_error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("vmapsim: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("kind", ["directory", "fifo", "device"])
def test_a_trace_that_is_not_a_regular_file_is_named_so(tmp_path: Path, capsys,
                                                         kind: str) -> None:
    target = {"directory": tmp_path / "d.csv", "fifo": tmp_path / "f.csv",
              "device": Path("/dev/zero")}[kind]
    if kind == "directory":
        target.mkdir()
    elif kind == "fifo":
        os.mkfifo(target)  # opening it for reading must not wait for a writer
    err = one_line_error(["check", str(experiment_replaying(tmp_path, str(target)))], capsys)
    assert "not a regular file" in err and "no such file" not in err


def test_a_file_that_is_not_a_trace_is_not_echoed(tmp_path: Path, capsys) -> None:
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$saltsalt$hashhashhash:19000:0:99999:7:::\nuser:x:1\n")
    err = one_line_error(["check", str(experiment_replaying(tmp_path, str(secret)))], capsys)
    assert "hashhash" not in err and "saltsalt" not in err
    assert "the first line is not the header" in err


def test_a_trace_field_is_echoed_escaped_and_short(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "t.csv"
    bad.write_text("time_ns,cpu,op,size_bytes,handle\n0,0,\x1b[2J" + "x" * 500 + ",4096,1\n")
    err = one_line_error(["check", str(experiment_replaying(tmp_path, str(bad)))], capsys)
    assert "\x1b" not in err and len(err) < 400


def test_a_trace_larger_than_the_limit_is_refused_before_reading(tmp_path: Path,
                                                                   capsys) -> None:
    huge = tmp_path / "huge.csv"
    with huge.open("wb") as handle:
        handle.truncate(MAX_TRACE_BYTES + 1)  # sparse: nothing is written or read
    err = one_line_error(["check", str(experiment_replaying(tmp_path, str(huge)))], capsys)
    assert "at most" in err and "MiB" in err


def test_an_experiment_larger_than_the_limit_is_refused_before_reading(tmp_path: Path,
                                                                         capsys) -> None:
    huge = tmp_path / "huge.yaml"
    with huge.open("wb") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)
    err = one_line_error(["check", str(huge)], capsys)
    assert "at most" in err and "MiB" in err


def test_an_experiment_that_is_a_fifo_does_not_hang(tmp_path: Path, capsys) -> None:
    fifo = tmp_path / "e.yaml"
    os.mkfifo(fifo)
    assert "not a regular file" in one_line_error(["check", str(fifo)], capsys)


def test_more_workers_than_cores_are_capped_with_a_note(tmp_path: Path, capsys,
                                                        monkeypatch) -> None:
    monkeypatch.setattr("sim.cli.default_jobs", lambda: 2)
    exp = tmp_path / "e.yaml"
    exp.write_text("name: e\nmachine: desktop-8c16t\nworkload: seed-i915\n"
                   "variants: [linux-4.7]\nduration: 50us\nreplications: 1\n"
                   "sweep: {cpus: [1, 2, 3]}\n")
    assert main(["run", str(exp), "-o", str(tmp_path / "out"), "--no-report", "-j", "24"]) == 0
    err = capsys.readouterr().err
    assert "-j 24 is more than the 2 cores" in err and "2 local processes" in err


@pytest.mark.parametrize("override", [
    ".".join(["a"] * 1500) + "=1",                       # 1500 dotted levels
    "workload.think_time=&a [*a]",                        # a recursive alias
    "workload.name=" + "[" * 200 + "]" * 200,             # nesting past the file limit
    "k" * 10_000 + "=1",                                  # a 10,000-character key
    "workload.think_time=[&a [1,1,1,1,1,1,1,1,1], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a], "
    "&c [*b,*b,*b,*b,*b,*b,*b,*b,*b], &d [*c,*c,*c,*c,*c,*c,*c,*c,*c], "
    "&e [*d,*d,*d,*d,*d,*d,*d,*d,*d], &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]]",  # an alias bomb
], ids=["deep-key", "recursive-alias", "deep-value", "long-key", "alias-bomb"])
def test_a_set_value_meets_the_limits_of_a_file(override: str, capsys) -> None:
    err = one_line_error(["check", str(SAMPLE.parents[2] / "experiments" / "seed.yaml"),
                          "--set", override], capsys)
    assert len(err) < 600


CAPACITY = ["capacity", "seed", "--key", "cpus", "--range", "1..4", "--set", "duration=50us",
            "--set", "replications=1", "-q", "--no-report"]


@pytest.mark.parametrize("limit", ["nan", "inf", "1e999"])
def test_a_capacity_limit_must_be_finite(limit: str, tmp_path: Path, capsys) -> None:
    err = one_line_error(CAPACITY + ["--metric", "ops_per_sec", "--min", limit,
                                     "-o", str(tmp_path / "cap")], capsys)
    assert "finite" in err and not (tmp_path / "cap").exists()


def test_a_capacity_metric_is_checked_before_any_run(tmp_path: Path, capsys) -> None:
    err = one_line_error(CAPACITY + ["--metric", "ops_per_sek", "--max", "1",
                                     "-o", str(tmp_path / "cap")], capsys)
    assert "unknown metric 'ops_per_sek'" in err and "ops_per_sec" in err
    assert not (tmp_path / "cap").exists()


def test_a_trace_warmup_longer_than_the_trace_is_refused(tmp_path: Path, capsys) -> None:
    exp = experiment_replaying(tmp_path, str(SAMPLE))
    exp.write_text(exp.read_text() + "warmup: 1s\n")
    err = one_line_error(["check", str(exp)], capsys)
    assert "warmup: expected a warm-up shorter than the trace" in err
