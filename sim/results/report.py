"""Readable tables of an experiment's summary rows, and the report of an output directory.

:func:`format_table` is the terminal table. :func:`write_report` turns the results of a
directory into every derived file: ``summary.csv``, ``paired.csv`` (with a baseline),
``lock_stat.txt``, the plots (:mod:`sim.plots`) and ``report.md``, which embeds the plots
beside the tables. ``vmapsim run`` calls it at the end, ``vmapsim report DIR`` on demand.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sim.config.loader import ConfigError
from sim.config.units import format_ns
from sim.results import plots as plotting
from sim.results.dirlock import exclusive
from sim.results.lib_test_vmalloc_log import write_log as write_test_vmalloc_log
from sim.results.lock_stat import write_lock_stat
from sim.results.paired import paired_rows
from sim.results.stats import FEW
from sim.results.store import (
    Manifest,
    read_manifest,
    read_run_checked,
    run_path,
    summary_rows,
    write_atomic,
    write_csv,
    write_paired,
    write_runs,
    write_summary,
)
from sim.results.table import TABLE_METRICS, format_table
from sim.results.uncertainty import sensitivities, win_fractions

__all__ = ["REPORT", "TABLE_METRICS", "format_table", "report_directory", "write_report",
           "write_tables"]

# --- the report of an output directory ---------------------------------------------------------

REPORT = "report.md"
CAPACITY = "capacity.csv"
"""Written by a capacity search (:mod:`sim.experiment.capacity`); its plot is drawn from it."""


@dataclass
class Report:
    """What :func:`write_report` computed and wrote."""

    rows: list[dict[str, Any]]
    paired: list[dict[str, Any]]
    plots: list[Path] = field(default_factory=list)
    wins: list[dict[str, Any]] = field(default_factory=list)
    sensitivity: list[dict[str, Any]] = field(default_factory=list)
    path: Path | None = None


def write_tables(out_dir: Path, manifest: Manifest, results: list[dict[str, Any]]) -> Report:
    """Write ``summary.csv``, ``paired.csv`` (with a baseline) and ``lock_stat.txt``."""
    swept = manifest.swept_keys
    rows = summary_rows(results, swept)
    paired = paired_rows(results, swept, manifest.variants, manifest.baseline) \
        if manifest.baseline else []
    write_summary(out_dir, rows, swept)
    write_runs(out_dir, results, swept)
    if manifest.baseline:
        write_paired(out_dir, paired, swept)
    write_lock_stat(out_dir, results, swept)
    write_test_vmalloc_log(out_dir, results, swept)
    report = Report(rows, paired)
    if manifest.sampled_keys:
        metric, goal = manifest.rank
        report.wins = win_fractions(rows, swept, manifest.sampled_keys, manifest.variants,
                                    metric, goal)
        report.sensitivity = sensitivities(rows, swept, manifest.sampled_keys, report.wins,
                                           metric, goal)
        fixed = [k for k in swept if k not in manifest.sampled_keys]
        write_csv(out_dir / "wins.csv", report.wins,
                  [*fixed, "variant", "win_fraction", "samples"])
        write_csv(out_dir / "sensitivity.csv", report.sensitivity,
                  [*fixed, "key", "winner", "runner_up", "spearman_rho", "samples"])
    return report


def write_report(out_dir: Path, manifest: Manifest, results: list[dict[str, Any]],
                 plots: bool = True, every: bool = False) -> Report:
    """Write the tables, the plots (when ``plots``: the headline metrics' or, with ``every``,
    all of them) and ``report.md`` of ``results``."""
    report = write_tables(out_dir, manifest, results)
    if plots:
        report.plots = plotting.write_plots(
            out_dir, report.rows, manifest.swept_keys, manifest.variants, report.paired,
            plotting.HEADLINE, manifest.sampled_keys, every=every,
            capacity=capacity_limit(out_dir, manifest.swept_keys))
    report.path = out_dir / REPORT
    lock_stat = (out_dir / "lock_stat.txt").read_text()
    write_atomic(report.path, markdown(manifest, results, report, lock_stat, out_dir, plots,
                                       every))
    return report


def capacity_limit(out_dir: Path, swept: list[str]) -> plotting.CapacityLimit | None:
    """The limit and capacities of ``DIR/capacity.csv`` (a capacity search of the one swept
    key), for its plot; None without that file or when it does not fit the sweep."""
    try:
        with (out_dir / CAPACITY).open(newline="") as handle:
            table = list(csv.DictReader(handle))
        key = swept[0] if len(swept) == 1 else None
        if not table or key is None or key not in table[0]:
            return None
        within = {r["variant"]: float(r[key]) if r[key] else None for r in table}
        return plotting.CapacityLimit(key, table[0]["metric"], float(table[0]["bound"]),
                                      table[0]["limit"] == "max", within)
    except (OSError, ValueError, KeyError, csv.Error):
        return None


def report_directory(out_dir: Path, plots: bool = True, every: bool = False
                     ) -> tuple[Manifest, Report, int]:
    """``vmapsim report DIR``: rebuild the report from the run files; also the number of runs
    the manifest lists that have no usable result file."""
    manifest = read_manifest(out_dir)
    if manifest is None:
        raise ConfigError("not a vmapsim output directory (no readable experiment.json)",
                          str(out_dir))
    if plots:
        plotting.require(str(out_dir))
    with exclusive(out_dir):
        return _report(out_dir, manifest, plots, every)


def _report(out_dir: Path, manifest: Manifest, plots: bool, every: bool
            ) -> tuple[Manifest, Report, int]:
    found = []
    for run_id in manifest.run_ids:
        result, problem = read_run_checked(out_dir, run_id)
        if problem is not None:
            damaged = sum(read_run_checked(out_dir, r)[1] is not None for r in manifest.run_ids)
            raise ConfigError(f"{problem}; {damaged} run file(s) cannot be used (rerun the "
                              "experiment with --resume to recompute them)",
                              str(run_path(out_dir, run_id)))
        found.append(result)
    results = [r for r in found if r is not None]
    return (manifest, write_report(out_dir, manifest, results, plots, every),
            len(found) - len(results))


def markdown(manifest: Manifest, results: list[dict[str, Any]], report: Report,
             lock_stat: str, out_dir: Path, plots: bool, every: bool = False) -> str:
    """``report.md``: summary, headline and paired tables, failures, plots, lock_stat."""
    ok = sum(r.get("status") == "ok" for r in results)
    failed = [r for r in results if r.get("status") != "ok"]
    out = [f"# {manifest.name}", ""]
    if manifest.description:
        out += [manifest.description, ""]
    out += [f"* runs: {ok} ok, {len(failed)} failed, {len(manifest.run_ids) - len(results)} "
            f"missing, of {len(manifest.run_ids)} ({manifest.replications} replications per "
            f"point and variant; root seed {manifest.seed})",
            f"* variants: {', '.join(manifest.variants)}"
            + (f" (baseline: {manifest.baseline})" if manifest.baseline else ""),
            f"* swept: {', '.join(manifest.swept_keys) or 'nothing'}",
            "* tables: [summary.csv](summary.csv) (every metric),"
            " [runs.csv](runs.csv) (every replication's value)"
            + (", [paired.csv](paired.csv)" if manifest.baseline else "")
            + ", [lock_stat.txt](lock_stat.txt); one JSON file per run under `runs/`", ""]
    if manifest.replications < FEW:
        out += [f"**{manifest.replications} replication(s) per point: the intervals are rough "
                f"(fewer than {FEW}); rerun with more before reading a difference.**", ""]
    out += ["## Headline metrics", "",
            "Means over replications; `±` is the half-width of the 95% Student-t interval "
            "(cut at zero); percentiles are read from the replications' histograms merged, "
            "with a bootstrap interval.", ""]
    out += _markdown_table(report.rows, manifest.swept_keys, ["variant"], signed=False)
    if manifest.baseline:
        out += ["", f"## Paired differences: variant - {manifest.baseline}", "",
                "Each replication of a variant minus the same replication of the baseline "
                "(same random streams), then the mean and 95% t-interval of those "
                "differences. An interval that excludes 0 is marked `*`.", ""]
        out += _markdown_table(report.paired, manifest.swept_keys, ["variant"], signed=True)
    if manifest.sampled_keys:
        out += ["", *_uncertainty_section(manifest, report)]
    if failed:
        out += ["", "## Failed runs", ""]
        out += [f"* `{r['run_id']}` {_describe(r, manifest.swept_keys)}: "
                f"{r.get('error', 'unknown error')}" for r in failed]
    out += ["", "## Plots", ""] + _plot_section(report.plots, out_dir, plots, manifest, every)
    out += ["", "## lock_stat", "", "In the format of the kernel's `/proc/lock_stat` (lock_stat "
            "version 0.4), one block per variant and point: per-run means over the "
            "replications (counts rounded), min and max columns over the runs, times in us; "
            "waittime-avg is per contention, bounces count acquisitions and contentions by "
            "another CPU than the lock's last acquirer; lockdep's class names (`&vn->busy.lock` "
            "for every vmap node's). Lines starting with `# vmapsim` are the model's comments.",
            "", "<details><summary>lock_stat.txt</summary>", "", "```",
            lock_stat.rstrip("\n"), "```", "", "</details>", ""]
    return "\n".join(out)


def _uncertainty_section(manifest: Manifest, report: Report) -> list[str]:
    """Win fractions and the most influential sampled key, per point of the other keys."""
    metric, goal = manifest.rank
    fixed = [k for k in manifest.swept_keys if k not in manifest.sampled_keys]
    out = [f"## Robustness: which variant wins across {', '.join(manifest.sampled_keys)}", "",
           f"Over the Latin-hypercube samples, the fraction in which each variant has the "
           f"{'highest' if goal == 'max' else 'lowest'} `{metric}` "
           "([wins.csv](wins.csv)), and the Spearman correlation between each sampled key "
           "and the winner's margin over the runner-up ([sensitivity.csv](sensitivity.csv)).",
           "", "| " + " | ".join([*fixed, "variant", "wins", "most influential key (rho)"])
           + " |", "|" + "---|" * (len(fixed) + 3)]
    for w in report.wins:
        same = [s for s in report.sensitivity if all(s.get(k) == w.get(k) for k in fixed)]
        top = max(same, key=lambda s: abs(s["spearman_rho"]) if _finite(s["spearman_rho"])
                  else -1.0, default=None)
        influence = f"{top['key']} ({top['spearman_rho']:+.2f})" if top and \
            _finite(top["spearman_rho"]) else "-"
        out.append("| " + " | ".join([*(str(w.get(k)) for k in fixed), w["variant"],
                                      f"{w['win_fraction']:.0%}", influence]) + " |")
    return out


def _markdown_table(rows: list[dict[str, Any]], swept: list[str], lead: list[str],
                    signed: bool) -> list[str]:
    by_group: dict[tuple, dict[str, dict[str, Any]]] = {}
    for row in rows:
        key = (*(row[k] for k in lead), *(json.dumps(row.get(k)) for k in swept))
        by_group.setdefault(key, {})[row["metric"]] = row
    if not by_group:
        return ["(no finished runs)"]
    header = [*lead, *(k.split(".")[-1] for k in swept), *(label for _, label, _ in
                                                            TABLE_METRICS)]
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key, metrics in by_group.items():
        cells = [*map(str, key[:len(lead)]), *(str(json.loads(v)) for v in key[len(lead):])]
        for name, _, unit in TABLE_METRICS:
            row = metrics.get(name)
            cells.append(_md_cell(row, unit, signed) if row else "-")
        out.append("| " + " | ".join(cells) + " |")
    return out


def _md_cell(row: dict[str, Any], unit: str, signed: bool) -> str:
    mean, low, high = row["mean"], row["ci_low"], row["ci_high"]
    if not _finite(mean):
        return "-"
    text = _value(mean, unit, signed)
    if _finite(low) and _finite(high):
        text += f" ± {_value((high - low) / 2, unit, False)}"
        if signed and (low > 0 or high < 0):
            text += " *"
    return text


def _value(value: float, unit: str, signed: bool) -> str:
    sign = "+" if signed and value > 0 else ""
    if unit == "ns":
        return sign + format_ns(value)
    magnitude = abs(value)
    if magnitude >= 1e6:
        return f"{sign}{value / 1e6:.3g}M"
    if magnitude >= 1e3:
        return f"{sign}{value / 1e3:.3g}k"
    return f"{sign}{value:.3g}"


def _plot_section(pngs: list[Path], out_dir: Path, plots: bool, manifest: Manifest,
                  every: bool) -> list[str]:
    if not plots and plotting.available():
        return ["Plots were not drawn (`--no-plots`; `vmapsim report DIR` draws them)."]
    if not plots:
        return ["Plots were not drawn (they need matplotlib: `pip install 'vmapsim[plots]'`, "
                "then `vmapsim report DIR`)."]
    if not manifest.swept_keys:
        return ["Nothing is swept, so there is nothing to plot against."]
    which = ("Every metric" if every else "Each headline metric (`--plots all` draws every "
             "metric)")
    if manifest.sampled_keys:
        out = [f"{which} against each sampled key (one panel per key, pooled over the other "
               "swept keys), one colour per variant, with 95% interval bars; metrics that are "
               "zero everywhere are left out."]
    else:
        out = [f"{which} against `{manifest.swept_keys[0]}`, one series per variant, with 95%"
               " interval bars; metrics that are zero everywhere are left out."]
    for png in pngs:
        rel = png.relative_to(out_dir).as_posix()
        out += ["", f"![{png.stem}]({rel})"]
    return out


def _describe(result: dict[str, Any], swept: list[str]) -> str:
    spec = result.get("spec", {})
    point = spec.get("point", {})
    where = ", ".join(f"{k}={point.get(k)}" for k in swept)
    return (f"{spec.get('config', {}).get('variant', {}).get('name', '?')}"
            + (f" {where}" if where else "") + f" replication {spec.get('replication', '?')}")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
