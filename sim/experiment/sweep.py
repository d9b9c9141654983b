"""The sweep grammar of an experiment: factors, zipped groups, points.

A sweep is a mapping of *factors*, in file order::

    sweep:
      workload.background.count: [1000, 10000]   # one dotted key and its values
      zip:                                        # keys that move together
        - {cpus: [1, 8, 64], lazy_max_pages: [32, 256, 2048]}

The points are the Cartesian product of the factors, in file order (the last factor varies
fastest). A zipped group is one factor: its ``i``-th level sets the ``i``-th value of every key
in the group, so its lists must have the same length. ``zip`` holds a list of groups, or one
group as a plain mapping. A key may be swept only once.

``lhs`` is a sampled factor: ``samples`` levels of a Latin hypercube over ``ranges``
(:mod:`sim.sampling`), seeded by its ``seed`` or the experiment's::

      lhs: {samples: 16, ranges: {machine.costs.ipi_handler_ns: [500, 2000]}}

Overrides work on the raw mapping, before it is parsed: :func:`set_factor` (``--set
sweep.KEY=[...]``) replaces a key's sweep wherever it was, :func:`unsweep` (``--set KEY=V``)
pins a key by removing it from the sweep, zipped groups and sampled ranges included.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from typing import Any

from sim.config.loader import ConfigError, Origins, did_you_mean, dotted, shown
from sim.config.units import canonical
from sim.experiment.sampling import latin_hypercube

ZIP = "zip"
"""The sweep key that holds zipped groups."""
LHS = "lhs"
"""The sweep key that holds a Latin-hypercube factor."""
LHS_KEYS = ("samples", "ranges", "seed")
MAX_POINTS = 100_000
"""Most points a sweep may have (a typo such as ``samples: 1000000000`` must not hang ``check``)."""
MAX_RUNS = 100_000
"""Most runs one experiment may have (points x variants x replications): a day or more of CPU
already; a typo in a sweep must not be expanded into a billion specs."""


@dataclass(frozen=True)
class Factor:
    """One axis of the product: a key (or a zipped group of keys) and its levels."""

    keys: tuple[str, ...]
    levels: tuple[tuple[Any, ...], ...]
    paths: tuple[tuple, ...]
    """Where each key was written: ``("sweep", key)`` or ``("sweep", "zip", group, key)``."""
    sampled: bool = False
    """Levels drawn from ranges (``lhs``) rather than listed."""


@dataclass(frozen=True)
class Sweep:
    """The parsed sweep: factors in file order."""

    factors: tuple[Factor, ...] = ()

    @property
    def keys(self) -> list[str]:
        """Every swept dotted key, in file order (zipped keys where their group stands)."""
        return [key for factor in self.factors for key in factor.keys]

    def __contains__(self, key: object) -> bool:
        return key in self.keys

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def sampled_keys(self) -> list[str]:
        """The keys whose values are sampled (``lhs``), not listed."""
        return [key for factor in self.factors if factor.sampled for key in factor.keys]

    def points(self) -> list[dict[str, Any]]:
        """The Cartesian product of the factors: one ``{key: value}`` per point."""
        out = []
        for combo in itertools.product(*(factor.levels for factor in self.factors)):
            point: dict[str, Any] = {}
            for factor, level in zip(self.factors, combo):
                point.update(zip(factor.keys, level))
            out.append(point)
        return out

    def key_path(self, key: str) -> tuple:
        """The key path where ``key``'s sweep was written (for error locations)."""
        factor, i = self._find(key)
        return factor.paths[i]

    def value_path(self, key: str, value: Any) -> tuple:
        """The key path of the first entry of ``key``'s list equal to ``value`` (of its range,
        for a sampled key)."""
        factor, i = self._find(key)
        if factor.sampled:
            return factor.paths[i]
        index = [level[i] for level in factor.levels].index(value)
        return factor.paths[i] + (index,)

    def _find(self, key: str) -> tuple[Factor, int]:
        for factor in self.factors:
            if key in factor.keys:
                return factor, factor.keys.index(key)
        raise KeyError(key)


