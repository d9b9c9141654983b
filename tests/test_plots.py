"""Rendering of each plot kind on small synthetic rows: scales, axis labels, tick labels with
units, error bars clipped at zero, one legend outside the panels, the capacity limit line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("matplotlib")

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402

from sim.results import plots  # noqa: E402
from sim.results.plot_axes import x_axis, y_scale  # noqa: E402

COLORS = {"base": "C0", "new": "C1"}
CPUS = [1, 2, 4, 8, 16, 32, 64]


def _row(variant: str, mean: float, low: float, high: float, **keys: Any) -> dict[str, Any]:
    return {"variant": variant, **keys, "mean": mean, "ci_low": low, "ci_high": high, "n": 2}


def _latencies(metric: str = "vmalloc_p99_ns") -> list[dict[str, Any]]:
    """A latency from 800 ns (1 CPU) to ~1 ms (64 CPUs), intervals reaching below zero."""
    return [_row(v, 800.0 * c ** (1.7 + (v == "new") * 0.1), -500.0, 1700.0 * c ** 1.8,
                 cpus=c, metric=metric, mode=m)
            for v in COLORS for m in ("a", "b") for c in CPUS]


def _drawn(fig: Any) -> Any:
    FigureCanvasAgg(fig).draw()
    return fig


def _ticks(axis: Any) -> list[str]:
    return [t.get_text() for t in axis.get_ticklabels() if t.get_text()]


def _lowest_bar(ax: Any) -> float:
    return min(y for c in ax.collections if isinstance(c, LineCollection)
               for segment in c.get_segments() for _, y in segment)


def _legend_outside(fig: Any) -> None:
    """One legend, on the figure, overlapping no panel."""
    renderer = fig.canvas.get_renderer()
    assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in fig.axes)
    box = fig.legends[0].get_window_extent(renderer)
    for ax in fig.axes:
        assert not box.overlaps(ax.get_window_extent(renderer))


def test_line_plot_log_scales_units_and_clipped_errors() -> None:
    fig = _drawn(plots.line_figure(_latencies(), ["cpus", "mode"], COLORS, "vmalloc_p99_ns"))
    axes = fig.axes
    assert len(axes) == 2  # one panel per mode
    for ax in axes:
        assert ax.get_yscale() == "log" and ax.get_xscale() == "log"
        assert ax.xaxis.get_transform().base == 2
        assert _ticks(ax.xaxis) == [str(c) for c in CPUS]  # 1, 2, 4 ... at their values
        assert ax.get_xlabel() == "cpus [count]"
        assert ax.get_ylabel() == "vmalloc_p99_ns [time]"
        labels = _ticks(ax.yaxis)
        assert labels and all(t.endswith(("ns", "us", "ms")) for t in labels)
        assert _lowest_bar(ax) >= 0  # ci_low is -500 ns: clipped at zero
        assert ax.get_title() in ("mode=a", "mode=b")
    assert "vmalloc_p99_ns" in fig.get_suptitle()
    _legend_outside(fig)


def test_categorical_key_gets_dodged_points_without_lines() -> None:
    levels = ["auto", 512, 32768]
    rows = [_row(v, 10.0 + i, 8.0, 12.0 + i, lazy_max_pages=level, metric="purges")
            for v in COLORS for i, level in enumerate(levels)]
    fig = _drawn(plots.line_figure(rows, ["lazy_max_pages"], COLORS, "purges"))
    (ax,) = fig.axes
    assert ax.get_xscale() == "linear" and ax.get_yscale() == "linear"
    assert _ticks(ax.xaxis) == ["auto", "512", "32768"]  # in the order given
    assert ax.get_xlabel() == "lazy_max_pages" and ax.get_ylabel() == "purges [count]"
    series = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert len(series) == 2 and all(line.get_linewidth() == 0 for line in series)
    base, new = (list(line.get_xdata()) for line in series)
    assert all(b < n for b, n in zip(base, new))  # side by side, not on top of each other
    _legend_outside(fig)


def test_heatmap_units_on_cells_and_colour_bar() -> None:
    rows = [_row(v, 1e3 * 10 ** (i + j), 0.0, 2e3 * 10 ** (i + j), cpus=c, nodes=n,
                 metric="purge_mean_ns")
            for v in COLORS for i, c in enumerate((1, 4, 16)) for j, n in enumerate((1, 2, 4))]
    fig = _drawn(plots.heatmap_figure(rows, ["cpus", "nodes"], list(COLORS), "purge_mean_ns"))
    panels, bar = fig.axes[:2], fig.axes[2]
    for ax in panels:
        assert ax.get_xlabel() == "cpus [count]" and ax.get_ylabel() == "nodes [count]"
        assert _ticks(ax.xaxis) == ["1", "4", "16"]
        cells = [t.get_text() for t in ax.texts]
        assert "1us" in cells and "10ms" in cells
    assert type(panels[0].images[0].norm).__name__ == "LogNorm"  # four decades
    assert any(t.endswith("ms") for t in _ticks(bar.yaxis))


def test_paired_plot_symlog_zero_line_and_signed_errors() -> None:
    rows = [{**_row("new", sign * 10.0 ** c, sign * 10.0 ** c - 10.0 ** (c + 1),
                    sign * 10.0 ** c + 10.0, cpus=2 ** c, metric="purge_mean_ns"),
             "baseline": "base"} for c, sign in zip(range(1, 6), (1, -1, 1, -1, -1))]
    fig = _drawn(plots.line_figure(rows, ["cpus"], {"new": "C1"}, "purge_mean_ns", "base"))
    (ax,) = fig.axes
    assert ax.get_yscale() == "symlog"
    assert ax.get_ylabel() == "purge_mean_ns - base [time]"
    assert any(t.startswith("-") and t.endswith("us") for t in _ticks(ax.yaxis))
    assert any(list(line.get_ydata()) == [0.0, 0.0] for line in ax.get_lines())  # zero line
    assert _lowest_bar(ax) < 0  # a difference may be negative: not clipped
    _legend_outside(fig)


def test_scatter_plot_of_sampled_keys() -> None:
    rows = [_row(v, 5e5 + a * 100, -1.0, 6e5 + a * 100, metric="ops_per_sec",
                 **{"machine.costs.ipi_handler_ns": a, "machine.costs.factor": b})
            for v in COLORS for a, b in ((500.0, 0.5), (1200.0, 0.9), (1900.0, 0.2))]
    keys = ["machine.costs.ipi_handler_ns", "machine.costs.factor"]
    fig = _drawn(plots.scatter_figure(rows, keys, COLORS, "ops_per_sec"))
    times, factors = fig.axes
    assert times.get_xlabel() == "machine.costs.ipi_handler_ns [time]"
    assert factors.get_xlabel() == "machine.costs.factor [count]"
    assert any(t.endswith("us") for t in _ticks(times.xaxis))
    for ax in (times, factors):
        assert ax.get_xscale() == ax.get_yscale() == "linear"
        assert ax.get_ylabel() == "ops_per_sec [ops/s]"
        assert any(t.endswith("k") for t in _ticks(ax.yaxis))
        assert _lowest_bar(ax) >= 0
        assert not [line for line in ax.get_lines() if line.get_linestyle() not in ("None", "")
                    and len(line.get_xdata()) > 2]  # points, no lines through samples
    _legend_outside(fig)


def test_capacity_plot_draws_the_limit_and_marks_the_capacity() -> None:
    rows = [_row(v, 300.0 * c * (1 + (v == "new")), 0.0, 400.0 * c, cpus=c,
                 metric="vmalloc_p99_ns") for v in COLORS for c in (1, 2, 4, 8, 16)]
    limit = plots.CapacityLimit("cpus", "vmalloc_p99_ns", 2000.0, True,
                                {"base": 4, "new": 2})
    fig = _drawn(plots.capacity_figure(rows, limit, COLORS))
    (ax,) = fig.axes
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_xlabel() == "cpus [count]" and ax.get_ylabel() == "vmalloc_p99_ns [time]"
    lines = {line.get_label(): line for line in ax.get_lines()}
    limit_line = lines["limit: vmalloc_p99_ns <= 2us"]
    assert list(limit_line.get_ydata()) == [2000.0, 2000.0]
    stars = [line for line in ax.get_lines() if line.get_marker() == "*"]
    assert sorted((line.get_xdata()[0], line.get_ydata()[0]) for line in stars) == \
        [(2, 1200.0), (4, 1200.0)]
    assert "capacity: largest cpus with vmalloc_p99_ns <= 2us" in fig.get_suptitle()
    assert "base: capacity 4 (star)" in [t.get_text() for t in fig.legends[0].get_texts()]
    _legend_outside(fig)


def test_capacity_plot_only_over_the_probes(tmp_path: Path) -> None:
    rows = [_row(v, 300.0 * c, 0.0, 400.0 * c, cpus=c, metric="vmalloc_p99_ns")
            for v in COLORS for c in (1, 2, 4)]
    found = plots.CapacityLimit("cpus", "vmalloc_p99_ns", 1000.0, True, {"base": 2, "new": 2})
    names = [p.name for p in plots.write_plots(tmp_path, rows, ["cpus"], list(COLORS), [],
                                               capacity=found)]
    assert names[0] == "capacity.png"
    stale = plots.CapacityLimit("cpus", "vmalloc_p99_ns", 1000.0, True, {"base": 3})
    assert "capacity.png" not in [p.name for p in plots.write_plots(
        tmp_path, rows, ["cpus"], list(COLORS), [], capacity=stale)]


def test_headline_by_default_every_metric_on_request(tmp_path: Path) -> None:
    rows = [_row(v, 1.0 + c, 0.5, 2.0 + c, cpus=c, metric=m) for v in COLORS
            for m in ("ops_per_sec", "purges", "vmalloc_avg_usec", "never") for c in (1, 2)]
    rows = [{**r, "mean": 0.0} if r["metric"] == "never" else r for r in rows]
    names = [p.name for p in plots.write_plots(tmp_path, rows, ["cpus"], list(COLORS), [])]
    assert names == ["ops_per_sec.png", "vmalloc_avg_usec.png"]
    names = [p.name for p in plots.write_plots(tmp_path, rows, ["cpus"], list(COLORS), [],
                                               every=True)]
    assert names == ["ops_per_sec.png", "purges.png", "vmalloc_avg_usec.png"]  # not 'never'


def test_heatmaps_for_two_keys_of_three_values(tmp_path: Path) -> None:
    grid = [_row(v, 1.0 + c * n, 0.5, 2.0 + c * n, cpus=c, nodes=n, metric="ops_per_sec")
            for v in COLORS for c in (1, 2, 4) for n in (1, 2, 4)]
    names = [p.name for p in plots.write_plots(tmp_path, grid, ["cpus", "nodes"],
                                               list(COLORS), [])]
    assert names == ["ops_per_sec.png", "ops_per_sec-heatmap.png"]
    small = [r for r in grid if r["nodes"] != 4]
    assert [p.name for p in plots.write_plots(tmp_path, small, ["cpus", "nodes"],
                                              list(COLORS), [])] == ["ops_per_sec.png"]


@pytest.mark.parametrize("values,scale", [
    ([800.0, 2e3, 9e5], "log"), ([800.0, 2e3], "linear"), ([0.0, 10.0, 1e4], "symlog"),
    ([-5.0, 3e3], "symlog"), ([-5.0, 3.0, 0.0], "linear"),
])
def test_y_scale(values: list[float], scale: str) -> None:
    assert y_scale(values)[0] == scale


@pytest.mark.parametrize("values,scale,labels", [
    ([1, 2, 4, 8], "log2", ["1", "2", "4", "8"]),
    ([100, 2000], "linear", ["100", "2000"]),
    ([10, 1000, 100000], "log", ["10", "1000", "100000"]),
    (["1ms", "10ms", "100ms"], "log", ["1ms", "10ms", "100ms"]),
    (["auto", 512], "category", ["auto", "512"]),
    ([{"dist": "fixed", "value": 1}, {"dist": "fixed", "value": 4}], "category",
     ["dist=fixed\nvalue=1", "dist=fixed\nvalue=4"]),
])
def test_x_axis_kinds(values: list[Any], scale: str, labels: list[str]) -> None:
    x = x_axis("k", values)
    assert x.scale == scale and x.labels == labels
