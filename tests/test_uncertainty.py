"""Uncertainty sweeps: win fractions per point sum to one; sensitivities point at the key that
drives the winner's margin."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

import sim
from sim.results.uncertainty import sensitivities, win_fractions

TINY = str(Path(__file__).parent / "data" / "tiny.yaml")


def synthetic(rows: list[tuple[int, float, str, float]]) -> list[dict]:
    return [{"variant": v, "cpus": c, "x": x, "metric": "m", "mean": mean, "ci_low": mean,
             "ci_high": mean, "n": 1} for c, x, v, mean in rows]


def test_wins_split_ties_and_sum_to_one() -> None:
    rows = synthetic([(1, 0.1, "a", 5.0), (1, 0.1, "b", 3.0),
                      (1, 0.2, "a", 4.0), (1, 0.2, "b", 4.0),   # a tie: half a win each
                      (1, 0.3, "a", 1.0), (1, 0.3, "b", 2.0)])
    wins = {w["variant"]: w["win_fraction"]
            for w in win_fractions(rows, ["cpus", "x"], ["x"], ["a", "b"], "m", "max")}
    assert wins == {"a": pytest.approx(1.5 / 3), "b": pytest.approx(1.5 / 3)}
    lows = {w["variant"]: w["win_fraction"]
            for w in win_fractions(rows, ["cpus", "x"], ["x"], ["a", "b"], "m", "min")}
    assert lows == {"a": pytest.approx(1.5 / 3), "b": pytest.approx(1.5 / 3)}


def test_sensitivity_sign_follows_the_winners_margin() -> None:
    # a's lead over b grows with x, strictly
    rows = synthetic([(1, x, v, m) for x, (ma, mb) in
                      [(0.1, (5, 4)), (0.2, (7, 4)), (0.3, (9, 4)), (0.4, (11, 4))]
                      for v, m in (("a", ma), ("b", mb))])
    wins = win_fractions(rows, ["cpus", "x"], ["x"], ["a", "b"], "m", "max")
    (only,) = sensitivities(rows, ["cpus", "x"], ["x"], wins, "m", "max")
    assert (only["winner"], only["runner_up"], only["key"]) == ("a", "b", "x")
    assert only["spearman_rho"] == pytest.approx(1.0)


def test_uncertainty_sweep_end_to_end(tmp_path: Path) -> None:
    exp = sim.load_experiment(TINY, [
        "sweep.cpus=[1,2]", "sweep.workload.background.count=[500]", "replications=1",
        "duration=0.5ms", "warmup=0", "rank={metric: vmalloc_p99_ns, goal: min}",
        "sweep.lhs={samples: 4, seed: 3, ranges: {machine.costs.list_walk_per_node_ns: "
        "[5, 100], machine.costs.flush_full_ns: [200, 800]}}"])
    sim.run_experiment(exp, out_dir=tmp_path, jobs=1)
    with open(tmp_path / "wins.csv", newline="") as handle:
        wins = list(csv.DictReader(handle))
    totals: dict[str, float] = {}
    for row in wins:
        totals[row["cpus"]] = totals.get(row["cpus"], 0.0) + float(row["win_fraction"])
    assert totals == {"1": pytest.approx(1.0), "2": pytest.approx(1.0)}
    with open(tmp_path / "sensitivity.csv", newline="") as handle:
        keys = {(r["cpus"], r["key"]) for r in csv.DictReader(handle)}
    assert len(keys) == 4
    assert "## Robustness" in (tmp_path / "report.md").read_text()
