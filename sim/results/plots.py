"""Plots of an experiment's summary (PNG, matplotlib's Agg canvas; the ``plots`` extra).

* ``plots/<metric>.png``: the metric against the first swept key, one series per variant with
  its 95% interval as error bars (lines over a numeric key, dodged points without lines over a
  categorical one); one panel per combination of the other swept keys.
* ``plots/<metric>-heatmap.png`` (two swept keys of three values or more): the mean over
  both keys, one panel per variant.
* ``plots/<metric>-paired.png`` (with a baseline): ``variant - baseline`` against the first
  swept key, with the paired interval, and a line at zero.
* ``plots/capacity.png`` (a capacity search): the probed metric against the key per variant,
  the limit as a horizontal line and each variant's capacity marked.

With sampled keys (a Latin-hypercube sweep) the metric and paired plots are scatter plots
instead: one panel per sampled key, every point of the sweep in each.

By default only the :data:`HEADLINE` metrics are drawn; with ``every`` every metric that is
not zero everywhere gets its line plot (heatmaps and paired plots stay headline-only). Scales,
units and ticks come from :mod:`sim.results.plot_axes`. Figures are built with
:class:`matplotlib.figure.Figure`, never pyplot, so no global state or GUI backend is touched.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from sim.config.loader import ConfigError, shown
from sim.results import plot_axes as axis
from sim.results.stats import percentile_q
from sim.results.store import PLAIN_NAME, subdirectory

PLOTS = "plots"
DPI = 80
PANEL = (3.6, 2.6)  # inches per panel (the data area and its tick labels)
COLUMNS = 3
HEATMAP_LEVELS = 3
HEADLINE = ("ops_per_sec", "vmalloc_p99_ns", "vfree_p99_ns", "set_memory_p99_ns",
            "purge_mean_ns", "vmap_area_lock_wait_ns", "safety_violations",
            "replay_late_mean_ns", "*_avg_usec")
"""The metrics plotted by default (``*`` matches any text): throughput, the p99 latencies,
purge time, lock wait, safety violations, and the replay and test_vmalloc workloads' own."""


@dataclass(frozen=True)
class CapacityLimit:
    """A capacity search's outcome for the plot: ``metric <= bound`` (``upper``) or ``>=``,
    and per variant the largest value of ``key`` within it (None: not even the lowest)."""

    key: str
    metric: str
    bound: float
    upper: bool
    within: dict[str, float | None]


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


def is_headline(metric: str, headline: Sequence[str]) -> bool:
    """Whether ``metric`` matches a pattern of ``headline``."""
    return any(fnmatchcase(metric, pattern) for pattern in headline)


def write_plots(out_dir: Path, rows: list[dict[str, Any]], swept: list[str],
                variants: list[str], paired: list[dict[str, Any]],
                headline: Sequence[str] = HEADLINE, sampled: Sequence[str] = (),
                every: bool = False, capacity: CapacityLimit | None = None) -> list[Path]:
    """The plots of an experiment (see the module docstring); the paths written (none
    without a swept key)."""
    if not swept:
        return []
    draw, keys = (scatter_figure, list(sampled)) if sampled else (line_figure, swept)
    folder = subdirectory(out_dir, PLOTS)
    colors = {v: f"C{i % 10}" for i, v in enumerate(variants)}  # a variant keeps its colour
    paths = []
    mine = [r for r in rows if capacity is not None and r["metric"] == capacity.metric]
    if capacity is not None and not sampled and _probed(mine, capacity):
        paths.append(_save(capacity_figure(mine, capacity, colors), folder / "capacity.png"))
    for metric in plotted_metrics(rows):
        if not PLAIN_NAME.fullmatch(metric):  # it names a file: nothing outside plots/
            raise ConfigError(f"a metric name cannot name a plot file (letters, digits, "
                              f"'_', '.', '-'), found {shown(metric)}", str(out_dir / "runs"))
        top = is_headline(metric, headline)
        if not (top or every):
            continue
        mine = [r for r in rows if r["metric"] == metric]
        paths.append(_save(draw(mine, keys, colors, metric), folder / f"{metric}.png"))
        if top and _gridded(mine, swept) and not sampled:
            paths.append(_save(heatmap_figure(mine, swept, variants, metric),
                               folder / f"{metric}-heatmap.png"))
        diffs = [r for r in paired if r["metric"] == metric]
        if top and diffs:
            others = {v: c for v, c in colors.items() if v != diffs[0]["baseline"]}
            paths.append(_save(draw(diffs, keys, others, metric, diffs[0]["baseline"]),
                               folder / f"{metric}-paired.png"))
    return paths


