"""Robustness of a conclusion to uncertain machine costs: wins and sensitivities over an
uncertainty sweep.

An experiment with an ``lhs`` factor draws machine costs (or any continuous key) from their
documented ranges by a Latin hypercube. For every point of the *other* swept keys, this module
says how often each variant ranks first on the experiment's ``rank`` metric across the samples
(win fractions, summing to one; ties share the win), and how strongly each sampled key drives
the outcome: the Spearman rank correlation, across the samples, between the key's value and the
margin of the overall winner over the runner-up (``+`` the key helps the winner, ``-`` it
helps the runner-up).
"""

from __future__ import annotations

import json
import math
from typing import Any


def _groups(rows: list[dict[str, Any]], swept: list[str], sampled: list[str], metric: str
            ) -> dict[str, dict[str, dict[str, float]]]:
    """point (JSON of the non-sampled keys) -> sample (JSON of sampled keys) -> variant -> mean."""
    fixed = [k for k in swept if k not in sampled]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for row in rows:
        if row["metric"] != metric or not _finite(row["mean"]):
            continue
        point = json.dumps({k: row.get(k) for k in fixed})
        sample = json.dumps({k: row.get(k) for k in sampled})
        out.setdefault(point, {}).setdefault(sample, {})[row["variant"]] = row["mean"]
    return out


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def win_fractions(rows: list[dict[str, Any]], swept: list[str], sampled: list[str],
                  variants: list[str], metric: str, goal: str) -> list[dict[str, Any]]:
    """Per point and variant: the fraction of samples in which the variant ranks first."""
    sign = 1.0 if goal == "max" else -1.0
    out = []
    for point, samples in _groups(rows, swept, sampled, metric).items():
        wins = dict.fromkeys(variants, 0.0)
        for means in samples.values():
            best = max(sign * v for v in means.values())
            leaders = [name for name, v in means.items() if sign * v == best]
            for name in leaders:
                wins[name] += 1.0 / len(leaders)
        for name in variants:
            out.append({**json.loads(point), "variant": name,
                        "win_fraction": wins[name] / len(samples), "samples": len(samples)})
    return out


def sensitivities(rows: list[dict[str, Any]], swept: list[str], sampled: list[str],
                  wins: list[dict[str, Any]], metric: str, goal: str) -> list[dict[str, Any]]:
    """Per point and sampled key: Spearman rho between the key and the winner's margin."""
    from scipy import stats  # imported when needed: scipy.stats takes ~0.5 s to import

    sign = 1.0 if goal == "max" else -1.0
    out = []
    for point, samples in _groups(rows, swept, sampled, metric).items():
        fixed = json.loads(point)
        ranking = sorted((w for w in wins if all(w.get(k) == v for k, v in fixed.items())),
                         key=lambda w: -w["win_fraction"])
        if len(ranking) < 2:
            continue
        first, second = ranking[0]["variant"], ranking[1]["variant"]
        pairs = [(json.loads(s), sign * (m[first] - m[second])) for s, m in samples.items()
                 if first in m and second in m]
        for key in sampled:
            xs = [s[key] for s, _ in pairs]
            ys = [margin for _, margin in pairs]
            rho = float(stats.spearmanr(xs, ys).statistic) if len(set(xs)) > 1 \
                and len(set(ys)) > 1 else math.nan
            out.append({**fixed, "key": key, "winner": first, "runner_up": second,
                        "spearman_rho": rho, "samples": len(pairs)})
    return out
