"""Latin-hypercube samples of continuous parameters, for uncertainty sweeps.

A Latin hypercube of ``n`` samples over ``d`` ranges cuts each range into ``n`` equal strata and
takes exactly one sample in each stratum of each parameter, so ``n`` runs cover every range
evenly however many parameters there are (a grid would need ``k ** d`` runs). Typical use: the
machine costs a profile cites with uncertainty (``machine.costs.ipi_handler_ns: [500, 2000]``),
to see how much a conclusion depends on them. The samples come from SciPy's
``qmc.LatinHypercube``: a SciPy release that changes its algorithm changes them (and so the
run ids of a sweep).
"""

from __future__ import annotations

SIGNIFICANT = 6
"""Sampled values are rounded to this many significant digits (readable tables and ids)."""


def latin_hypercube(ranges: list[tuple[float, float]], samples: int, seed: int
                    ) -> list[tuple[float, ...]]:
    """``samples`` points, one value per range, from a seeded Latin hypercube."""
    import numpy as np  # imported when sampling: scipy.stats alone takes ~0.5 s
    from scipy.stats import qmc

    sampler = qmc.LatinHypercube(d=len(ranges), seed=np.random.default_rng(seed))
    unit = sampler.random(samples)
    low = [lo for lo, _ in ranges]
    high = [hi for _, hi in ranges]
    scaled = qmc.scale(unit, low, high)
    return [tuple(_round(float(v)) for v in row) for row in scaled]


def _round(value: float) -> float:
    return float(f"{value:.{SIGNIFICANT}g}")
