"""Plots of an experiment's summary (PNG, matplotlib's Agg canvas; the ``plots`` extra).

* ``plots/<metric>.png``: the metric against the first swept key, one line per variant with
  its 95% interval as error bars; one panel per combination of the other swept keys.
* ``plots/<metric>-heatmap.png`` (two swept keys): the mean over both keys, one panel per
  variant.
* ``plots/<metric>-paired.png`` (with a baseline): ``variant - baseline`` against the first
  swept key, with the paired interval, and a line at zero.

With sampled keys (a Latin-hypercube sweep) the metric and paired plots are scatter plots
instead: one panel per sampled key, every point of the sweep in each.

Heatmaps and paired plots are drawn for the headline metrics (:data:`sim.report.TABLE_METRICS`)
only, line plots for every metric that is not zero everywhere. Figures are built with
:class:`matplotlib.figure.Figure`, never pyplot, so no global state or GUI backend is touched.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sim.config.loader import ConfigError, shown
from sim.results.store import PLAIN_NAME, subdirectory

PLOTS = "plots"
DPI = 90
PANEL = (4.2, 3.2)  # inches per panel


def available() -> bool:
    """Whether matplotlib (the ``plots`` extra) is installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def require(where: str) -> None:
    """A one-line error naming the missing extra, unless matplotlib is installed."""
    if not available():
        raise ConfigError("plots need matplotlib, from the 'plots' extra: "
                          "pip install 'vmapsim[plots]' (--no-plots writes the tables only)",
                          where)


def plotted_metrics(rows: list[dict[str, Any]]) -> list[str]:
    """Metrics in row order, without those that are zero or undefined everywhere."""
    out: dict[str, bool] = {}
    for row in rows:
        mean = row["mean"]
        out[row["metric"]] = out.get(row["metric"], False) or (_finite(mean) and mean != 0)
    return [metric for metric, shown in out.items() if shown]


def write_plots(out_dir: Path, rows: list[dict[str, Any]], swept: list[str],
                variants: list[str], paired: list[dict[str, Any]],
                headline: Sequence[str], sampled: Sequence[str] = ()) -> list[Path]:
    """Every plot of an experiment; the paths written (none without a swept key)."""
    if not swept:
        return []
    draw, axes = (_scatter, list(sampled)) if sampled else (_lines, swept)
    folder = subdirectory(out_dir, PLOTS)
    colors = {v: f"C{i % 10}" for i, v in enumerate(variants)}  # a variant keeps its colour
    paths = []
    for metric in plotted_metrics(rows):
        if not PLAIN_NAME.fullmatch(metric):  # it names a file: nothing outside plots/
            raise ConfigError(f"a metric name cannot name a plot file (letters, digits, "
                              f"'_', '.', '-'), found {shown(metric)}", str(out_dir / "runs"))
        mine = [r for r in rows if r["metric"] == metric]
        paths.append(draw(folder / f"{metric}.png", mine, axes, colors, metric))
        if metric in headline and len(swept) == 2 and not sampled:
            paths.append(_heatmap(folder / f"{metric}-heatmap.png", mine, swept, variants,
                                  metric))
        diffs = [r for r in paired if r["metric"] == metric]
        if metric in headline and diffs:
            label = f"{metric}: variant - {diffs[0]['baseline']}"
            others = {v: c for v, c in colors.items() if v != diffs[0]["baseline"]}
            paths.append(draw(folder / f"{metric}-paired.png", diffs, axes, others, label,
                              zero_line=True))
    return paths


def _lines(path: Path, rows: list[dict[str, Any]], swept: list[str], colors: dict[str, str],
           title: str, zero_line: bool = False) -> Path:
    """One panel per combination of ``swept[1:]``; x is ``swept[0]``, one line per variant."""
    x_key, facet_keys = swept[0], swept[1:]
    facets = _unique(tuple(_key(r.get(k)) for k in facet_keys) for r in rows)
    xs = _unique(_key(r.get(x_key)) for r in rows)
    fig, axes = _figure(len(facets))
    for ax, facet in zip(axes, facets):
        for variant, color in colors.items():
            series = {_key(r.get(x_key)): r for r in rows if r["variant"] == variant
                      and tuple(_key(r.get(k)) for k in facet_keys) == facet}
            _series(ax, xs, series, variant, color)
        if zero_line:
            ax.axhline(0.0, color="grey", linewidth=0.8)
        _x_axis(ax, xs, x_key)
        if facet_keys:
            ax.set_title(", ".join(f"{_short(k)}={json.loads(v)}"
                                   for k, v in zip(facet_keys, facet)), fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=DPI)
    return path


def _scatter(path: Path, rows: list[dict[str, Any]], sampled: list[str],
             colors: dict[str, str], title: str, zero_line: bool = False) -> Path:
    """One panel per sampled key: every point's mean against that key's value."""
    fig, axes = _figure(len(sampled))
    for ax, key in zip(axes, sampled):
        for variant, color in colors.items():
            mine = sorted((r for r in rows if r["variant"] == variant and _finite(r["mean"])
                           and _finite(r.get(key))), key=lambda r: r[key])
            if not mine:
                continue
            means = [r["mean"] for r in mine]
            low = [r["mean"] - r["ci_low"] if _finite(r["ci_low"]) else 0.0 for r in mine]
            high = [r["ci_high"] - r["mean"] if _finite(r["ci_high"]) else 0.0 for r in mine]
            ax.errorbar([r[key] for r in mine], means, yerr=[low, high], fmt="o",
                        markersize=3, capsize=2, linewidth=0.8, label=variant, color=color)
        if zero_line:
            ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_xlabel(_short(key))
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=DPI)
    return path