# --- the plot kinds -----------------------------------------------------------------------


def line_figure(rows: list[dict[str, Any]], swept: list[str], colors: dict[str, str],
                metric: str, baseline: str | None = None) -> Any:
    """One panel per combination of ``swept[1:]``; x is ``swept[0]``, one series per variant."""
    x_key, facet_keys = swept[0], swept[1:]
    facets = _unique(tuple(_key(r.get(k)) for k in facet_keys) for r in rows)
    xs = _unique(_key(r.get(x_key)) for r in rows)
    x = axis.x_axis(x_key, [json.loads(v) for v in xs])
    titles = [axis.wrap(", ".join(f"{k}={_shown(v)}" for k, v in zip(facet_keys, facet)), 44)
              for facet in facets]
    fig, axes = _figure(len(facets), _title(metric, baseline), len(colors),
                        _lines_of(x.labels), titled=_lines_of(titles) if facet_keys else 0)
    for ax, facet, title in zip(axes, facets, titles):
        for slot, (variant, color) in enumerate(colors.items()):
            series = {_key(r.get(x_key)): r for r in rows if r["variant"] == variant
                      and tuple(_key(r.get(k)) for k in facet_keys) == facet}
            _series(ax, x, xs, series, variant, color, _dodge(x, slot, len(colors)),
                    baseline is not None)
        _finish(ax, metric, [r for r in rows if tuple(_key(r.get(k)) for k in facet_keys)
                             == facet], baseline)
        x.apply(ax)
        if facet_keys:
            ax.set_title(title, fontsize=8)
    return _legend(fig)


def scatter_figure(rows: list[dict[str, Any]], sampled: list[str], colors: dict[str, str],
                   metric: str, baseline: str | None = None) -> Any:
    """One panel per sampled key: every point's mean against that key's value."""
    fig, axes = _figure(len(sampled), _title(metric, baseline), len(colors), 1, titled=0)
    for ax, key in zip(axes, sampled):
        for variant, color in colors.items():
            mine = sorted((r for r in rows if r["variant"] == variant and _finite(r["mean"])
                           and _finite(r.get(key))), key=lambda r: r[key])
            if mine:
                ax.errorbar([r[key] for r in mine], [r["mean"] for r in mine],
                            yerr=axis.error_bars(mine, baseline is not None), fmt="o",
                            markersize=3, capsize=2, linewidth=0.8, label=variant,
                            color=color)
        _finish(ax, metric, rows, baseline)
        axis.style_sampled_x(ax, key, [r[key] for r in rows if _finite(r.get(key))])
    return _legend(fig)


def heatmap_figure(rows: list[dict[str, Any]], swept: list[str], variants: list[str],
                   metric: str) -> Any:
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
    x = axis.x_axis(x_key, [json.loads(v) for v in xs])
    y = axis.x_axis(y_key, [json.loads(v) for v in ys])
    fig, axes = _figure(len(variants), f"{axis.metric_label(metric)}: mean", 0,
                        _lines_of(x.labels), colorbar=True)
    image = None
    for ax, variant in zip(axes, variants):
        image = ax.imshow(grids[variant], origin="lower", aspect="auto", cmap="viridis",
                          norm=norm)
        for j, line in enumerate(grids[variant]):
            for i, cell in enumerate(line):
                if _finite(cell):
                    ax.text(i, j, axis.value_text(metric, cell), ha="center", va="center",
                            fontsize=7, color="white" if norm(cell) < 0.5 else "black")
        ax.set_xticks(range(len(xs)), x.labels, fontsize=7)
        ax.set_yticks(range(len(ys)), y.labels, fontsize=7)
        ax.set_xlabel(x.label, fontsize=8)
        ax.set_ylabel(y.label, fontsize=8)
        ax.set_title(variant, fontsize=8)
    if image is not None:
        bar = fig.colorbar(image, cax=fig.add_axes(_colorbar_box(fig)))
        bar.formatter = _formatter(metric)
        bar.ax.tick_params(labelsize=7)
        bar.update_ticks()
    return fig


