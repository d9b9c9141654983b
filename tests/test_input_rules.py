"""How inputs are read: YAML 1.2 numbers and booleans, the kernel's size suffixes, both micro
signs, and ``base:`` for a catalog workload or machine changed in a few fields."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.cli import main
from sim.config.loader import parse_yaml_text
from sim.config.units import parse_pages, parse_time
from sim.experiment.experiment import load_experiment

HEAD = "name: e\nmachine: desktop-8c16t\nvariants: [linux-4.7]\nduration: 100us\n"


@pytest.mark.parametrize(("text", "value"), [
    ("1e5", 1e5), ("1E-3", 1e-3), ("010", 10), ("0o10", 8), ("0x1f", 31), ("+7", 7),
    ("1_000", "1_000"), ("on", "on"), ("yes", "yes"), ("off", "off"), ("y", "y"),
    ("true", True), ("False", False), ("~", None), ("null", None), (".inf", float("inf")),
    ("1:20", "1:20"),
])
def test_yaml_1_2_scalars(text: str, value) -> None:
    data = parse_yaml_text(f"k: {text}\n", "t.yaml").data
    assert data["k"] == value and type(data["k"]) is type(value)


def test_a_number_with_an_exponent_can_be_swept_from_the_command_line(capsys) -> None:
    assert main(["check", "seed", "--set", "sweep.workload.background.count=[1e3, 1e4]"]) == 0


@pytest.mark.parametrize("text", ["cpus: on", "cpus: yes"])
def test_a_yaml_1_1_boolean_is_not_a_count(tmp_path: Path, capsys, text: str) -> None:
    path = tmp_path / "e.yaml"
    path.write_text(HEAD + "workload: seed-i915\n" + text + "\n")
    assert main(["check", str(path)]) == 2
    assert "cpus: input should be a valid integer" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "pages"), [
    ("4K", 1), ("8k", 2), ("2M", 512), ("1G", 262144), ("1T", 1 << 28), ("16KiB", 4),
    ("1 page", 1), ("3 pages", 3), ("4096B", 1),
])
def test_kernel_size_suffixes(text: str, pages: int) -> None:
    assert parse_pages(text) == pages


@pytest.mark.parametrize("text", ["1.5µs", "1.5μs", "1.5us"])  # micro sign, Greek mu, ascii
def test_both_micro_signs(text: str) -> None:
    assert parse_time(text) == 1500.0


def test_a_catalog_workload_changed_in_one_field(tmp_path: Path) -> None:
    path = tmp_path / "e.yaml"
    path.write_text(HEAD + "workload: {base: seed-i915, set_memory_rate: 200,\n"
                    "           background: {count: 50}}\n")
    experiment = load_experiment(path)
    workload = experiment.base["workload"]
    assert workload["set_memory_rate"] == 200 and workload["background"]["count"] == 50
    assert workload["live_per_cpu"] == 4  # kept from the catalog entry
    assert workload["background"]["size"]["dist"] == "choice"  # a nested key kept too


def test_a_catalog_machine_changed_in_one_field(tmp_path: Path) -> None:
    path = tmp_path / "e.yaml"
    path.write_text(HEAD.replace("machine: desktop-8c16t\n", "machine:\n  base: desktop-8c16t\n"
                                 "  costs: {ipi_handler_ns: 999}\n") + "workload: seed-i915\n")
    machine = load_experiment(path).base["machine"]
    assert machine["costs"]["ipi_handler_ns"] == 999 and machine["costs"]["atomic_ns"] == 12


def test_an_error_in_a_base_override_names_the_experiment_line(tmp_path: Path,
                                                                capsys) -> None:
    path = tmp_path / "e.yaml"
    path.write_text(HEAD + "workload:\n  base: seed-i915\n  set_memory_rate: -1\n")
    assert main(["check", str(path)]) == 2
    assert f"{path}:7: workload.set_memory_rate: input should be greater than or equal to 0" \
        in capsys.readouterr().err


def test_an_unknown_base_is_one_line(tmp_path: Path, capsys) -> None:
    path = tmp_path / "e.yaml"
    path.write_text(HEAD + "workload: {base: seed-i951}\n")
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "workload.base: unknown workload 'seed-i951'; did you mean 'seed-i915'" in err


@pytest.mark.parametrize(("line", "key", "message"), [
    ("duration: 5", "duration", "expected a time with its unit, such as 20ms"),
    ("warmup: 1000", "warmup", "expected a time with its unit"),
    ("workload: {base: seed-i915, size: 4}", "workload.size",
     "expected a size with its unit, such as 16KiB, 4K or 4 pages, found 4"),
    ("workload: {base: seed-i915, think_time: 2.5}", "workload.think_time",
     "it would be 2.5 ns"),
])
def test_a_time_or_size_without_its_unit_is_an_error(tmp_path: Path, capsys, line: str,
                                                      key: str, message: str) -> None:
    path = tmp_path / "e.yaml"
    head = HEAD.replace("duration: 100us\n", "") + ("" if line.startswith("duration") else
                                                    "duration: 1ms\n")
    workload = "" if line.startswith("workload") else "workload: seed-i915\n"
    path.write_text(head + workload + line + "\n")
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert f": {key}: " in err and message in err and err.count("\n") == 1


def test_zero_needs_no_unit_and_a_swept_bare_number_is_refused(tmp_path: Path, capsys) -> None:
    path = tmp_path / "e.yaml"
    path.write_text(HEAD + "workload: seed-i915\nwarmup: 0\n")
    assert main(["check", str(path)]) == 0
    assert main(["check", str(path), "--set", "sweep.duration=[1ms, 5]"]) == 2
    assert "sweep.duration[1]: expected a time with its unit" in capsys.readouterr().err
