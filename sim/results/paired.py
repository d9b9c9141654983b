"""Paired differences against a baseline variant.

Replication ``r`` of a point uses the same random streams in every variant (common random
numbers), so ``variant - baseline`` can be taken run by run: for each point, metric and
variant other than the baseline, the differences of the replications both finished form one
sample, reduced to its mean and 95% t-interval. Pairing removes the variation the two runs
share, so the interval is usually much narrower than the two variants' own intervals suggest.
"""

from __future__ import annotations

import json
import math
from typing import Any

from sim.results.stats import t_interval


def paired_rows(results: list[dict[str, Any]], swept: list[str], variants: list[str],
                baseline: str) -> list[dict[str, Any]]:
    """Rows ``variant, baseline, swept keys..., metric, mean, ci_low, ci_high, n`` of
    ``variant - baseline``, paired by replication index."""
    runs: dict[tuple, dict[str, dict[int, dict[str, float]]]] = {}
    for result in results:
        if result.get("status") != "ok":
            continue
        spec = result["spec"]
        point = tuple(json.dumps(spec["point"].get(k)) for k in swept)
        by_variant = runs.setdefault(point, {})
        by_variant.setdefault(spec["config"]["variant"]["name"], {})[spec["replication"]] = \
            result["metrics"]
    rows = []
    for point, by_variant in runs.items():
        base = by_variant.get(baseline, {})
        for variant in variants:
            if variant == baseline or variant not in by_variant or not base:
                continue
            rows += _point_rows(by_variant[variant], base, variant, baseline,
                                dict(zip(swept, map(json.loads, point))))
    return rows


def _point_rows(other: dict[int, dict[str, float]], base: dict[int, dict[str, float]],
                variant: str, baseline: str, point: dict[str, Any]) -> list[dict[str, Any]]:
    reps = sorted(set(other) & set(base))
    if not reps:
        return []
    rows = []
    for metric in base[reps[0]]:
        diffs = [_diff(other[r].get(metric), base[r].get(metric)) for r in reps]
        mean, low, high, n = t_interval(diffs)
        rows.append({"variant": variant, "baseline": baseline, **point, "metric": metric,
                     "mean": mean, "ci_low": low, "ci_high": high, "n": n})
    return rows


def _diff(a: float | None, b: float | None) -> float:
    """``a - b``; NaN when either is missing (a metric with no sample), so the pair drops."""
    if a is None or b is None:
        return math.nan
    return float(a) - float(b)
