"""Capacity search by bisection: the bracket logic on known functions, then end to end."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from sim.cli import main
from sim.config.loader import ConfigError
from sim.experiment.capacity import Limit, bisect
from sim.results.plots import available as plots_available

TINY = str(Path(__file__).parent / "data" / "tiny.yaml")


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _fake(curves: dict[str, callable], calls: list):
    def evaluate(values, variants):
        calls.append((list(values), list(variants)))
        return {(v, x): curves[v](x) for v in variants for x in values}
    return evaluate


@pytest.mark.parametrize("threshold", [1, 2, 37, 100, 255, 256])
def test_bisection_finds_the_last_value_within(threshold: int) -> None:
    calls: list = []
    limit = Limit("m", bound=threshold + 0.5)  # within while x <= threshold
    (found,) = bisect(["v"], 1, 256, limit, _fake({"v": float}, calls))
    assert found.within == threshold
    assert found.beyond == (None if threshold == 256 else threshold + 1)
    assert len(calls) <= math.ceil(math.log2(255)) + 1
    assert all(len(values) == len(set(values)) for values, _ in calls)


def test_variants_search_together_and_stop_apart() -> None:
    calls: list = []
    curves = {"slow": lambda x: 10.0 * x, "fast": lambda x: 1.0 * x, "never": lambda x: 1e9}
    found = bisect(list(curves), 1, 64, Limit("m", 100.0), _fake(curves, calls))
    by = {cap.variant: cap for cap in found}
    assert (by["slow"].within, by["slow"].beyond) == (10, 11)
    assert (by["fast"].within, by["fast"].beyond) == (64, None)  # within over the whole range
    assert (by["never"].within, by["never"].beyond) == (None, 1)  # beyond from the start
    assert calls[0] == ([1, 64], ["slow", "fast", "never"])
    assert all(variants == ["slow"] for _, variants in calls[1:])  # the others are settled


def test_minimum_limits_nan_and_non_monotone_noise() -> None:
    calls: list = []
    throughput = {"v": lambda x: 1000.0 / x if x != 3 else math.nan}
    (found,) = bisect(["v"], 1, 100, Limit("ops", 150.0, upper=False), _fake(throughput, calls))
    assert found.beyond is not None and found.within is not None
    assert found.within == max(x for x in found.probes if x < found.beyond)
    assert all(found.probes[x] >= 150 for x in found.probes if x <= found.within)


def test_limit_parsing() -> None:
    assert Limit.parse("vmalloc_p99_ns", "100us", None) == Limit("vmalloc_p99_ns", 1e5, True)
    assert Limit.parse("ops_per_sec", None, "5e5") == Limit("ops_per_sec", 5e5, False)
    for maximum, minimum in ((None, None), ("1", "2")):
        with pytest.raises(ConfigError, match="exactly one of --max and --min"):
            Limit.parse("m", maximum, minimum)
    with pytest.raises(ConfigError, match="cannot read the limit"):
        Limit.parse("purge_mean_ns", "soon", None)


def test_capacity_end_to_end(tmp_path: Path, capsys) -> None:
    args = ["capacity", TINY, "--key", "cpus", "--range", "1..8", "--metric", "vmalloc_p99_ns",
            "--max", "3us", "-o", str(tmp_path), "-j", "2", "--no-report", "--set",
            "workload.background.count=100"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("vmalloc_p99_ns <= 3us")
    caps = _csv(tmp_path / "capacity.csv")
    summary = _csv(tmp_path / "summary.csv")
    means = {(r["variant"], int(r["cpus"])): float(r["mean"]) for r in summary
             if r["metric"] == "vmalloc_p99_ns"}
    assert [c["variant"] for c in caps] == ["linux-4.5", "linux-4.7"]
    for cap in caps:
        if cap["cpus"]:
            assert means[cap["variant"], int(cap["cpus"])] <= 3000
        if cap["first_beyond"]:
            assert means[cap["variant"], int(cap["first_beyond"])] > 3000
            assert not cap["cpus"] or int(cap["first_beyond"]) == int(cap["cpus"]) + 1
    assert main(args) == 0  # a rerun reuses every run
    assert capsys.readouterr().out == out
    if plots_available():  # the report of the search: its plot first, with the limit
        assert main(["report", str(tmp_path)]) == 0
        report = (tmp_path / "report.md").read_text()
        assert (tmp_path / "plots" / "capacity.png").is_file()
        assert report.index("plots/capacity.png") < report.index("plots/ops_per_sec.png")


@pytest.mark.parametrize("extra,fragment", [
    (["--range", "8..1"], "--range: the range needs low < high, found 8..1"),
    (["--range", "one..8"], "--range: expected LOW..HIGH (integers)"),
    (["--range", "1..8", "--max", "1", "--min", "2"], "exactly one of --max and --min"),
])
def test_capacity_bad_arguments(tmp_path: Path, capsys, extra, fragment) -> None:
    args = ["capacity", TINY, "--key", "cpus", "--metric", "vmalloc_p99_ns", "-o",
            str(tmp_path), *extra]
    if "--max" not in extra:
        args += ["--max", "3us"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1


def test_the_capacity_is_in_report_md(tmp_path: Path, capsys) -> None:
    args = ["capacity", TINY, "--key", "cpus", "--range", "1..4", "--metric", "vmalloc_p99_ns",
            "--max", "3us", "-o", str(tmp_path), "-j", "1", "--set",
            "workload.background.count=100", "-q"]
    assert main(args) == 0
    report = (tmp_path / "report.md").read_text()
    caps = _csv(tmp_path / "capacity.csv")
    assert "## Capacity" in report and "vmalloc_p99_ns` stays <= 3us" in report
    for cap in caps:
        assert f"| {cap['variant']} | {cap['cpus'] or 'none'}" in report
