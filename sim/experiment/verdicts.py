"""What ``vmapsim verify`` reports: a variant's verdict as JSON and as text, its
counterexamples as Chrome traces, and the verdicts ``vmapsim run`` shows beside a workload's
observed violations, cached in the output directory (sim/experiment/verify.py explores)."""

from __future__ import annotations

import hashlib
import json
from contextlib import suppress
from pathlib import Path
from typing import Any

from sim.config.loader import ConfigError
from sim.config.schema import Scenario
from sim.engine.tracer import Tracer
from sim.experiment.verify import (
    DEFAULT_BUDGET,
    KINDS,
    VariantReport,
    run_schedule,
    scenario_named,
    scenarios,
    verify_all,
)
from sim.mm.variants import presets
from sim.results.store import subdirectory, write_atomic

TRACE_END_NS = 1e12
"""A counterexample's trace window ends here (past any scenario's run and drain)."""


def to_json(report: VariantReport, budget: int, seed: int) -> dict[str, Any]:
    """A variant's verdict: per violation kind, whether found, after how many schedules, and
    its shortest counterexample (scenario, schedule, CPUs, duration, the checker's example)."""
    kinds = {}
    for kind in KINDS:
        finding = report.findings.get(kind)
        if finding is None:
            kinds[kind] = {"found": False}
            continue
        c = finding.counterexample
        kinds[kind] = {"found": True, "first_found_after": finding.first_schedule,
                       "counterexample": {"scenario": c.scenario, "schedule": c.schedule,
                                          "cpus": c.cpus, "duration_ns": c.duration,
                                          "seed": seed, "example": c.found[kind]}}
    return {"variant": report.variant, "safe": report.safe, "schedules": report.schedules,
            "budget_per_scenario": budget, "seed": seed,
            "exhaustive_scenarios": report.exhaustive, "kinds": kinds}


def steps_text(example: dict[str, Any]) -> list[str]:
    """The area's history as numbered steps per CPU: ``CPU1 #3 at 12.345us: __free_vmap_area``."""
    numbers: dict[int, int] = {}
    lines = []
    for now, cpu, what in example.get("steps", []):
        numbers[cpu] = numbers.get(cpu, 0) + 1
        lines.append(f"    CPU{cpu} #{numbers[cpu]} at {now / 1e3:.3f}us: {what}")
    return lines


def format_report(report: VariantReport) -> list[str]:
    """A variant's verdict for the terminal, with each counterexample's steps."""
    exhaustive = f" (every schedule of depth <= 2 of: {', '.join(report.exhaustive)})" \
        if report.exhaustive else ""
    if report.safe:
        return [f"{report.variant}: safe within {report.schedules} schedules{exhaustive}"]
    lines = [f"{report.variant}: UNSAFE ({', '.join(report.findings)}) "
             f"in {report.schedules} schedules{exhaustive}"]
    for kind, finding in report.findings.items():
        c = finding.counterexample
        example = c.found[kind]
        area = example.get("area")
        where = f" [{area[0]:#x}, {area[1]:#x})" if area else ""
        lines.append(f"  {kind}: first after {finding.first_schedule} schedules; shortest: "
                     f"scenario {c.scenario}, schedule {c.schedule}, {c.cpus} CPUs, "
                     f"{c.duration / 1e3:g}us")
        lines.append(f"    at {example.get('time_ns', 0.0) / 1e3:.3f}us{where}: "
                     f"{example.get('what', '')}"
                     + (f" ({example['where']})" if example.get("where") else ""))
        lines += steps_text(example)
    return lines


VERDICTS = "verify"
"""``DIR/verify/<key>.json``: a variant's verdict, cached by what decides it."""


def verdict_key(variant: dict[str, Any], budget: int, seed: int,
                chosen: list[tuple[Scenario, dict[str, Any]]]) -> str:
    """A hash of everything a verdict is a function of: the variant, budget, seed and the
    scenarios with their machines."""
    text = json.dumps([variant, budget, seed, [[s.model_dump(mode="json"), m] for s, m in chosen]],
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_verdicts(variants: list[dict[str, Any]], out: Path, jobs: int = 1,
                    budget: int = DEFAULT_BUDGET, seed: int = 0) -> list[dict[str, Any]]:
    """Each variant's verdict (:func:`to_json`), from ``out/verify/`` or computed and stored
    there."""
    chosen = scenarios()
    folder = subdirectory(out, VERDICTS)
    keys = [verdict_key(v, budget, seed, chosen) for v in variants]
    verdicts: dict[str, dict[str, Any]] = {}
    for key in keys:
        path = folder / f"{key}.json"
        if path.is_file():
            with suppress(OSError, ValueError):  # unreadable: computed again
                verdicts[key] = json.loads(path.read_text())
    todo = [(v, k) for v, k in zip(variants, keys) if k not in verdicts]
    reports = verify_all([v for v, _ in todo], budget, seed, chosen, jobs) if todo else []
    for (_, key), report in zip(todo, reports):
        verdicts[key] = to_json(report, budget, seed)
        write_atomic(folder / f"{key}.json", json.dumps(verdicts[key], indent=1) + "\n")
    return [verdicts[k] for k in keys]


def verdict_line(verdict: dict[str, Any], experiment: str) -> str:
    """``linux-4.7: safe within 1000 schedules`` or ``wilson-2016-v1: UNSAFE: use_after_free
    (see vmapsim verify wilson-2016-v1)``; a proposal is verified through its experiment."""
    if verdict["safe"]:
        return f"{verdict['variant']}: safe within {verdict['schedules']} schedules"
    kinds = [k for k, v in verdict["kinds"].items() if v["found"]]
    target = verdict["variant"] if verdict["variant"] in presets() else experiment
    return f"{verdict['variant']}: UNSAFE: {', '.join(kinds)} (see vmapsim verify {target})"


def write_traces(report: VariantReport, variant: dict[str, Any], seed: int, folder: Path,
                 chosen: list[tuple[Scenario, dict[str, Any]]] | None = None) -> list[Path]:
    """The schedule of each shortest counterexample as a Chrome trace-event file
    (``<variant>.<kind>.json``, for Perfetto or chrome://tracing): every CPU's operations,
    lock holds and waits, purges, flushes and interrupt handlers, up to the violation."""
    written = []
    for kind, finding in report.findings.items():
        c = finding.counterexample
        scenario, machine = scenario_named(c.scenario, chosen)
        tracer = Tracer(0.0, TRACE_END_NS, name=f"{report.variant}: {kind} in {c.scenario}, "
                        f"schedule {c.schedule}")
        run_schedule(variant, scenario, machine, c.schedule, seed, c.steps, c.cpus, c.duration,
                     tracer, c.budget)
        name = f"{report.variant}.{kind}.json"
        if any(ch in name for ch in "/\\\0") or name.startswith("."):
            raise ConfigError(f"a variant name usable in a file name is needed for "
                              f"--trace-dir, found {report.variant!r}", "--trace-dir")
        written.append(tracer.write(folder / name))
    return written
