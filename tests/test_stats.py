"""Confidence intervals over replications and paired differences, checked against scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from sim.results.paired import paired_rows
from sim.results.stats import t_interval

SAMPLES = [
    [1.0, 2.0, 3.0, 4.0, 5.0],
    [10.0, 12.0],
    [0.5, 0.5, 0.5001],
    [-3.0, 7.5, 2.25, 1e-3, 4.0, 4.0, 9.0],
    list(np.random.default_rng(1).normal(100.0, 15.0, size=30)),
    list(np.random.default_rng(2).exponential(2e6, size=200)),
]


@pytest.mark.parametrize("xs", SAMPLES)
@pytest.mark.parametrize("confidence", [0.95, 0.9, 0.99])
def test_t_interval_matches_scipy(xs, confidence) -> None:
    mean, low, high, n = t_interval(xs, confidence)
    sem = stats.sem(xs)  # ddof=1: the standard error, not the standard deviation
    want = stats.t.interval(confidence, len(xs) - 1, loc=np.mean(xs), scale=sem)
    assert n == len(xs)
    assert mean == pytest.approx(np.mean(xs), rel=1e-12)
    assert (low, high) == pytest.approx(want, rel=1e-9, abs=1e-12)
    ci = stats.ttest_1samp(xs, 0.0).confidence_interval(confidence)
    assert (low, high) == pytest.approx((ci.low, ci.high), rel=1e-9, abs=1e-12)


def test_known_interval_by_hand() -> None:
    """[1..5]: mean 3, s = sqrt(2.5), t(0.975, 4) = 2.7764451051977987."""
    mean, low, high, n = t_interval([1, 2, 3, 4, 5])
    half = 2.7764451051977987 * math.sqrt(2.5 / 5)
    assert (mean, n) == (3.0, 5)
    assert (low, high) == pytest.approx((3 - half, 3 + half), rel=1e-12)


def test_t_interval_edge_cases() -> None:
    assert math.isnan(t_interval([])[0]) and t_interval([])[3] == 0
    mean, low, high, n = t_interval([4.0])
    assert (mean, n) == (4.0, 1) and math.isnan(low) and math.isnan(high)
    assert t_interval([1.0, None, math.nan, 3.0, math.inf])[::3] == (2.0, 2)
    assert t_interval([2.0, 2.0, 2.0])[:3] == (2.0, 2.0, 2.0)


def _result(variant: str, rep: int, point: dict, metrics: dict, ok: bool = True) -> dict:
    return {"status": "ok" if ok else "failed", "metrics": metrics,
            "spec": {"config": {"variant": {"name": variant}}, "point": point,
                     "replication": rep}}


A = [12.0, 15.5, 9.0, 14.25, 11.0]
B = [10.0, 15.0, 7.5, 13.0, 11.5]
C = [13.0, 16.0, 8.0, 17.0, 12.0]


def test_paired_differences_match_scipy_ttest_rel() -> None:
    results = []
    for rep in reversed(range(5)):  # order of arrival does not matter: pairing is by index
        for name, values in (("base", B), ("new", A), ("other", C)):
            results.append(_result(name, rep, {"cpus": 4},
                                   {"ops_per_sec": values[rep], "purges": 2 * values[rep]}))
    rows = paired_rows(results, ["cpus"], ["base", "new", "other"], "base")
    assert {(r["variant"], r["metric"]) for r in rows} == {
        ("new", "ops_per_sec"), ("new", "purges"), ("other", "ops_per_sec"),
        ("other", "purges")}
    for row in rows:
        values = A if row["variant"] == "new" else C
        scale = 2.0 if row["metric"] == "purges" else 1.0
        a, b = np.array(values) * scale, np.array(B) * scale
        ci = stats.ttest_rel(a, b).confidence_interval(0.95)
        assert row["baseline"] == "base" and row["cpus"] == 4 and row["n"] == 5
        assert row["mean"] == pytest.approx(float(np.mean(a - b)), rel=1e-12)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((ci.low, ci.high), rel=1e-9)


def test_pairing_drops_unmatched_and_failed_replications() -> None:
    results = [_result("base", r, {}, {"m": B[r]}) for r in range(5)]
    results += [_result("new", r, {}, {"m": A[r]}) for r in (0, 1, 3)]
    results += [_result("new", 2, {}, {"m": 1e9}, ok=False)]
    results[4] = _result("base", 4, {}, {"m": B[4]}, ok=False)  # and rep 4's baseline failed
    (row,) = paired_rows(results, [], ["base", "new"], "base")
    diffs = [A[r] - B[r] for r in (0, 1, 3)]
    ci = stats.ttest_1samp(diffs, 0.0).confidence_interval(0.95)
    assert row["n"] == 3
    assert (row["mean"], row["ci_low"], row["ci_high"]) == pytest.approx(
        (np.mean(diffs), ci.low, ci.high), rel=1e-9)


def test_paired_rows_per_point() -> None:
    results = [_result(v, r, {"cpus": c}, {"m": float(c * (2 if v == "new" else 1) + r)})
               for c in (1, 8) for v in ("base", "new") for r in range(3)]
    rows = paired_rows(results, ["cpus"], ["base", "new"], "base")
    assert [(r["cpus"], r["mean"], r["n"]) for r in rows] == [(1, 1.0, 3), (8, 8.0, 3)]
    assert all(r["ci_low"] == r["ci_high"] == r["mean"] for r in rows)  # constant differences


def test_a_pooled_percentile_is_the_percentile_of_all_samples_together() -> None:
    import numpy as np

    from sim.engine.metrics import Histogram
    from sim.results.stats import pooled_percentile

    rng = np.random.default_rng(1)
    parts, whole = [], Histogram()
    for scale in (100.0, 300.0, 1000.0):
        part = Histogram()
        for x in rng.exponential(scale, 500):
            part.record(float(x))
            whole.record(float(x))
        parts.append(part.to_json())
    for q in (50.0, 99.0, 99.9):
        value, low, high, n = pooled_percentile(parts, q)
        assert value == whole.percentile(q) and n == 3
        assert 0 < low <= high and (low, high) == pooled_percentile(parts, q)[1:3]
    assert pooled_percentile(parts[:1], 99.0)[1] != pooled_percentile(parts[:1], 99.0)[1]  # NaN


def test_summary_intervals_never_go_below_zero(tmp_path) -> None:
    import csv

    from sim.cli import main

    exp = tmp_path / "e.yaml"
    exp.write_text("name: e\nmachine: desktop-8c16t\nworkload: seed-i915\n"
                   "variants: [linux-4.5, linux-4.7]\nduration: 300us\nreplications: 2\n"
                   "sweep: {cpus: [1, 4]}\n")
    assert main(["run", str(exp), "-o", str(tmp_path / "out"), "-q", "--no-report"]) == 0
    rows = list(csv.DictReader((tmp_path / "out" / "summary.csv").open()))
    lows = [float(r["ci_low"]) for r in rows if r["ci_low"]]
    assert lows and min(lows) >= 0.0
    p99 = [r for r in rows if r["metric"] == "vmalloc_p99_ns" and r["ci_low"]]
    assert all(float(r["ci_low"]) <= float(r["mean"]) <= float(r["ci_high"]) for r in p99)


def test_no_interval_of_the_pinned_experiment_goes_below_zero() -> None:
    """The pinned experiment (test_pinned checks it is what a run gives today) covers every
    preset: no lower bound of its summary is negative, and each percentile lies within its
    interval."""
    import csv
    from pathlib import Path

    rows = list(csv.DictReader((Path(__file__).parent / "data" / "pinned" / "summary.csv").open()))
    bounded = [r for r in rows if r["ci_low"]]
    assert len(bounded) > 500 and min(float(r["ci_low"]) for r in bounded) >= 0.0
    for r in bounded:
        assert float(r["ci_low"]) <= float(r["mean"]) <= float(r["ci_high"]), r