def parse_sweep(raw: dict[str, Any], origins: Origins, seed: int = 0, runs_per_point: int = 1
                ) -> Sweep:
    """Validate the raw ``sweep`` mapping and build its factors; errors name the entry.
    ``seed`` seeds a Latin hypercube that names no seed of its own; ``runs_per_point``
    (variants x replications) bounds the points by ``MAX_RUNS``, checked before sampling."""
    factors: list[Factor] = []
    seen: dict[str, tuple] = {}
    for key, value in raw.items():
        if key == ZIP:
            for g, group in enumerate(_groups(value, origins)):
                factors.append(_zipped(group, g, value, origins, seen))
        elif key == LHS:
            factors.append(_sampled(value, origins, seen, seed, runs_per_point))
        else:
            path = ("sweep", key)
            values = _values(value, path, origins)
            _claim(key, path, seen, origins)
            factors.append(Factor((key,), tuple((v,) for v in values), (path,)))
    points = math.prod(len(factor.levels) for factor in factors)
    if points > MAX_POINTS:
        raise origins.error(f"the sweep has {points} points; at most {MAX_POINTS} are "
                            "allowed (sweep fewer values, or split the experiment)", ("sweep",))
    if points * runs_per_point > MAX_RUNS:
        raise _too_many_runs(points, runs_per_point, origins)
    for factor in factors:
        _check_distinct(factor, origins)
    return Sweep(tuple(factors))


def _groups(value: Any, origins: Origins) -> list[dict[str, Any]]:
    """``zip``: a list of mappings, or one mapping."""
    if isinstance(value, dict):
        return [value]
    if not isinstance(value, list) or not value:
        raise origins.error("expected a mapping of zipped keys or a non-empty list of them, "
                            f"found {_show(value)}", ("sweep", ZIP))
    for g, group in enumerate(value):
        if not isinstance(group, dict):
            raise origins.error("expected a mapping of zipped keys to lists of values, "
                                f"found {_show(group)}", ("sweep", ZIP, g))
    return value


def _zipped(group: dict[str, Any], g: int, raw: Any, origins: Origins,
            seen: dict[str, tuple]) -> Factor:
    base = ("sweep", ZIP) if isinstance(raw, dict) else ("sweep", ZIP, g)
    if not group:
        raise origins.error("a zipped group needs at least one key", base)
    columns, paths = [], []
    for key, value in group.items():
        path = base + (key,)
        if key in (ZIP, LHS):
            raise origins.error("zipped groups do not nest", path)
        columns.append(_values(value, path, origins))
        _claim(key, path, seen, origins)
        paths.append(path)
    lengths = [len(c) for c in columns]
    if len(set(lengths)) > 1:
        keys = list(group)
        first = keys[0]
        bad = next(i for i, n in enumerate(lengths) if n != lengths[0])
        raise origins.error(f"zipped lists must have the same length: '{first}' has "
                            f"{lengths[0]} values, '{keys[bad]}' has {lengths[bad]}", paths[bad])
    return Factor(tuple(group), tuple(zip(*columns)), tuple(paths))


def _too_many_runs(points: int, runs_per_point: int, origins: Origins) -> ConfigError:
    return origins.error(f"the experiment has {points * runs_per_point} runs ({points} points x "
                         f"{runs_per_point} runs of variants and replications each); at most "
                         f"{MAX_RUNS} are allowed (split it, or use fewer replications)",
                         ("replications",))


