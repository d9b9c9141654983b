"""The output directory: one JSON file per run (written atomically) and the tables.

Layout of ``DIR``::

    DIR/experiment.json      manifest: name, swept keys, variants, baseline, run ids
    DIR/runs/<run_id>.json   full resolved config, seed, metrics, lock_stat of one run, and
                             the checksum of its content (an edited file is not used)
    DIR/summary.csv          tidy long form: variant, swept keys, metric, mean, ci_low, ci_high, n
    DIR/paired.csv           with a baseline: variant - baseline, paired by replication
    DIR/lock_stat.txt        /proc/lock_stat per variant and point (:mod:`sim.results.lock_stat`)
    DIR/report.md, plots/    the report (:mod:`sim.report`, :mod:`sim.plots`)
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sim.config.loader import ConfigError, shown
from sim.config.versions import versions
from sim.results.stats import non_negative, percentile_q, pooled_percentile, t_interval
from sim.workloads.metric_names import RUN_METRICS


class OutputError(Exception):
    """The output directory could not be written in the middle of a sweep (a full disk, a
    lost mount): the finished run files are kept; the message says what to do next."""


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a crash leaves the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # as open() would create it (mkstemp makes 0600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    """This process's umask (read by setting it, then restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


MANIFEST = "experiment.json"
RUNS = "runs"
TABLES = ("summary.csv", "runs.csv", "paired.csv", "lock_stat.txt", "wins.csv", "sensitivity.csv",
          "capacity.csv", "report.md", "test_vmalloc.log")
"""Every table and report an experiment may write into its directory (``--force`` removes
them with the runs, so nothing of a previous experiment is left beside the new one)."""


@dataclass
class Manifest:
    """What an output directory holds: the experiment's identity and its runs, in spec order."""

    name: str
    description: str
    seed: int
    replications: int
    swept_keys: list[str]
    variants: list[str]
    baseline: str | None
    run_ids: list[str]
    sampled_keys: list[str] = field(default_factory=list)
    """Swept keys whose values are sampled (``lhs``): plotted as scatter, not as lines."""
    rank: list[str] = field(default_factory=lambda: ["ops_per_sec", "max"])
    """Metric and goal on which an uncertainty sweep ranks the variants."""
    versions: dict[str, str] = field(default_factory=versions)
    """What wrote the manifest: vmapsim, Python and the libraries results depend on."""


def write_manifest(out_dir: Path, manifest: Manifest) -> Path:
    path = out_dir / MANIFEST
    write_atomic(path, json.dumps(asdict(manifest), indent=1) + "\n")
    return path


def read_manifest(out_dir: Path) -> Manifest | None:
    """The manifest of ``out_dir``, or None when it has none (or an unreadable one). A run
    id that is not one (it would name a file outside ``DIR/runs``) is a :class:`ConfigError`."""
    try:
        data = json.loads((out_dir / MANIFEST).read_text())
        manifest = Manifest(**data)
    except (OSError, ValueError, TypeError):
        return None
    for i, run_id in enumerate(manifest.run_ids):
        if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
            raise ConfigError(f"run_ids[{i}]: expected a run id (16 hex digits), found "
                              f"{shown(run_id)}", str(out_dir / MANIFEST))
    return manifest


RUN_ID = re.compile(r"[0-9a-f]{16}")
"""A run id: the first 16 hex digits of its spec's SHA-256 (sim/simulation.py)."""
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
"""A name that may name a file in the output directory (a metric's plot)."""


def subdirectory(out_dir: Path, name: str) -> Path:
    """``out_dir/name``, created; refused when it is a symbolic link (what is written or
    deleted there would land wherever it points)."""
    folder = out_dir / name
    if folder.is_symlink():
        raise ConfigError(f"{name} is a symbolic link; what vmapsim writes must stay in the "
                          "output directory itself", str(out_dir))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


CHECKSUM = "checksum"
"""The key of a run file's checksum of its own content."""


def run_path(out_dir: Path, run_id: str) -> Path:
    if not RUN_ID.fullmatch(run_id):
        raise ConfigError(f"expected a run id (16 hex digits), found {shown(run_id)}",
                          str(out_dir / RUNS))
    return out_dir / RUNS / f"{run_id}.json"


def write_run(out_dir: Path, result: dict[str, Any]) -> Path:
    """One run's file, with the checksum of its content last. Keys keep their order (not
    sorted), so a result read back for ``--resume`` lists its metrics in the order of a fresh
    one, and the tables match."""
    path = run_path(out_dir, result["run_id"])
    content = json.loads(json.dumps(result, default=_json_default))  # as it will read back
    content.pop(CHECKSUM, None)
    content[CHECKSUM] = checksum_of(content)
    write_atomic(path, json.dumps(content, indent=1))
    return path


def checksum_of(result: dict[str, Any]) -> str:
    """``sha256:<hex>`` of a result's content (its keys sorted, the checksum left out)."""
    body = {k: v for k, v in result.items() if k != CHECKSUM}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def read_run(out_dir: Path, run_id: str) -> dict[str, Any] | None:
    """The result file of ``run_id``; None when missing or damaged (see :func:`run_problem`)."""
    result, _ = read_run_checked(out_dir, run_id)
    return result


