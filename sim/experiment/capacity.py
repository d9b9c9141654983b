"""Capacity search: per variant, the largest value of one integer key (the CPU count, say) at
which a metric stays within a limit, found by bisection.

The metric is assumed monotone in the key over ``[low, high]`` (within the limit up to some
value, beyond it after). A value is *within* when the metric's mean over the experiment's
replications is within the limit; a metric with no sample (NaN) counts as beyond. Each round
probes the midpoint of every open bracket; the probes of a round run together, as one sweep of
the key over all the variants still searching, so every probe narrows the bracket of every
such variant. ``ceil(log2(high - low)) + 2`` rounds at most.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sim.config.loader import ConfigError, shown
from sim.config.units import format_ns, parse_time
from sim.experiment.experiment import Experiment
from sim.experiment.runner import ExperimentResult, run_experiment
from sim.experiment.sweep import Factor, Sweep
from sim.results.report import REPORT
from sim.results.store import write_atomic, write_csv

Evaluate = Callable[[list[int], list[str]], dict[tuple[str, int], float]]
"""Runs ``values`` x ``variants``; the metric's mean for each (variant, value)."""


@dataclass(frozen=True)
class Limit:
    """``metric <= bound`` (``upper``) or ``metric >= bound``."""

    metric: str
    bound: float
    upper: bool = True

    def within(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        return value <= self.bound if self.upper else value >= self.bound

    @classmethod
    def parse(cls, metric: str, maximum: str | None, minimum: str | None) -> Limit:
        """``--max``/``--min`` of ``vmapsim capacity``; times such as ``100us`` for ``*_ns``."""
        if (maximum is None) == (minimum is None):
            raise ConfigError("give exactly one of --max and --min", "command line")
        text = maximum if maximum is not None else minimum
        try:
            bound = parse_time(text) if metric.endswith("_ns") else float(text)
        except ValueError as exc:
            raise ConfigError(f"cannot read the limit {shown(text)}: {exc}",
                              "command line") from None
        if not math.isfinite(bound):
            raise ConfigError(f"expected a finite limit, found {shown(text)}", "command line")
        return cls(metric, bound, upper=maximum is not None)


@dataclass
class Capacity:
    """The outcome of one variant's search."""

    variant: str
    within: int | None = None
    """Largest probed value within the limit (None: not even ``low``)."""
    beyond: int | None = None
    """Smallest probed value beyond the limit above ``within`` (None: not even ``high``)."""
    probes: dict[int, float] = field(default_factory=dict)
    """Every probed value and the metric's mean there."""

    @property
    def open(self) -> bool:
        """Whether bisection can still narrow the bracket."""
        return self.beyond is not None and self.within is not None \
            and self.beyond - self.within > 1


def bisect(variants: list[str], low: int, high: int, limit: Limit, evaluate: Evaluate
           ) -> list[Capacity]:
    """Bisection of ``[low, high]`` for every variant; see the module docstring."""
    found = {v: Capacity(v) for v in variants}
    values = sorted({low, high})
    active = list(variants)
    while values and active:
        means = evaluate(values, active)
        for variant in active:
            cap = found[variant]
            cap.probes.update({x: means[variant, x] for x in values})
            _bracket(cap, limit)
        active = [v for v in active if found[v].open]
        values = sorted({(found[v].within + found[v].beyond) // 2 for v in active})
    return [found[v] for v in variants]


def _bracket(cap: Capacity, limit: Limit) -> None:
    """The first probed value beyond the limit ends the bracket; the largest probed value
    below it is the capacity (None when the bottom of the range is already beyond)."""
    bad = [x for x, mean in cap.probes.items() if not limit.within(mean)]
    cap.beyond = min(bad, default=None)
    ok = [x for x in cap.probes if x not in bad and (cap.beyond is None or x < cap.beyond)]
    cap.within = max(ok, default=None)


def capacity_search(experiment: Experiment, key: str, low: int, high: int, limit: Limit,
                    out_dir: Path | None = None, log: Callable[[str], None] | None = None,
                    report: bool = True, **run_options: Any
                    ) -> tuple[list[Capacity], ExperimentResult]:
    """Search ``key`` in ``[low, high]`` for every variant of ``experiment`` (whose own sweep
    is replaced). With ``out_dir`` the runs are kept there (a rerun reuses them) and the last
    step tabulates every probe of every variant like ``vmapsim run`` (``summary.csv``, and with
    ``report`` the plots and ``report.md``) and writes ``capacity.csv``. ``log`` receives one
    line per round; ``run_options`` go to :func:`run_experiment`."""
    if not low < high:
        raise ConfigError(f"the range needs low < high, found {low}..{high}", "--range")
    if limit.metric not in experiment.metric_names():  # before any run
        raise ConfigError(experiment.unknown_metric(limit.metric), "--metric")
    variants = [v["name"] for v in experiment.variants]

    def evaluate(values: list[int], names: list[str]) -> dict[tuple[str, int], float]:
        if log is not None:
            log(f"capacity: {key} = {', '.join(map(str, values))} for {', '.join(names)}")
        outcome = run_experiment(_probing(experiment, key, values, names), out_dir,
                                 resume=True, report=False, **run_options)
        means = {(r["variant"], r[key]): r["mean"] for r in outcome.rows
                 if r["metric"] == limit.metric}
        return {(v, x): means.get((v, x), math.nan) for v in names for x in values}

    found = bisect(variants, low, high, limit, evaluate)
    probed = sorted({x for cap in found for x in cap.probes})
    if out_dir is not None:  # before the report, whose capacity plot is drawn from it
        write_csv(Path(out_dir) / "capacity.csv", capacity_rows(found, key, limit),
                  ["variant", "metric", "limit", "bound", key, "first_beyond", "probes"])
    final = run_experiment(_probing(experiment, key, probed, variants), out_dir, resume=True,
                           report=report, **run_options)
    if out_dir is not None and report:
        _add_to_report(Path(out_dir) / REPORT, capacity_markdown(found, key, limit))
    return found, final


def capacity_markdown(found: list[Capacity], key: str, limit: Limit) -> list[str]:
    """The capacity found, as a section of ``report.md``."""
    sign = "<=" if limit.upper else ">="
    bound = format_ns(limit.bound) if limit.metric.endswith("_ns") else f"{limit.bound:g}"
    out = ["## Capacity", "", f"The largest `{key}` at which the mean `{limit.metric}` stays "
           f"{sign} {bound} (bisection; [capacity.csv](capacity.csv)):", "",
           f"| variant | {key} | first beyond | probes |", "|---|---:|---:|---:|"]
    for cap in found:
        within = "none (not even the low end)" if cap.within is None else str(cap.within)
        beyond = "none (within up to the high end)" if cap.beyond is None else str(cap.beyond)
        out.append(f"| {cap.variant} | {within} | {beyond} | {len(cap.probes)} |")
    return out + [""]


def _add_to_report(path: Path, section: list[str]) -> None:
    """Put ``section`` before the first section of an existing ``report.md``."""
    lines = path.read_text().splitlines()
    at = next((i for i, line in enumerate(lines) if line.startswith("## ")), len(lines))
    write_atomic(path, "\n".join(lines[:at] + section + lines[at:]) + "\n")


def _probing(experiment: Experiment, key: str, values: list[int], variants: list[str]
             ) -> Experiment:
    """``experiment`` sweeping only ``key`` over ``values``, for ``variants`` only."""
    sweep = Sweep((Factor((key,), tuple((x,) for x in values), (("sweep", key),)),))
    chosen = [v for v in experiment.variants if v["name"] in variants]
    return dataclasses.replace(experiment, sweep=sweep, variants=chosen)


def capacity_rows(found: list[Capacity], key: str, limit: Limit) -> list[dict[str, Any]]:
    """One row per variant: the capacity and the first value beyond the limit."""
    return [{"variant": cap.variant, "metric": limit.metric,
             "limit": "max" if limit.upper else "min", "bound": limit.bound,
             key: "" if cap.within is None else cap.within,
             "first_beyond": "" if cap.beyond is None else cap.beyond,
             "probes": len(cap.probes)} for cap in found]
