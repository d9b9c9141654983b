"""The terminal table of an experiment: one line per variant and point, at most 120 columns.

Columns: the variant, the swept keys that take more than one value (named by their dotted key
without its ``workload.``/``machine.`` root), then the headline metrics with their units, and
with a baseline the paired difference of throughput against it (``*``: its 95% interval
excludes 0). A workload kind adds its own headline (a replay's lateness, test_vmalloc's case
times), and each kind of violation some run saw gets a column after ``violations``. Variants
keep the order the experiment gives them; points sort by value. When the columns do not fit
the width, the least important metrics are left out, and the last line says which (every
metric is in ``summary.csv``).
"""

from __future__ import annotations

import json
import math
import textwrap
from typing import Any

from sim.config.units import canonical, format_ns

TABLE_METRICS = [
    ("ops_per_sec", "ops/s", "rate"),
    ("vmalloc_p99_ns", "vmalloc p99", "ns"),
    ("vfree_p99_ns", "vfree p99", "ns"),
    ("set_memory_p99_ns", "set_mem p99", "ns"),
    ("purge_mean_ns", "purge", "ns"),
    ("vmap_area_lock_wait_ns", "lock wait", "ns"),
    ("purges", "purges", "count"),
    ("alloc_failures", "fails", "count"),
    ("safety_violations", "violations", "count"),
]
"""The headline metrics: (metric, column header, unit); ``purge`` is the mean time of one
``__purge_vmap_area_lazy``, ``lock wait`` the mean wait per ``vmap_area_lock`` acquisition,
``fails`` allocation failures, ``violations`` the safety checker's count."""
KIND_METRICS = [("rt_latency_p99_ns", "rt p99", "ns"), ("rt_latency_max_ns", "rt max", "ns"),
                ("replay_late_mean_ns", "late mean", "ns"),
                ("replay_progress", "replayed", "fraction")]
"""A kind's own headline (and the rt_probe's), shown when some run measured it;
test_vmalloc's ``<case>_avg_usec`` columns are added the same way (``KIND_SUFFIX``)."""
KIND_SUFFIX = ("_avg_usec", "usec")
SAFETY_LABELS = {"reuse_before_flush": "reuse<flush", "unmap_aliases_unflushed": "unflushed",
                 "use_after_free": "UAF", "double_free": "double free",
                 "lazy_nr_underflow": "nr underflow", "never_purged": "never purged",
                 "model_assumption": "model"}
"""Columns for the kinds of violation a run saw (only those some row has), by kind."""
WIDTH = 120
"""Columns of the terminal the table must fit."""
LEAVE_FIRST = ("purges", "alloc_failures", "vfree_p99_ns", "set_memory_p99_ns",
               "vmap_area_lock_wait_ns", "purge_mean_ns",
               *(f"safety_{kind}" for kind in SAFETY_LABELS))
"""The metrics left out first when the table is too wide (in this order)."""


def format_table(rows: list[dict[str, Any]], swept: list[str],
                 variants: list[str] | None = None, paired: list[dict[str, Any]] | None = None,
                 baseline: str | None = None, width: int = WIDTH) -> str:
    """The table of summary ``rows`` (and the ``paired`` rows against ``baseline``)."""
    groups, shown_as = _groups(rows, swept)
    keys = [k for k in swept if len({_key((shown_as[g][swept.index(k) + 1],))
                                      for g in groups}) > 1]
    metrics = [m for m in TABLE_METRICS + _kind_metrics(rows)
               if any(m[0] in g for g in groups.values())] or TABLE_METRICS[:1]
    differences = _differences(paired or [], swept) if baseline else None
    order = {name: i for i, name in enumerate(variants or [])}
    ordered = sorted(groups, key=lambda g: (tuple(_order(v) for v in shown_as[g][1:]),
                                            order.get(shown_as[g][0], len(order)),
                                            shown_as[g][0]))
    left_out: list[str] = []
    labels = {name: label for name, label, _ in metrics}
    while True:
        lines = [_header(keys, metrics, baseline)]
        for group in ordered:
            lines.append(_line(group, shown_as[group], swept, keys, metrics, groups[group],
                               differences))
        text = _render(lines)
        droppable = [m for m in LEAVE_FIRST if m in {x[0] for x in metrics}]
        if len(text.split("\n", 1)[0]) <= width or not droppable:
            break
        left_out.append(droppable[0])
        metrics = [m for m in metrics if m[0] != droppable[0]]
    if left_out:
        note = f"(left out to fit {width} columns: {', '.join(labels[m] for m in left_out)}; " \
               "every metric is in summary.csv)"
        text += "\n" + "\n".join(textwrap.wrap(note, width))
    return text


