"""Experiments: load, resolve catalog names, apply ``--set`` overrides, expand to run specs.

An experiment names a machine, a workload and variants, and sweeps any dotted key of the run
configuration (``cpus``, ``lazy_max_pages``, ``workload.background.count``,
``machine.costs.ipi_handler_ns``, ...), alone or in zipped groups (:mod:`sim.sweep`). Every
point of the sweep runs every variant for ``replications`` replications. Replication ``r`` of a
point uses the same random streams for every variant (common random numbers), so variant
comparisons are paired; the streams come from ``SeedSequence((seed, hash(point), r))``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from sim.config.fields import USER_INPUT
from sim.config.loader import (
    ConfigError,
    Document,
    Origins,
    anchor_trace,
    catalog_names,
    did_you_mean,
    dotted,
    load_reference,
    load_yaml,
    parse_override,
    resolve_reference,
    set_dotted,
    shown,
)
from sim.config.schema import ExperimentFile, RunConfig, Variant
from sim.experiment.limits import check_limits
from sim.experiment.sweep import Sweep, parse_sweep, set_factor, unsweep
from sim.experiment.validation import config_error, swept_path
from sim.mm.variants import resolve_variant
from sim.workloads.metric_names import metric_names

if TYPE_CHECKING:
    from sim.simulation import RunSpec

RUN_KEYS = ("cpus", "lazy_max_pages", "duration", "warmup", "ops")
"""Top-level experiment keys that are part of each run's configuration."""
SWEEP_ROOTS = RUN_KEYS + ("machine", "workload")


@dataclass
class Experiment:
    """A validated experiment, ready to expand into run specs."""

    name: str
    description: str
    file: str
    base: dict[str, Any]
    variants: list[dict[str, Any]]
    sweep: Sweep
    replications: int
    seed: int
    origins: Origins
    baseline: str | None = None
    rank: tuple[str, str] = ("ops_per_sec", "max")
    """(metric, goal) on which an uncertainty sweep ranks the variants."""
    verify: bool = False
    """``vmapsim run`` verifies the variants too (``verify:``, or a proposal among them)."""

    @property
    def swept_keys(self) -> list[str]:
        return self.sweep.keys

    @property
    def variant_names(self) -> list[str]:
        return [v["name"] for v in self.variants]

    def points(self) -> list[dict[str, Any]]:
        """The sweep's points (Cartesian product of its factors), in file order."""
        return self.sweep.points()

    def specs(self) -> list[RunSpec]:
        """Every run: points x variants x replications, each validated."""
        from sim.simulation import RunSpec  # the simulator, imported when runs are wanted

        out = []
        for point in self.points():
            point_key = _stable_hash(point)
            for variant in self.variants:
                config = self.resolve_point(point, variant)
                for rep in range(self.replications):
                    out.append(RunSpec(self.name, config, point, rep, self.seed,
                                       (self.seed, point_key, rep)))
        return out

    def resolve_point(self, point: dict[str, Any], variant: dict[str, Any]) -> dict[str, Any]:
        """The validated run configuration of one point and variant, as plain data."""
        data = copy.deepcopy(self.base)
        data["variant"] = variant
        for key, value in point.items():
            try:
                set_dotted(data, key, value, self.origins)
            except ConfigError as exc:  # the swept key is at fault: point at its sweep entry
                raise self.origins.error(exc.message, self.sweep.key_path(key)) from None
        anchor_trace(data["workload"], self._trace_origin(point))
        if data.get("cpus") is None:
            data["cpus"] = data["machine"].get("cpus") if isinstance(data["machine"], dict) \
                else None
        try:
            model = RunConfig.model_validate(data, context=USER_INPUT)
        except ValidationError as exc:
            raise config_error(exc, data, RunConfig, self.origins, point, self.sweep) from None
        config = model.model_dump(mode="json")
        self._check_finite(config, (), point)
        breach = check_limits(model)
        if breach is not None:
            raise self.origins.error(breach.message, swept_path(breach.path, point, self.sweep))
        return config

    def metric_names(self) -> tuple[str, ...]:
        """The metrics the runs report (those of the first point's first variant: the kind
        of workload decides them, and no sweep changes it)."""
        config = self.resolve_point(self.points()[0], self.variants[0])
        return metric_names(RunConfig.model_validate(config))

    def unknown_metric(self, metric: str) -> str:
        """The message for a metric the runs do not report."""
        return (f"unknown metric {shown(metric)}{did_you_mean(metric, list(self.metric_names()))}"
                " (see the README's metrics table)")

    def _trace_origin(self, point: dict[str, Any]) -> str:
        """The file (or ``--set``) that named the workload's trace: relative trace paths
        resolve against its directory."""
        key = "workload.trace"
        path = self.sweep.key_path(key) if key in point else ("workload", "trace")
        return self.origins.locate(path)[0]

    def _check_finite(self, node: Any, path: tuple, point: dict[str, Any]) -> None:
        """Refuse an infinite or NaN number anywhere in a run configuration (``.inf`` is valid
        YAML, and a cost or rate of infinity would stall a run)."""
        if isinstance(node, dict):
            for key, value in node.items():
                self._check_finite(value, path + (key,), point)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                self._check_finite(value, path + (i,), point)
        elif isinstance(node, float) and not math.isfinite(node):
            key = dotted(path)
            where = self.sweep.value_path(key, point[key]) if key in point else path
            raise self.origins.error(f"expected a finite number, found {node}", where)