def _series(ax: Any, xs: list[str], series: dict[str, dict[str, Any]], label: str,
            color: str) -> None:
    points = [(i, series[x]) for i, x in enumerate(xs) if x in series
              and _finite(series[x]["mean"])]
    if not points:
        return
    pos = [_position(xs, i) for i, _ in points]
    means = [r["mean"] for _, r in points]
    low = [r["mean"] - r["ci_low"] if _finite(r["ci_low"]) else 0.0 for _, r in points]
    high = [r["ci_high"] - r["mean"] if _finite(r["ci_high"]) else 0.0 for _, r in points]
    ax.errorbar(pos, means, yerr=[low, high], marker="o", markersize=3, capsize=3,
                linewidth=1.2, label=label, color=color)


def _heatmap(path: Path, rows: list[dict[str, Any]], swept: list[str], variants: list[str],
             metric: str) -> Path:
    """The mean over two swept keys, one panel per variant, on a shared colour scale."""
    x_key, y_key = swept
    xs = _unique(_key(r.get(x_key)) for r in rows)
    ys = _unique(_key(r.get(y_key)) for r in rows)
    grids = {v: [[math.nan] * len(xs) for _ in ys] for v in variants}
    for r in rows:
        if r["variant"] in grids:
            grids[r["variant"]][ys.index(_key(r.get(y_key)))][xs.index(_key(r.get(x_key)))] = \
                r["mean"] if _finite(r["mean"]) else math.nan
    norm = _norm([c for g in grids.values() for line in g for c in line if _finite(c)])
    fig, axes = _figure(len(variants))
    image = None
    for ax, variant in zip(axes, variants):
        image = ax.imshow(grids[variant], origin="lower", aspect="auto", cmap="viridis",
                          norm=norm)
        for j, line in enumerate(grids[variant]):
            for i, cell in enumerate(line):
                if _finite(cell):
                    ax.text(i, j, _compact(cell), ha="center", va="center", fontsize=7,
                            color="white" if norm(cell) < 0.5 else "black")
        ax.set_xticks(range(len(xs)), [str(json.loads(x)) for x in xs], fontsize=8)
        ax.set_yticks(range(len(ys)), [str(json.loads(y)) for y in ys], fontsize=8)
        ax.set_xlabel(_short(x_key))
        ax.set_ylabel(_short(y_key))
        ax.set_title(variant, fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=list(axes), shrink=0.8)
    fig.suptitle(f"{metric} (mean)", fontsize=10)
    fig.savefig(path, dpi=DPI)
    return path


def _norm(values: list[float]) -> Any:
    """A shared colour scale: logarithmic when positive values span two decades."""
    from matplotlib.colors import LogNorm, Normalize

    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if lo > 0 and hi / lo >= 100:
        return LogNorm(lo, hi)
    return Normalize(lo, hi if hi > lo else lo + 1)


def _figure(panels: int) -> tuple[Any, list[Any]]:
    from matplotlib.figure import Figure

    cols = min(3, max(1, panels))
    rows = math.ceil(panels / cols)
    width, height = PANEL[0] * cols, PANEL[1] * rows
    fig = Figure(figsize=(width, height))
    # fixed margins in inches: a layout engine would double the drawing time
    margins = {"left": 0.75 / width, "right": 1 - 0.25 / width, "bottom": 0.55 / height,
               "top": 1 - 0.6 / height, "wspace": 0.35, "hspace": 0.55}
    axes = fig.subplots(rows, cols, squeeze=False, gridspec_kw=margins).ravel().tolist()
    for ax in axes[panels:]:
        ax.set_visible(False)
    return fig, axes[:panels]


def _x_axis(ax: Any, xs: list[str], key: str) -> None:
    """Numeric keys on a linear or (over two decades) log axis; others as categories."""
    values = [json.loads(x) for x in xs]
    ax.set_xlabel(_short(key))
    if _numeric(values):
        if _log_scale(values):
            ax.set_xscale("log")
        ax.set_xticks(values, [str(v) for v in values], fontsize=8)
        ax.minorticks_off()
    else:
        ax.set_xticks(range(len(values)), [str(v) for v in values], fontsize=8)


def _position(xs: list[str], i: int) -> float:
    values = [json.loads(x) for x in xs]
    return values[i] if _numeric(values) else i


def _numeric(values: list[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _log_scale(values: list[float]) -> bool:
    return min(values) > 0 and max(values) / min(values) >= 100


def _key(value: Any) -> str:
    """A hashable, order-preserving identity of a swept value (values may be mappings)."""
    return json.dumps(value, sort_keys=True)


def _unique(items: Any) -> list:
    return list(dict.fromkeys(items))


def _short(key: str) -> str:
    return key.split(".")[-1]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _compact(value: float) -> str:
    magnitude = abs(value)
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if magnitude >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}"