def _groups(rows: list[dict[str, Any]], swept: list[str]
            ) -> tuple[dict[tuple, dict[str, dict[str, Any]]], dict[tuple, tuple]]:
    by_group: dict[tuple, dict[str, dict[str, Any]]] = {}
    shown_as: dict[tuple, tuple] = {}  # a group's key -> its variant and swept values
    for row in rows:
        values = (row["variant"], *(row.get(k) for k in swept))
        key = _key(values)
        shown_as.setdefault(key, values)
        by_group.setdefault(key, {})[row["metric"]] = row
    return by_group, shown_as


def _key(values: tuple) -> tuple:
    return tuple(json.dumps(v, sort_keys=True, default=str) for v in values)


def _kind_metrics(rows: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    names = {row["metric"] for row in rows}
    cases = sorted({n for n in names if n.endswith(KIND_SUFFIX[0])})
    seen = [kind for kind in SAFETY_LABELS if any(
        row["metric"] == f"safety_{kind}" and row["mean"] for row in rows)]
    measured = {row["metric"] for row in rows if row["mean"] == row["mean"]}  # not NaN
    return [m for m in KIND_METRICS if m[0] in measured] + [
        (n, n.removesuffix(KIND_SUFFIX[0]).removesuffix("_test").replace("_alloc", ""),
         KIND_SUFFIX[1]) for n in cases] + [
        (f"safety_{kind}", SAFETY_LABELS[kind], "count") for kind in seen]


def _differences(paired: list[dict[str, Any]], swept: list[str]) -> dict[tuple, dict]:
    """Throughput differences against the baseline, by variant and point."""
    return {_key((r["variant"], *(r.get(k) for k in swept))): r for r in paired
            if r["metric"] == "ops_per_sec"}


def _header(keys: list[str], metrics: list[tuple[str, str, str]], baseline: str | None
            ) -> list[str]:
    names = [k.removeprefix("workload.").removeprefix("machine.") for k in keys]
    return ["variant", *names, *(label for _, label, _ in metrics),
            *([f"vs {baseline}"] if baseline else [])]


def _line(group: tuple, values: tuple, swept: list[str], keys: list[str],
          metrics: list[tuple[str, str, str]], found: dict[str, dict[str, Any]],
          differences: dict[tuple, dict] | None) -> list[str]:
    cells = [str(values[0]), *(_value_text(values[swept.index(k) + 1]) for k in keys)]
    for name, _, unit in metrics:
        r = found.get(name)
        cells.append(_cell(r["mean"], r["ci_low"], r["ci_high"], unit) if r else "-")
    if differences is None:
        return cells
    return cells + [_difference(differences.get(group), found.get("ops_per_sec"))]


def _difference(row: dict[str, Any] | None, own: dict[str, Any] | None) -> str:
    """``+12%*``: the paired throughput difference relative to the baseline's mean."""
    if row is None or own is None or not row["n"]:
        return "-"
    base = own["mean"] - row["mean"]
    if not base:
        return "-"
    significant = row["ci_low"] == row["ci_low"] and (row["ci_low"] > 0 or row["ci_high"] < 0)
    return f"{row['mean'] / base * 100:+.0f}%" + ("*" if significant else "")


def _render(lines: list[list[str]]) -> str:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                     enumerate(zip(line, widths))) for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def _cell(mean: float, low: float, high: float, unit: str) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    if unit == "ns":
        text = format_ns(mean)
    elif unit == "rate":
        text = f"{mean / 1e3:.1f}k" if mean >= 1e3 else f"{mean:.0f}"
    elif unit == "fraction":
        text = f"{mean * 100:.0f}%"
    elif unit == "usec":
        text = f"{mean:.3g}us"
    else:
        text = f"{mean:.0f}" if mean >= 10 else f"{mean:.1f}"
    if unit == "rate" and low == low and mean:
        text += f" ±{(high - low) / 2 / mean * 100:.0f}%"
    return text


def _order(value: Any) -> tuple[int, float, str]:
    """A sort key for a swept value of any documented form: numbers by value (a time or
    size with a unit by its ns or pages), then names (``auto``), then mappings (a size
    distribution) by their text."""
    number = canonical(value)
    if isinstance(number, float) and number == number:
        return (0, number, "")
    if isinstance(value, str):
        return (1, 0.0, value)
    return (2, 0.0, json.dumps(value, sort_keys=True, default=str))


def _value_text(value: Any) -> str:
    """A swept value in a cell: a mapping (a size distribution) as ``dist=fixed value=1``."""
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in value.items())
    return str(value)