def read_run_checked(out_dir: Path, run_id: str) -> tuple[dict[str, Any] | None, str | None]:
    """The result file of ``run_id``, or None and why: None, None when there is no file."""
    path = run_path(out_dir, run_id)
    try:
        result = json.loads(path.read_text())
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError):
        return None, "it is not readable JSON"
    problem = run_problem(result)
    if problem is None and result["run_id"] != run_id:
        problem = "it holds the result of another run id"
    return (None, problem) if problem else (result, None)


def run_problem(result: Any) -> str | None:
    """Why ``result`` (a parsed run file) cannot be used, or None: its checksum does not
    match its content (edited or damaged), or its content is not a run's record."""
    if not isinstance(result, dict):
        return "it is not a JSON object"
    if CHECKSUM not in result:
        return "it has no checksum (edited, or written by an older vmapsim)"
    if result[CHECKSUM] != checksum_of(result):
        return "its content does not match its checksum (edited or damaged)"
    spec = result.get("spec")
    if not (isinstance(result.get("run_id"), str) and isinstance(spec, dict)
            and isinstance(spec.get("point"), dict) and isinstance(spec.get("config"), dict)
            and isinstance(spec["config"].get("variant"), dict)
            and isinstance(spec["config"]["variant"].get("name"), str)):
        return "it does not hold a run id and the spec of a run"
    if result.get("status") == "failed":
        return None
    if result.get("status") != "ok":
        return "its status is neither ok nor failed"
    return _ok_problem(result)


def _ok_problem(result: dict[str, Any]) -> str | None:
    metrics = result.get("metrics")
    if not isinstance(metrics, dict) or not all(_number_or_none(v) for v in metrics.values()):
        return "its metrics are not a mapping of numbers"
    if any(name not in metrics for name in RUN_METRICS):
        return "it lacks metrics every run reports"
    stats = result.get("lock_stat")
    if not isinstance(stats, dict) or not all(
            isinstance(s, dict) and all(_number_or_none(v) for v in s.values())
            for s in stats.values()):
        return "its lock_stat is not a mapping of counters"
    histograms = result.get("histograms", {})
    if not isinstance(histograms, dict) or not all(_histogram(h) for h in histograms.values()):
        return "its histograms are not bucket counts"
    return None


def _histogram(value: Any) -> bool:
    """A histogram as ``Histogram.to_json`` writes it."""
    from sim.engine.metrics import LAST_BUCKET  # with numpy: imported when a file is read

    return (isinstance(value, dict) and isinstance(value.get("buckets"), dict)
            and all(k.isdigit() and int(k) <= LAST_BUCKET and isinstance(c, int)
                    for k, c in value["buckets"].items())
            and all(_number_or_none(value.get(k)) and value.get(k) is not None
                    for k in ("n", "total", "max")))


def _number_or_none(value: Any) -> bool:
    """A metric value as JSON gives it back: a number, or None for NaN."""
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


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
            mean, low, high, n = metric_interval(metric, members)
            row = {"variant": key[0]}
            row.update({k: json.loads(v) for k, v in zip(swept, key[1:])})
            row.update({"metric": metric, "mean": mean, "ci_low": low, "ci_high": high, "n": n})
            rows.append(row)
    return rows


def metric_interval(metric: str, members: list[dict[str, Any]]
                    ) -> tuple[float, float, float, int]:
    """One metric of a point's replications: a percentile from their merged histograms
    (bootstrap interval), anything else as a mean with its t-interval cut at zero."""
    pooled = percentile_q(metric)
    if pooled is not None and all(pooled[0] in m.get("histograms", {}) for m in members):
        return pooled_percentile([m["histograms"][pooled[0]] for m in members], pooled[1])
    return non_negative(t_interval([m["metrics"].get(metric) for m in members]))


def write_summary(out_dir: Path, rows: list[dict[str, Any]], swept: list[str]) -> Path:
    columns = ["variant", *swept, "metric", "mean", "ci_low", "ci_high", "n"]
    return write_csv(out_dir / "summary.csv", rows, columns)


def write_runs(out_dir: Path, results: list[dict[str, Any]], swept: list[str]) -> Path:
    """``runs.csv``: every finished run's value of every metric, one row each (tidy)."""
    rows = [{"run_id": r["run_id"], "variant": r["spec"]["config"]["variant"]["name"],
             **{k: json.dumps(r["spec"]["point"].get(k)) if isinstance(
                 r["spec"]["point"].get(k), (dict, list)) else r["spec"]["point"].get(k)
                for k in swept},
             "replication": r["spec"]["replication"], "metric": metric, "value": value}
            for r in results if r.get("status") == "ok"
            for metric, value in r["metrics"].items()]
    columns = ["run_id", "variant", *swept, "replication", "metric", "value"]
    return write_csv(out_dir / "runs.csv", rows, columns)


def write_paired(out_dir: Path, rows: list[dict[str, Any]], swept: list[str]) -> Path:
    """Paired differences (:func:`sim.paired.paired_rows`): variant - baseline per point."""
    columns = ["variant", "baseline", *swept, "metric", "mean", "ci_low", "ci_high", "n"]
    return write_csv(out_dir / "paired.csv", rows, columns)


def write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> Path:
    """A CSV table, atomically; floats in full precision, NaN as an empty cell."""
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