def capacity_figure(rows: list[dict[str, Any]], limit: CapacityLimit,
                    colors: dict[str, str]) -> Any:
    """The probed metric against the key per variant, the limit as a horizontal line, and
    each variant's capacity (its largest value within the limit) as a star."""
    values = sorted({r[limit.key] for r in rows if _finite(r.get(limit.key))})
    x = axis.x_axis(limit.key, values)
    sign = "<=" if limit.upper else ">="
    title = f"capacity: largest {limit.key} with {limit.metric} {sign} " \
            f"{axis.value_text(limit.metric, limit.bound)}"
    fig, (ax,) = _figure(1, title, len(colors) + 1, 1, columns=1, width=5.2, titled=0)
    for variant, color in colors.items():
        mine = sorted((r for r in rows if r["variant"] == variant and _finite(r["mean"])),
                      key=lambda r: r[limit.key])
        if not mine:
            continue
        ax.errorbar([r[limit.key] for r in mine], [r["mean"] for r in mine],
                    yerr=axis.error_bars(mine, False), marker="o", markersize=3, capsize=3,
                    linewidth=1.2, color=color, label=_capacity_label(variant, limit))
        best = [r for r in mine if r[limit.key] == limit.within.get(variant)]
        if best:
            ax.plot([best[0][limit.key]], [best[0]["mean"]], marker="*", markersize=13,
                    color=color, markeredgecolor="black", linestyle="none", zorder=5)
            ax.annotate(f"{best[0][limit.key]:g}", (best[0][limit.key], best[0]["mean"]),
                        xytext=(0, 8), textcoords="offset points", ha="center", fontsize=8,
                        color=color, weight="bold")
    ax.axhline(limit.bound, color="crimson", linestyle="--", linewidth=1.2,
               label=f"limit: {limit.metric} {sign} "
                     f"{axis.value_text(limit.metric, limit.bound)}")
    axis.style_y(ax, limit.metric, [r["mean"] for r in rows if _finite(r["mean"])]
                 + [limit.bound], axis.metric_label(limit.metric), decades=1.0)
    x.apply(ax)
    return _legend(fig)


def _probed(rows: list[dict[str, Any]], limit: CapacityLimit) -> bool:
    """Whether ``rows`` are the search's probes: every variant's capacity among them (a
    ``capacity.csv`` left by an earlier search of the directory does not fit a new sweep)."""
    probes = {(r["variant"], r.get(limit.key)) for r in rows}
    return bool(rows) and all((variant, within) in probes for variant, within
                              in limit.within.items() if within is not None)


def _gridded(rows: list[dict[str, Any]], swept: list[str]) -> bool:
    """Whether a heatmap adds to the line plot: two swept keys of at least
    :data:`HEATMAP_LEVELS` values each (with fewer the line plot's panels show every cell)."""
    return len(swept) == 2 and all(len(_unique(_key(r.get(k)) for r in rows))
                                   >= HEATMAP_LEVELS for k in swept)


def _capacity_label(variant: str, limit: CapacityLimit) -> str:
    within = limit.within.get(variant)
    return f"{variant}: capacity {'none' if within is None else f'{within:g}'} (star)"


# --- pieces -------------------------------------------------------------------------------


def _series(ax: Any, x: axis.XAxis, xs: list[str], series: dict[str, dict[str, Any]],
            label: str, color: str, dodge: float, signed: bool) -> None:
    """A variant's means and intervals: joined by a line over a numeric key only."""
    points = [(x.positions[i], series[v]) for i, v in enumerate(xs) if v in series
              and _finite(series[v]["mean"])]
    if not points:
        return
    ax.errorbar([p + dodge for p, _ in points], [r["mean"] for _, r in points],
                yerr=axis.error_bars([r for _, r in points], signed), marker="o",
                markersize=3.5, capsize=3, linewidth=0 if x.categorical else 1.2,
                elinewidth=1.0, label=label, color=color)


def _finish(ax: Any, metric: str, rows: list[dict[str, Any]], baseline: str | None) -> None:
    """The y axis over ``rows`` (means and intervals), a zero line for paired differences,
    and a light grid."""
    values = [r["mean"] for r in rows if _finite(r["mean"])]
    if baseline is not None:  # the intervals too: a difference may straddle zero
        values += [v for r in rows for v in (r["ci_low"], r["ci_high"]) if _finite(v)]
        ax.axhline(0.0, color="grey", linewidth=0.8)
    axis.style_y(ax, metric, values, axis.metric_label(metric, baseline))
    ax.grid(True, axis="y", linewidth=0.4, alpha=0.5)


