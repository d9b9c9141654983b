"""Scales, units and tick formatters of the plots (:mod:`sim.results.plots`).

A metric's unit comes from its name (``*_ns``: a time in ns, ``*_usec``: a time in us,
``ops_per_sec``: a rate, ``*pages*``: pages, anything else a count); times are labelled
through :func:`sim.config.units.format_ns`, as in the tables. A swept key is either numeric
(numbers, or times and sizes written with a unit; placed by value, on a log2 axis when its
values are powers of two, a log10 axis over more than 1.5 decades) or categorical (names,
mixed forms such as ``auto`` and numbers, mappings: one slot each, in the order given).
"""

from __future__ import annotations

import json
import math
import textwrap
from dataclasses import dataclass
from typing import Any

from sim.config.units import canonical, format_ns, parse_time

DECADES = 1.5
"""Positive values spanning more than this many decades get a logarithmic axis."""
LABEL = 36
"""Characters of a y label on one line (a panel's height); longer ones put the unit below."""


def unit_of(metric: str) -> str:
    """The unit of a metric: ``time``, ``ops/s``, ``pages`` or ``count``."""
    if metric.endswith(("_ns", "_usec")):
        return "time"
    if metric.endswith("_per_sec"):
        return "ops/s"
    return "pages" if "pages" in metric else "count"


def to_ns(metric: str) -> float:
    """The factor from a time metric's values to ns (``*_usec`` are in us)."""
    return 1e3 if metric.endswith("_usec") else 1.0


def metric_label(metric: str, paired: str | None = None) -> str:
    """A y-axis label: the metric's name and unit (``variant - baseline`` when paired)."""
    name = f"{metric} - {paired}" if paired else metric
    unit = f"[{unit_of(metric)}]"
    return f"{name}\n{unit}" if len(name) + len(unit) > LABEL else f"{name} {unit}"


def compact(value: float) -> str:
    """A count or rate in three digits: ``812``, ``3.4k``, ``12M``."""
    magnitude = abs(value)
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if magnitude >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}"


def value_text(metric: str, value: float) -> str:
    """A value of ``metric`` as a tick or cell label: times with their unit."""
    if unit_of(metric) == "time":
        return format_ns(value * to_ns(metric))
    return compact(value)


def wrap(text: str, width: int) -> str:
    """``text`` broken into lines of at most ``width`` characters."""
    return "\n".join(textwrap.wrap(text, width, break_on_hyphens=False)) or text


# --- the y axis ---------------------------------------------------------------------------


def y_scale(values: list[float], decades: float = DECADES) -> tuple[str, float]:
    """``(scale, linthresh)`` for values of one axis: ``log`` when all are positive and span
    more than ``decades``, ``symlog`` when some are 0 or negative and the non-zero ones span
    that much (linear below the decade of the smallest of them), else ``linear``."""
    finite = [v for v in values if math.isfinite(v)]
    nonzero = [abs(v) for v in finite if v != 0]
    if not nonzero or max(nonzero) / min(nonzero) <= 10 ** decades:
        return "linear", 0.0
    if all(v > 0 for v in finite):
        return "log", 0.0
    return "symlog", 10.0 ** math.floor(math.log10(min(nonzero)))


def symlog_ticks(linthresh: float, largest: float) -> list[float]:
    """0 and the decades from ``linthresh`` up to ``largest`` on both sides; every other
    decade when there are too many to label."""
    count = max(0, math.ceil(math.log10(largest / linthresh) + 1e-9)) + 1
    step = 1 if count <= 4 else 2
    decades = [linthresh * 10 ** k for k in range(0, count, step)]
    return sorted([0.0, *decades, *(-d for d in decades)])


