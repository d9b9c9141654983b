"""Statistics over replications: means with 95% Student-t confidence intervals."""

from __future__ import annotations

import math
from collections.abc import Sequence

CONFIDENCE = 0.95


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE
               ) -> tuple[float, float, float, int]:
    """``(mean, low, high, n)`` over the finite values; the interval is NaN when n < 2."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(xs)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = math.fsum(xs) / n
    if n < 2:
        return mean, math.nan, math.nan, n
    var = math.fsum((x - mean) ** 2 for x in xs) / (n - 1)
    from scipy import stats  # imported when needed: scipy.stats takes ~0.5 s to import

    half = float(stats.t.ppf(0.5 + confidence / 2.0, n - 1)) * math.sqrt(var / n)
    return mean, mean - half, mean + half, n
