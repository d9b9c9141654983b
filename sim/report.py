"""Readable tables of an experiment's summary rows, for the terminal and for the README."""

from __future__ import annotations

import math
from typing import Any

from .units import format_ns

TABLE_METRICS = [
    ("ops_per_sec", "ops/s", "rate"),
    ("vmalloc_p99_ns", "vmalloc p99", "ns"),
    ("set_memory_p99_ns", "set_memory p99", "ns"),
    ("purge_mean_ns", "purge mean", "ns"),
    ("purges", "purges", "count"),
    ("vmap_area_lock_wait_ns", "vmap_area_lock wait", "ns"),
    ("alloc_failures", "alloc fails", "count"),
]


def _cell(mean: float, low: float, high: float, unit: str) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    if unit == "ns":
        text = format_ns(mean)
    elif unit == "rate":
        text = f"{mean / 1e3:.1f}k" if mean >= 1e3 else f"{mean:.0f}"
    else:
        text = f"{mean:.0f}" if mean >= 10 else f"{mean:.1f}"
    if unit == "rate" and low == low and mean:
        text += f" ±{(high - low) / 2 / mean * 100:.0f}%"
    return text


def format_table(rows: list[dict[str, Any]], swept: list[str],
                 metrics: list[tuple[str, str, str]] = TABLE_METRICS) -> str:
    """One line per (variant, point): the headline metrics, mean over replications."""
    by_group: dict[tuple, dict[str, dict[str, Any]]] = {}
    for row in rows:
        key = (row["variant"], *(row.get(k) for k in swept))
        by_group.setdefault(key, {})[row["metric"]] = row
    header = ["variant", *(k.split(".")[-1] for k in swept), *(label for _, label, _ in metrics)]
    lines = [header]
    for key in sorted(by_group, key=lambda k: (*k[1:], k[0])):
        cells = [str(v) for v in key]
        for name, _, unit in metrics:
            r = by_group[key].get(name)
            cells.append(_cell(r["mean"], r["ci_low"], r["ci_high"], unit) if r else "-")
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                     enumerate(zip(line, widths))) for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)