def _dodge(x: axis.XAxis, slot: int, slots: int) -> float:
    """The offset of a variant's points at a categorical value, so they do not overlap."""
    if not x.categorical or slots < 2:
        return 0.0
    return (slot - (slots - 1) / 2) * min(0.6 / slots, 0.2)


def _title(metric: str, baseline: str | None) -> str:
    if baseline:
        return f"{metric}: variant - {baseline}, mean of paired differences and 95% interval"
    if percentile_q(metric) is not None:
        return f"{metric}: from the replications' merged histograms, 95% bootstrap interval"
    return f"{metric}: mean over replications and 95% interval"


def _figure(panels: int, title: str, legend: int, tick_lines: int, colorbar: bool = False,
            columns: int = COLUMNS, width: float | None = None, titled: int = 1
            ) -> tuple[Any, list[Any]]:
    """A grid of ``panels`` with fixed margins in inches (a layout engine would double the
    drawing time): the wrapped ``title`` on top, room for the panels' own titles of
    ``titled`` lines, a ``legend`` of that many entries below."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    cols = min(columns, max(1, panels))
    rows = math.ceil(panels / cols)
    panel_w = width or PANEL[0]
    fig_w = panel_w * cols + (0.9 if colorbar else 0.0)
    title = axis.wrap(title, int(fig_w * 13))
    legend_rows = math.ceil(legend / _legend_columns(legend, fig_w)) if legend else 0
    # room for labels of up to 30 characters; _save fits the real ones (never more rows)
    top = 0.2 + 0.19 * (title.count("\n") + 1) + 0.16 * titled
    bottom = 0.45 + 0.13 * tick_lines + (0.2 * legend_rows + 0.1 if legend else 0.0)
    gap = 0.45 + 0.13 * tick_lines + 0.16 * titled  # ticks, x label, the next row's titles
    fig_h = rows * PANEL[1] + (rows - 1) * gap + top + bottom
    fig = Figure(figsize=(fig_w, fig_h))
    margins = {"left": 0.85 / fig_w, "right": 1 - (1.05 if colorbar else 0.2) / fig_w,
               "bottom": bottom / fig_h, "top": 1 - top / fig_h, "wspace": 0.9 / panel_w,
               "hspace": gap / PANEL[1]}
    with rc_context({"axes.titley": 1.0}):  # titles at a fixed height: no search per draw
        axes = fig.subplots(rows, cols, squeeze=False, gridspec_kw=margins).ravel().tolist()
    for ax in axes[panels:]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=9, y=1 - 0.12 / fig_h, va="top")
    return fig, axes[:panels]


def _legend_columns(entries: int, width: float, longest: int = 30) -> int:
    """Legend columns that fit in ``width`` inches, entries of ``longest`` characters."""
    return max(1, min(entries, int(width // (0.45 + 0.065 * longest))))


def _legend(fig: Any) -> Any:
    """One legend for the figure, below its panels (in the room :func:`_figure` left)."""
    handles: dict[str, Any] = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    fig.legend(list(handles.values()), list(handles), loc="lower center",
               ncol=_legend_columns(len(handles), fig.get_figwidth(),
                                    max(map(len, handles), default=1)), fontsize=7,
               frameon=False, bbox_to_anchor=(0.5, 0.04 / fig.get_figheight()))
    return fig


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    return path


def _colorbar_box(fig: Any) -> list[float]:
    """Where a heatmap's colour bar goes: right of the panels, in figure fractions."""
    width = fig.get_figwidth()
    params = fig.subplotpars
    return [params.right + 0.15 / width, params.bottom, 0.15 / width,
            params.top - params.bottom]


def _formatter(metric: str) -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _: axis.value_text(metric, v))


def _norm(values: list[float]) -> Any:
    """A shared colour scale: logarithmic when positive values span 1.5 decades."""
    from matplotlib.colors import LogNorm, Normalize

    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if axis.y_scale(values)[0] == "log":
        return LogNorm(lo, hi)
    return Normalize(lo, hi if hi > lo else lo + 1)


def _lines_of(labels: list[str]) -> int:
    return max((label.count("\n") + 1 for label in labels), default=1)


def _shown(value: str) -> str:
    decoded = json.loads(value)
    if isinstance(decoded, dict):
        return " ".join(f"{k}={v}" for k, v in decoded.items())
    return str(decoded)


def _key(value: Any) -> str:
    """A hashable, order-preserving identity of a swept value (values may be mappings)."""
    return json.dumps(value, sort_keys=True)


def _unique(items: Any) -> list:
    return list(dict.fromkeys(items))


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
