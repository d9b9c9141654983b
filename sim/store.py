"""The output directory: one JSON file per run (written atomically) and the summary table.

Layout of ``DIR``::

    DIR/runs/<run_id>.json   full resolved config, seed, metrics, lock_stat of one run
    DIR/summary.csv          tidy long form: variant, swept keys, metric, mean, ci_low, ci_high, n
    DIR/lock_stat.txt        lock statistics summed per variant and point
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from .stats import t_interval


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a crash leaves the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_run(out_dir: Path, result: dict[str, Any]) -> Path:
    path = out_dir / "runs" / f"{result['run_id']}.json"
    write_atomic(path, json.dumps(result, indent=1, sort_keys=True, default=_json_default))
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    raise TypeError(f"cannot serialise {type(value).__name__}")


def summary_rows(results: list[dict[str, Any]], swept: list[str]) -> list[dict[str, Any]]:
    """Group successful runs by (variant, point) and reduce each metric to a t-interval."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for result in results:
        if result.get("status") != "ok":
            continue
        spec = result["spec"]
        key = (spec["config"]["variant"]["name"],
               *(json.dumps(spec["point"].get(k)) for k in swept))
        groups.setdefault(key, []).append(result)
    rows = []
    for key, members in groups.items():
        for metric in members[0]["metrics"]:
            mean, low, high, n = t_interval([m["metrics"][metric] for m in members])
            row = {"variant": key[0]}
            row.update({k: json.loads(v) for k, v in zip(swept, key[1:])})
            row.update({"metric": metric, "mean": mean, "ci_low": low, "ci_high": high, "n": n})
            rows.append(row)
    return rows


def write_summary(out_dir: Path, rows: list[dict[str, Any]], swept: list[str]) -> Path:
    path = out_dir / "summary.csv"
    columns = ["variant", *swept, "metric", "mean", "ci_low", "ci_high", "n"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row[k]) for k in columns})
    write_atomic(path, buffer.getvalue())
    return path


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(float(value))
    return value


LOCK_STAT_HEADER = ("class name", "con-bounces", "contentions", "waittime-max",
                    "waittime-total", "acq-bounces", "acquisitions", "holdtime-max",
                    "holdtime-total")


def write_lock_stat(out_dir: Path, results: list[dict[str, Any]], swept: list[str]) -> Path:
    """Lock statistics summed over replications, in the column order of /proc/lock_stat
    (times in us; bounces are not modelled and shown as 0)."""
    out = ["lock_stat version 0.4 (vmapsim: summed over replications, times in us)"]
    groups: dict[str, dict[str, dict[str, float]]] = {}
    for result in results:
        if result.get("status") != "ok":
            continue
        spec = result["spec"]
        title = spec["config"]["variant"]["name"] + "".join(
            f" {k}={spec['point'].get(k)}" for k in swept)
        locks = groups.setdefault(title, {})
        for name, stat in result["lock_stat"].items():
            acc = locks.setdefault(name, {k: 0.0 for k in stat})
            for k, v in stat.items():
                acc[k] = max(acc[k], v) if k.endswith("_max") else acc[k] + v
    for title, locks in groups.items():
        out += ["", f"# {title}", "".join(f"{h:>16}" for h in LOCK_STAT_HEADER)]
        for name, s in locks.items():
            cells = [name, 0, int(s["contentions"]), s["wait_max"] / 1e3, s["wait_total"] / 1e3,
                     0, int(s["acquisitions"]), s["hold_max"] / 1e3, s["hold_total"] / 1e3]
            out.append("".join(f"{c:>16.2f}" if isinstance(c, float) else f"{c:>16}"
                               for c in cells))
    path = out_dir / "lock_stat.txt"
    write_atomic(path, "\n".join(out) + "\n")
    return path