def style_y(ax: Any, metric: str, values: list[float], label: str,
            decades: float = DECADES) -> None:
    """The y axis of a panel of ``metric``: scale, unit tick labels and its label."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullLocator

    scale, linthresh = y_scale(values, decades)
    if scale == "symlog":
        ax.set_yscale("symlog", linthresh=linthresh, linscale=1.0)
        largest = max(abs(v) for v in values if math.isfinite(v))
        ax.yaxis.set_major_locator(FixedLocator(symlog_ticks(linthresh, largest)))
        ax.yaxis.set_minor_locator(NullLocator())
    elif scale == "log":
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, numticks=6))
        ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: value_text(metric, v)))
    ax.set_ylabel(label, fontsize=8)
    ax.tick_params(labelsize=7)


def error_bars(rows: list[dict[str, Any]], signed: bool) -> list[list[float]]:
    """``[below, above]`` lengths of the rows' 95% intervals; the lower end clipped at zero
    unless ``signed`` (a paired difference may be negative, a latency may not)."""
    below, above = [], []
    for r in rows:
        low = r["ci_low"] if _finite(r["ci_low"]) else r["mean"]
        high = r["ci_high"] if _finite(r["ci_high"]) else r["mean"]
        if not signed:
            low = max(low, 0.0)
        below.append(max(r["mean"] - low, 0.0))
        above.append(max(high - r["mean"], 0.0))
    return [below, above]


# --- the x axis ---------------------------------------------------------------------------


@dataclass(frozen=True)
class XAxis:
    """How a swept key's values are placed: ``positions`` (in the values' order), their tick
    ``labels``, the ``scale`` (``linear``, ``log2``, ``log``, or ``category``) and the axis
    ``label``."""

    positions: list[float]
    labels: list[str]
    scale: str
    label: str

    @property
    def categorical(self) -> bool:
        return self.scale == "category"

    def apply(self, ax: Any) -> None:
        """Scale, ticks at the values, and the label of ``ax``'s x axis."""
        if self.scale == "log2":
            ax.set_xscale("log", base=2)
        elif self.scale == "log":
            ax.set_xscale("log")
        ax.set_xticks(self.positions, self.labels, fontsize=7)
        ax.xaxis.set_minor_locator(_null())
        if self.categorical:
            ax.set_xlim(min(self.positions) - 0.5, max(self.positions) + 0.5)
        ax.set_xlabel(self.label, fontsize=8)


def x_axis(key: str, values: list[Any]) -> XAxis:
    """The placement of ``values`` (a swept key's, JSON-decoded, in the order given)."""
    numbers = [canonical(v) for v in values]
    if not values or not all(isinstance(n, float) and math.isfinite(n) for n in numbers):
        return XAxis([float(i) for i in range(len(values))], [_category(v) for v in values],
                     "category", key)
    labels = [_number_text(key, v) for v in values]
    return XAxis(numbers, labels, _x_scale(numbers), f"{key} [{_key_unit(key, values)}]")


def style_sampled_x(ax: Any, key: str, values: list[float]) -> None:
    """The x axis of a key sampled as floats (a Latin hypercube's): a few ticks, times with
    their unit, and the label."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(5))
    if key.endswith("_ns"):
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: format_ns(v)))
    ax.tick_params(labelsize=7)
    ax.set_xlabel(f"{key} [{_key_unit(key, values)}]", fontsize=8)


def _x_scale(numbers: list[float]) -> str:
    if len(numbers) < 2 or min(numbers) <= 0:
        return "linear"
    ratio = max(numbers) / min(numbers)
    powers = sum(n.is_integer() and (int(n) & (int(n) - 1)) == 0 for n in numbers)
    if ratio >= 4 and all(n.is_integer() for n in numbers) and 2 * powers >= len(numbers):
        return "log2"
    return "log" if ratio > 10 ** DECADES else "linear"


def _key_unit(key: str, values: list[Any]) -> str:
    if key.endswith("_ns") or any(isinstance(v, str) and _is_time(v) for v in values):
        return "time"
    if any(isinstance(v, str) for v in values) or "pages" in key:
        return "pages"
    if key.endswith("_rate"):
        return "per s"
    return "count"


def _number_text(key: str, value: Any) -> str:
    if isinstance(value, str):
        return value  # as written: 20ms, 4KiB
    if key.endswith("_ns"):
        return format_ns(value)
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _category(value: Any) -> str:
    if isinstance(value, dict):
        return wrap(" ".join(f"{k}={v}" for k, v in value.items()), 14)
    return wrap(value if isinstance(value, str) else json.dumps(value), 14)


def _is_time(text: str) -> bool:
    try:
        parse_time(text)
    except ValueError:
        return False
    return True


def _null() -> Any:
    from matplotlib.ticker import NullLocator

    return NullLocator()


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
