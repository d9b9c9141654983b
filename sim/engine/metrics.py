"""Bounded run statistics: log-bucketed latency histograms, counters and peaks.

Memory does not grow with simulated time: a histogram is a fixed array of buckets, 32 per
power of two (about 2% relative error on a percentile); mean and max are exact.
"""

from __future__ import annotations

import math

import numpy as np

BUCKETS_PER_OCTAVE = 32
OCTAVES = 48  # up to 2**48 ns, about 3 days of simulated time
LAST_BUCKET = BUCKETS_PER_OCTAVE * OCTAVES - 1


class Histogram:
    """Latencies in ns: count, exact sum and max, percentiles from log buckets."""

    __slots__ = ("counts", "n", "total", "max")

    def __init__(self) -> None:
        self.counts = [0] * (BUCKETS_PER_OCTAVE * OCTAVES)
        """Per bucket; a list, not an array: incrementing one element is the hot path."""
        self.n = 0
        self.total = 0.0
        self.max = 0.0

    def record(self, ns: float) -> None:
        self.n += 1
        self.total += ns
        if ns > self.max:
            self.max = ns
        bucket = int(math.log2(ns) * BUCKETS_PER_OCTAVE) if ns >= 1.0 else 0
        self.counts[bucket if bucket < LAST_BUCKET else LAST_BUCKET] += 1

    def mean(self) -> float:
        return self.total / self.n if self.n else math.nan

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0..100): geometric middle of its bucket, capped at max."""
        return bucket_percentile(np.asarray(self.counts), self.n, self.max, q)

    def to_json(self) -> dict[str, object]:
        """What a run file keeps of it: the non-empty buckets, count, sum and max (so that
        the histograms of several replications can be merged)."""
        return {"buckets": {str(i): c for i, c in enumerate(self.counts) if c},
                "n": self.n, "total": self.total, "max": self.max}


def bucket_percentile(counts: np.ndarray, n: int, maximum: float, q: float) -> float:
    """The ``q``-th percentile of a histogram's bucket ``counts`` (of ``n`` samples, the
    largest ``maximum``): the geometric middle of its bucket, capped at the maximum."""
    if not n:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * n))
    bucket = int(np.searchsorted(np.cumsum(counts), rank))
    middle = 2.0 ** ((bucket + 0.5) / BUCKETS_PER_OCTAVE)
    return min(middle, maximum)


class Metrics:
    """Everything a run reports besides lock_stat, reset at the end of warm-up."""

    def __init__(self) -> None:
        self.reset(0.0)

    def reset(self, now: float) -> None:
        self.window_start = now
        self.ops = 0
        self.vmalloc = Histogram()
        self.vfree = Histogram()
        self.set_memory = Histogram()
        self.purge = Histogram()
        self.preempt_off = Histogram()
        """Sections a CPU ran with preemption off (a spinlock held or spun on, an IPI wait)."""
        self.rt_latency = Histogram()
        """Wake-up latencies of the rt_probe's threads (empty without a probe)."""
        self.purge_areas = 0
        self.purge_nodes = 0
        self.tlb_flush_full = 0
        self.tlb_flush_range = 0
        self.ipis = 0
        self.alloc_failures = 0
        self.purge_trylock_failures = 0
        self.alloc_walk_steps = 0
        self.lazy_pages_peak = 0

    def count_op(self) -> None:
        """One operation (vmalloc, vfree, vm_map_ram, vm_unmap_ram, set_memory_*()) done."""
        self.ops += 1