def _sampled(spec: Any, origins: Origins, seen: dict[str, tuple], seed: int,
             runs_per_point: int) -> Factor:
    """``lhs: {samples: N, ranges: {key: [low, high], ...}, seed: S}``."""
    base = ("sweep", LHS)
    if not isinstance(spec, dict):
        raise origins.error(f"expected a mapping with samples and ranges, found {_show(spec)}",
                            base)
    for key in spec:
        if key not in LHS_KEYS:
            raise origins.error(f"unknown key {shown(key)}{did_you_mean(str(key), list(LHS_KEYS))} "
                                f"(allowed: {', '.join(LHS_KEYS)})", base + (key,))
    samples = _count(spec.get("samples"), base + ("samples",), origins, minimum=1)
    if samples > MAX_POINTS:
        raise origins.error(f"expected at most {MAX_POINTS} samples, found {samples}",
                            base + ("samples",))
    if samples * runs_per_point > MAX_RUNS:  # before drawing them
        raise _too_many_runs(samples, runs_per_point, origins)
    own_seed = spec.get("seed")
    if own_seed is not None:
        seed = _count(own_seed, base + ("seed",), origins, minimum=0)
    ranges = spec.get("ranges")
    if not isinstance(ranges, dict) or not ranges:
        raise origins.error("expected a mapping of dotted keys to [low, high], found "
                            f"{_show(ranges)}", base + ("ranges",))
    bounds, paths = [], []
    for key, bound in ranges.items():
        path = base + ("ranges", key)
        if not (isinstance(bound, list) and len(bound) == 2 and all(_number(b) for b in bound)
                and bound[0] < bound[1]):
            infinite = isinstance(bound, list) and any(
                isinstance(b, float) and not math.isfinite(b) for b in bound)
            raise origins.error("expected [low, high] with low < high"
                                f"{' (finite)' if infinite else ''}, found {_show(bound)}", path)
        _claim(key, path, seen, origins)
        bounds.append((float(bound[0]), float(bound[1])))
        paths.append(path)
    levels = latin_hypercube(bounds, samples, seed)
    return Factor(tuple(ranges), tuple(levels), tuple(paths), sampled=True)


def _count(value: Any, path: tuple, origins: Origins, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise origins.error(f"expected an integer of at least {minimum}, found {_show(value)}",
                            path)
    return value


def _number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def _values(value: Any, path: tuple, origins: Origins) -> list:
    if not isinstance(value, list) or not value:
        raise origins.error(f"expected a non-empty list of values, found {_show(value)}", path)
    return value


def _claim(key: str, path: tuple, seen: dict[str, tuple], origins: Origins) -> None:
    """Refuse a key that is not a dotted name, or one swept twice (for example alone and in a
    zipped group)."""
    if not isinstance(key, str):
        raise origins.error(f"expected a dotted key name, found {_show(key)}", path)
    if key in seen:
        raise origins.error(f"'{key}' is swept twice (also at {dotted(seen[key])})", path)
    seen[key] = path


def _check_distinct(factor: Factor, origins: Origins) -> None:
    """Two equal levels would be the same point twice (and the same run ids)."""
    if factor.sampled:  # distinct by construction: one sample per stratum
        return
    seen: set[str] = set()
    for i, level in enumerate(factor.levels):
        text = json.dumps([canonical(v) for v in level], sort_keys=True, default=str)
        if text in seen:
            path = factor.paths[0] + (i,)
            what = "value" if len(factor.keys) == 1 else "zipped level"
            shown = level[0] if len(level) == 1 else dict(zip(factor.keys, level))
            raise origins.error(f"repeated {what} {shown!r}; each point must differ", path)
        seen.add(text)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- overrides on the raw mapping --------------------------------------------------------------

def set_factor(raw: dict[str, Any], key: str, values: Any) -> None:
    """``--set sweep.KEY=VALUES``: sweep ``key`` over ``values``, replacing its sweep wherever
    it was (in place when it was a plain factor, else as a new last factor);
    ``lhs.samples`` and ``lhs.seed`` change the Latin hypercube."""
    if key in (ZIP, LHS) or key in raw:
        raw[key] = values
        return
    if key in (f"{LHS}.samples", f"{LHS}.seed") and isinstance(raw.get(LHS), dict):
        raw[LHS][key.removeprefix(f"{LHS}.")] = values
        return
    unsweep(raw, key)
    raw[key] = values


def unsweep(raw: dict[str, Any], key: str) -> None:
    """``--set KEY=VALUE`` pins ``key``: remove it from the sweep, zipped groups and sampled
    ranges included (a group or hypercube left empty disappears)."""
    raw.pop(key, None)
    sampled = raw.get(LHS)
    if isinstance(sampled, dict) and isinstance(sampled.get("ranges"), dict):
        sampled["ranges"].pop(key, None)
        if not sampled["ranges"]:
            del raw[LHS]
    groups = raw.get(ZIP)
    if isinstance(groups, dict):
        groups.pop(key, None)
        if not groups:
            del raw[ZIP]
    elif isinstance(groups, list):
        emptied = [g for g in groups if isinstance(g, dict) and g.pop(key, None) is not None
                   and not g]
        raw[ZIP] = [g for g in groups if not any(g is e for e in emptied)]
        if not raw[ZIP]:
            del raw[ZIP]