def _stable_hash(point: dict[str, Any]) -> int:
    text = json.dumps(point, sort_keys=True, separators=(",", ":"))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def find_experiment(name: str) -> Path:
    """A path to an experiment file, or the built-in experiment of that name."""
    path = Path(name)
    if path.exists() and not path.is_dir():  # a FIFO or device is refused when read
        return path
    found = resolve_reference("experiments", name, None)
    if found is not None:
        return found
    known = catalog_names("experiments")
    raise ConfigError(f"no such file or built-in experiment{did_you_mean(name, known)} "
                      f"(built-in: {', '.join(known)})", name)


def load_experiment(path: str | Path, overrides: list[str] = ()) -> Experiment:
    """Load, resolve and validate an experiment file; apply ``key=value`` overrides."""
    file = find_experiment(str(path))
    doc = load_yaml(file)
    origins = Origins(default_file=doc.file)
    origins.add((), doc.file, doc.lines)
    parsed = [parse_override(text) for text in overrides]
    # machine.* and workload.* overrides wait until catalog names are resolved
    late = [(k, v) for k, v in parsed if k.split(".")[0] in ("machine", "workload") and "." in k]
    _apply_overrides(doc.data, [kv for kv in parsed if kv not in late], origins)
    try:
        top = ExperimentFile.model_validate(doc.data, context=USER_INPUT)
    except ValidationError as exc:
        raise config_error(exc, doc.data, ExperimentFile, origins) from None
    _check_name(top.name, origins)
    base = _resolve_base(top, doc, origins)
    raw_sweep = copy.deepcopy(top.sweep)
    _apply_overrides(base, late, origins, raw_sweep)
    sweep = parse_sweep(raw_sweep, origins, top.seed, len(top.variants) * top.replications)
    _check_sweep_keys(sweep, origins)
    variants = [validated_variant(entry, origins, ("variants", i))
                for i, entry in enumerate(top.variants)]
    names = [v["name"] for v in variants]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise origins.error(f"variant names must be unique; repeated: {repeated}",
                            ("variants",))
    if top.baseline is not None and top.baseline not in names:
        raise origins.error(f"unknown variant '{top.baseline}'{did_you_mean(top.baseline, names)}"
                            f" (variants: {', '.join(names)})", ("baseline",))
    experiment = Experiment(top.name, top.description, doc.file, base, variants, sweep,
                            top.replications, top.seed, origins, top.baseline,
                            (top.rank.metric, top.rank.goal),
                            top.verify if top.verify is not None
                            else any(isinstance(entry, dict) for entry in top.variants))
    for point in experiment.points():
        experiment.resolve_point(point, variants[0])
    if top.rank.metric not in experiment.metric_names():  # else wins.csv would be empty
        raise origins.error(experiment.unknown_metric(top.rank.metric), ("rank", "metric"))
    return experiment


NAME_MAX = 100
"""Characters of an experiment name (it names the default output directory)."""


def _check_name(name: str, origins: Origins) -> None:
    """The name is the default output directory (``results/<name>``): one plain path part,
    printable, at most ``NAME_MAX`` characters."""
    if (not name.strip() or name.startswith(".") or any(c in name for c in "/\\")
            or not name.isprintable() or len(name) > NAME_MAX):
        raise origins.error(f"expected a name usable as a directory name (printable, at most "
                            f"{NAME_MAX} characters, no '/', no leading '.'), found "
                            f"{shown(name)}", ("name",))


