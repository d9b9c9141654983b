"""Statistics over replications: means with 95% Student-t confidence intervals, cut to the
range a metric can take, and percentiles of latency histograms merged over replications with
a bootstrap interval.

* A mean's interval is Student's t over the replications, intersected with ``[0, inf)`` for a
  metric that cannot be negative (every metric a run reports): the intersection of a
  confidence interval with the parameter's range keeps its coverage, and no lower bound of a
  latency or a count is below zero.
* A percentile (``vmalloc_p99_ns``) is not the mean of the replications' percentiles: the
  replications' histogram buckets are added and the percentile read from the sum, as if one
  long run; its interval is a percentile bootstrap over replications (resampled with
  replacement, 1,000 times, from a fixed seed: the same numbers every time), widened to hold
  the estimate where the buckets' discreteness leaves it outside.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

CONFIDENCE = 0.95
BOOTSTRAP = 1000
"""Resamples of a pooled percentile's bootstrap."""
PERCENTILE = re.compile(r"(?P<histogram>[a-z_]+?)_p(?P<q>50|99|999)_ns")
"""A percentile metric: ``<histogram>_p<q>_ns`` (``p999``: the 99.9th)."""
FEW = 3
"""Fewer replications than this give intervals too rough to read (a warning says so)."""


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


def non_negative(interval: tuple[float, float, float, int]) -> tuple[float, float, float, int]:
    """A metric's interval cut at zero (the metric cannot be negative)."""
    mean, low, high, n = interval
    return mean, (max(low, 0.0) if low == low else low), high, n


def percentile_q(metric: str) -> tuple[str, float] | None:
    """``("vmalloc", 99.0)`` for ``vmalloc_p99_ns``; None for a metric that is no percentile."""
    match = PERCENTILE.fullmatch(metric)
    if match is None:
        return None
    q = match["q"]
    return match["histogram"], 99.9 if q == "999" else float(q)


def pooled_percentile(histograms: list[dict[str, Any]], q: float, confidence: float = CONFIDENCE
                      ) -> tuple[float, float, float, int]:
    """``(value, low, high, replications)``: the ``q``-th percentile of the replications'
    histograms added together, and its percentile-bootstrap interval (NaN under two)."""
    import numpy as np  # imported when needed: the CLI's start-up does without it

    from sim.engine.metrics import LAST_BUCKET, bucket_percentile
    counts = np.zeros((len(histograms), LAST_BUCKET + 1))
    for row, histogram in zip(counts, histograms):
        for bucket, count in histogram["buckets"].items():
            row[int(bucket)] = count
    sizes = np.array([h["n"] for h in histograms], dtype=float)
    maxima = np.array([h["max"] for h in histograms], dtype=float)
    value = bucket_percentile(counts.sum(axis=0), int(sizes.sum()), float(maxima.max()), q)
    reps = len(histograms)
    if reps < 2 or not sizes.sum():
        return value, math.nan, math.nan, reps
    picks = np.random.default_rng(0).integers(0, reps, size=(BOOTSTRAP, reps))
    weights = np.stack([np.bincount(p, minlength=reps) for p in picks]).astype(float)
    values = _percentiles(weights @ counts, weights @ sizes,
                          np.where(weights > 0, maxima, 0.0).max(axis=1), q)
    values = values[~np.isnan(values)]
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail]) if len(values) else (math.nan,) * 2
    # a bootstrap percentile interval of a discrete statistic may miss the estimate itself
    return value, min(float(low), value), max(float(high), value), reps


def _percentiles(counts: np.ndarray, sizes: np.ndarray, maxima: np.ndarray, q: float
                 ) -> np.ndarray:
    """:func:`bucket_percentile` of every row of ``counts`` at once."""
    import numpy as np

    from sim.engine.metrics import BUCKETS_PER_OCTAVE
    ranks = np.maximum(1.0, np.ceil(q / 100.0 * sizes))
    buckets = (np.cumsum(counts, axis=1) < ranks[:, None]).sum(axis=1)
    middles = 2.0 ** ((buckets + 0.5) / BUCKETS_PER_OCTAVE)
    return np.where(sizes > 0, np.minimum(middles, maxima), np.nan)