def _apply_overrides(data: dict[str, Any], overrides: list[tuple[str, Any]], origins: Origins,
                     sweep: dict[str, Any] | None = None) -> None:
    """Set each dotted key; ``sweep.<key>`` sets a sweep (``sweep.zip`` the zipped groups), a
    pinned key leaves the sweep (zipped groups included)."""
    if sweep is None and any(k.startswith("sweep.") for k, _ in overrides):
        data.setdefault("sweep", {})
        sweep = data["sweep"] if isinstance(data["sweep"], dict) else None
    elif sweep is None and isinstance(data.get("sweep"), dict):
        sweep = data["sweep"]
    for key, value in overrides:
        _mark_override(origins, key)
        if key.startswith("sweep.") and sweep is not None:
            set_factor(sweep, key.removeprefix("sweep."), value)  # swept keys keep their dots
            continue
        set_dotted(data, key, value, origins)
        if sweep is not None:
            unsweep(sweep, key)


def _mark_override(origins: Origins, key: str) -> None:
    """Errors in a value set by ``--set key`` point at the override, not at the file lines
    of the value it replaced (nor at the file for a mapping the override creates)."""
    path = ("sweep", key.removeprefix("sweep.")) if key.startswith("sweep.") \
        else tuple(key.split("."))
    for known in [p for p in origins.entries if p[:len(path)] == path]:
        del origins.entries[known]
    for n in range(1, len(path)):
        origins.entries.setdefault(path[:n], ("--set " + key, None))
    origins.entries[path] = ("--set " + key, None)


def _resolve_base(top: ExperimentFile, doc: Document, origins: Origins) -> dict[str, Any]:
    """Machine and workload as mappings (catalog names loaded), plus the run keys."""
    base: dict[str, Any] = {}
    for key, kind in (("machine", "cpus"), ("workload", "workloads")):
        ref = getattr(top, key)
        if isinstance(ref, str):
            ref_doc = load_reference(kind, ref, Path(doc.file), origins, (key,))
            origins.add((key,), ref_doc.file, ref_doc.lines)
            base[key] = ref_doc.data
        elif "base" in ref:
            base[key] = _based_on(kind, key, ref, doc, origins)
        else:
            base[key] = copy.deepcopy(ref)
    for key in RUN_KEYS:  # as written (units and all): each point is validated from these
        base[key] = copy.deepcopy(doc.data[key]) if key in doc.data else getattr(top, key)
    return base


def _based_on(kind: str, key: str, ref: dict[str, Any], doc: Document, origins: Origins
              ) -> dict[str, Any]:
    """``workload: {base: seed-i915, set_memory_rate: 200}``: the catalog entry ``base``
    names, with the other keys merged into it (mappings key by key, anything else replaced);
    errors in a merged key point at the experiment's line, in the rest at the entry's."""
    name = ref["base"]
    if not isinstance(name, str):
        raise origins.error(f"expected the name of a catalog {key}, found {shown(name)}",
                            (key, "base"))
    ref_doc = load_reference(kind, name, Path(doc.file), origins, (key, "base"))
    mine = {path: origins.entries[path] for path in list(origins.entries)
            if path[:1] == (key,) and len(path) > 1 and path[1] != "base"}
    origins.add((key,), ref_doc.file, ref_doc.lines)
    origins.entries.update(mine)
    return _merged(ref_doc.data, {k: v for k, v in ref.items() if k != "base"})


def _merged(under: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(under)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _check_sweep_keys(sweep: Sweep, origins: Origins) -> None:
    for key in sweep.keys:
        root = key.split(".")[0]
        if root not in SWEEP_ROOTS or (root in ("machine", "workload") and "." not in key):
            raise origins.error(f"cannot sweep '{key}'{did_you_mean(root, list(SWEEP_ROOTS))}; "
                                f"sweepable: {', '.join(RUN_KEYS)}, machine.<key>, "
                                "workload.<key>", sweep.key_path(key))


def validated_variant(entry: Any, origins: Origins, path: tuple) -> dict[str, Any]:
    """A preset name or a proposal mapping, resolved and validated (its defaults filled)."""
    data = resolve_variant(entry, origins, path)
    try:
        return Variant.model_validate(data).model_dump(mode="json")
    except ValidationError as exc:
        raise config_error(exc, data, Variant, origins, prefix=path) from None
