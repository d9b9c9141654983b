"""Is a variant safe whatever the interleaving? Schedule exploration of small scenarios.

A statistical run sees only the interleavings its timing happens to produce; an unsafe ordering
that needs a purge inside a narrow window (``wilson-2016-v1``'s use-after-free) may never show.
``vmapsim verify`` runs small adversarial scenarios (``workloads/scenarios/*.yaml``: 2-4 CPUs,
few areas, purges every few frees) under many schedules and reports every violation the safety
checker (sim/mm/safety.py) sees, with the shortest counterexample found.

A schedule perturbs the timing at the model's shared-state steps: every lock acquisition and
release, every lock-free publish or atomic and every flush start and end settles the CPU's
clock (``Cpu._step_end``), and :class:`ExploredCpu` inserts a delay there. Delays follow PCT
(Burckhardt et al., "A Randomized Scheduler with Probabilistic Guarantees of Finding Bugs",
ASPLOS 2010): each CPU gets a random priority, a lower one delaying each of its steps by more
(``rank * quantum``), and at ``depth - 1`` random change points the CPU taking that step drops
to the lowest priority; a bug of depth d among n steps is found with probability at least
1/(n k^(d-1)) per schedule on k CPUs. Each step may also take a random delay (log-uniform from
10 ns to 100 us: an interrupt, a preemption, a cache miss storm). Schedule 0 of each scenario
runs unperturbed. Where every schedule of depth at most 2 (k! priority orders, each with no
change point or one at any of the n steps) fits in the budget, those come first, enumerated
on schedule 0's workload: a bounded exhaustive search. A delay is time a real CPU can lose
anywhere (interrupts, NMIs, a hypervisor), so every explored schedule is one a machine can
show.

Besides the checker's kinds (``model_assumption`` among them: the model's own code raised, a
composition having broken an assumption it makes, such as two purges owning one structure;
reported, never a crash, here as in ``vmapsim run``), a schedule may end in ``no_progress``
(more than ``EVENT_CAP`` events: a livelock, such as a drain loop that never gets
``vmap_lazy_nr`` below its limit).

Deterministic: the report is a pure function of the variants, scenarios, budget and seed.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice, permutations
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
from pydantic import ValidationError

from sim.config.fields import USER_INPUT
from sim.config.loader import (
    ConfigError,
    Origins,
    anchor_trace,
    catalog_dir,
    catalog_names,
    did_you_mean,
    load_reference,
    load_yaml,
)
from sim.config.schema import RunConfig, Scenario
from sim.engine.cpu import Cpu
from sim.engine.stop import RunAborted
from sim.experiment.executors import open_executor
from sim.experiment.experiment import load_experiment, validated_variant
from sim.experiment.limits import DEFAULT_BUDGET
from sim.experiment.validation import config_error
from sim.mm.safety import KINDS as CHECKER_KINDS
from sim.mm.safety import SafetyChecker
from sim.mm.variants import presets
from sim.mm.vmap_area import VmapArea
from sim.simulation import Simulation

EVENT_CAP = 20_000
"""Processed SimPy events after which a schedule counts as ``no_progress`` (the built-in
scenarios process at most about 3,000)."""
DELAY_P = 0.2
"""Chance that a step takes a random delay besides its priority's."""
DELAY_NS = (10.0, 100e3)
"""Range of the random delays (log-uniform)."""
QUANTUM_NS = (10.0, 10e3)
"""Range of the per-schedule priority quantum (log-uniform)."""
DEPTHS = (1, 2, 3)
"""PCT bug depths, taken in turn by the schedules of a scenario."""
EXHAUSTIVE_QUANTUM_NS = 1000.0
"""The priority quantum of the enumerated schedules: longer than most critical sections, so
that a priority order is an order of the CPUs' steps."""
KINDS = (*CHECKER_KINDS, "no_progress")


class NoProgress(RunAborted):
    """A schedule processed more than ``EVENT_CAP`` events."""


@dataclass
class Schedule:
    """The delays of one explored schedule (see the module docstring)."""

    rng: np.random.Generator
    ranks: list[int]
    quantum: float
    change_points: frozenset[int]
    perturbed: bool = True
    delay_p: float = DELAY_P
    steps: int = 0

    @classmethod
    def draw(cls, rng: np.random.Generator, ncpus: int, steps: int, depth: int) -> Schedule:
        """Random priorities, a quantum, and ``depth - 1`` change points among ``steps``."""
        ranks = rng.permutation(ncpus).tolist()
        quantum = math.exp(rng.uniform(*np.log(QUANTUM_NS)))
        points = frozenset(rng.integers(1, max(steps, 1) + 1, depth - 1).tolist())
        return cls(rng, ranks, quantum, points)

    @classmethod
    def enumerated(cls, ncpus: int, steps: int, index: int) -> Schedule:
        """The ``index``-th (from 1) of every schedule of depth at most 2: each priority order
        of the CPUs, with no change point or one at each of the ``steps`` steps."""
        order, point = divmod(index - 1, steps + 1)
        ranks = list(next(islice(permutations(range(ncpus)), order, None)))
        return cls(np.random.default_rng(0), ranks, EXHAUSTIVE_QUANTUM_NS,
                   frozenset({point} if point else ()), delay_p=0.0)

    @classmethod
    def plain(cls, ncpus: int) -> Schedule:
        """No delays: the scenario as it runs by itself (and its step count)."""
        return cls(np.random.default_rng(0), [0] * ncpus, 0.0, frozenset(), perturbed=False)

    def delay(self, cpu: int) -> float:
        """The delay of ``cpu``'s next shared-state step."""
        self.steps += 1
        if not self.perturbed:
            return 0.0
        if self.steps in self.change_points:  # this CPU drops to the lowest priority
            self.ranks[cpu] = max(self.ranks) + 1
        delay = self.ranks[cpu] * self.quantum
        if self.delay_p and self.rng.random() < self.delay_p:
            delay += math.exp(self.rng.uniform(*np.log(DELAY_NS)))
        return delay


def exhaustive_size(ncpus: int, steps: int) -> int:
    """How many schedules of depth at most 2 a scenario of ``steps`` steps has."""
    return math.factorial(ncpus) * (steps + 1)


class ExploredCpu(Cpu):
    """A CPU whose every shared-state step first loses the delay its schedule gives it."""

    __slots__ = ("schedule",)

    def _step_end(self) -> float:
        self.pending += self.schedule.delay(self.id)
        return super()._step_end()


class LocatingSafetyChecker(SafetyChecker):
    """The safety checker, with each step of an area's history followed by the line of the
    model that took it (``free_vmap_area_noflush (mm/vmalloc.py:399)``): a counterexample
    then points at the code, whose comments name the kernel's lines."""

    def allocated(self, va: VmapArea, now: float, cpu: int) -> None:
        super().allocated(va, now, cpu)
        _locate(va, sys._getframe(1))

    def lazily_freed(self, va: VmapArea, now: float, cpu: int,
                     step: str = "free_vmap_area_noflush") -> None:
        super().lazily_freed(va, now, cpu, step)
        _locate(va, sys._getframe(1))

    def vb_freed(self, va: VmapArea, now: float, cpu: int) -> None:
        super().vb_freed(va, now, cpu)
        _locate(va, sys._getframe(1))

    def flushed(self, initiated: float, start: int, end: int, full: bool, now: float,
                cpu: int) -> None:
        before = dict(self._unflushed)
        super().flushed(initiated, start, end, full, now, cpu)
        caller = sys._getframe(1)
        for ident in before.keys() - self._unflushed.keys():
            _locate(before[ident], caller)

    def freed(self, va: VmapArea, now: float, cpu: int) -> bool:
        done = super().freed(va, now, cpu)
        if done:
            _locate(va, sys._getframe(1))
        return done


def _locate(va: VmapArea, frame: FrameType) -> None:
    """Append ``frame``'s file (under sim/) and line to ``va``'s last step."""
    now, cpu, what = va.history[-1]
    file = frame.f_code.co_filename.split("/sim/", 1)[-1]
    va.history[-1] = (now, cpu, f"{what} ({file}:{frame.f_lineno} in {frame.f_code.co_name})")


@dataclass
class Outcome:
    """What one schedule of one scenario showed: the first example of each violation kind."""

    scenario: str
    schedule: int
    cpus: int
    duration: float
    steps: int
    budget: int = 0
    found: dict[str, dict[str, Any]] = field(default_factory=dict)


# --- scenarios --------------------------------------------------------------------------------

def scenario_files() -> list[Path]:
    return sorted((catalog_dir("workloads") / "scenarios").glob("*.yaml"))


def load_scenario(path: Path) -> tuple[Scenario, dict[str, Any]]:
    """A scenario file, validated: the scenario and its machine profile."""
    doc = load_yaml(path)
    origins = Origins(default_file=doc.file)
    origins.add((), doc.file, doc.lines)
    anchor_trace(doc.data.get("workload"), doc.file)  # a trace names its file relative to this one
    try:
        scenario = Scenario.model_validate(doc.data, context=USER_INPUT)
    except ValidationError as exc:
        raise config_error(exc, doc.data, Scenario, origins) from None
    machine = load_reference("cpus", scenario.machine, path.parent, origins, ("machine",))
    data = config_data(dict(presets()["linux-4.7"]), scenario, machine.data, scenario.cpus,
                       scenario.duration)
    try:  # the workload is checked here, not when the first schedule runs
        RunConfig.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc, data, RunConfig, origins) from None
    return scenario, machine.data


def scenario_named(name: str, chosen: list[tuple[Scenario, dict[str, Any]]] | None = None
                   ) -> tuple[Scenario, dict[str, Any]]:
    """The scenario (and machine) of that name among ``chosen``, else among every built-in."""
    return next((s, m) for s, m in (chosen if chosen is not None else scenarios(every=True))
                if s.name == name)


def scenarios(every: bool = False) -> list[tuple[Scenario, dict[str, Any]]]:
    """The built-in scenarios: those with ``default: true``, or ``every`` one."""
    loaded = [load_scenario(path) for path in scenario_files()]
    return [(s, m) for s, m in loaded if every or s.default]


# --- running one schedule ---------------------------------------------------------------------

def config_data(variant: dict[str, Any], scenario: Scenario, machine: dict[str, Any],
                cpus: int, duration: float) -> dict[str, Any]:
    """The run configuration of a scenario, before validation."""
    return {"machine": machine, "workload": {"name": scenario.name, **scenario.workload},
            "variant": variant, "cpus": cpus, "lazy_max_pages": scenario.lazy_max_pages,
            "duration": duration, "warmup": 0}


def run_config(variant: dict[str, Any], scenario: Scenario, machine: dict[str, Any],
               cpus: int, duration: float) -> RunConfig:
    return RunConfig.model_validate(config_data(variant, scenario, machine, cpus, duration))


def run_schedule(variant: dict[str, Any], scenario: Scenario, machine: dict[str, Any],
                 index: int, seed: int, steps: int = 0, cpus: int | None = None,
                 duration: float | None = None, tracer: Any = None, budget: int = 0
                 ) -> Outcome:
    """Schedule ``index`` of a scenario (0: unperturbed; ``steps``: its step count) in a
    ``budget``; ``cpus``/``duration`` shrink it. Where every schedule of depth at most 2 fits
    in the budget, the first ones are those, enumerated (on the workload of schedule 0);
    the others are drawn."""
    cpus = cpus or scenario.cpus
    duration = duration or scenario.duration
    config = run_config(variant, scenario, machine, cpus, duration)
    enumerated = 0 < index <= exhaustive_size(cpus, steps) < budget
    sim = Simulation(config, (seed, 0 if enumerated else index), cpu_type=ExploredCpu,
                     safety_type=LocatingSafetyChecker)
    rng = np.random.default_rng([seed, index, cpus])
    if index == 0:
        schedule = Schedule.plain(cpus)
    elif enumerated:
        schedule = Schedule.enumerated(cpus, steps, index)
    else:
        schedule = Schedule.draw(rng, cpus, steps, DEPTHS[index % len(DEPTHS)])
    for cpu in sim.cpus:
        cpu.schedule = schedule
    if tracer is not None:
        sim.attach(tracer)
    _cap_events(sim)
    outcome = Outcome(scenario.name, index, cpus, duration, 0, budget)
    try:
        sim.run()
    except NoProgress:
        outcome.found["no_progress"] = {
            "time_ns": sim.env.now, "what": f"more than {EVENT_CAP} events without the run "
            "ending (a livelock: the drain or a purge loop never finishes)"}
    outcome.found.update({kind: example for kind, example in sim.safety.examples.items()
                          if kind not in outcome.found})
    outcome.steps = schedule.steps
    return outcome


def _cap_events(sim: Simulation) -> None:
    """Make the run raise :class:`NoProgress` past ``EVENT_CAP`` processed events."""
    step, count = sim.env.step, iter(range(EVENT_CAP))

    def counted() -> None:
        if next(count, None) is None:
            raise NoProgress
        step()

    sim.env.step = counted  # type: ignore[method-assign]


# --- exploring ----------------------------------------------------------------------------------

@dataclass
class Finding:
    """The first and the shortest counterexample of one violation kind."""

    kind: str
    first_schedule: int  # schedules tried, over all scenarios, when it was first seen
    counterexample: Outcome

    def time(self) -> float:
        return violation_time(self.counterexample, self.kind)


def violation_time(outcome: Outcome, kind: str) -> float:
    """When a schedule showed its first violation of ``kind`` (simulated ns)."""
    return float(outcome.found[kind].get("time_ns", math.inf))


@dataclass
class VariantReport:
    variant: str
    schedules: int = 0
    findings: dict[str, Finding] = field(default_factory=dict)
    exhaustive: list[str] = field(default_factory=list)
    """Scenarios whose every schedule of depth at most 2 was run."""

    @property
    def safe(self) -> bool:
        return not self.findings


def explore(variant: dict[str, Any], budget: int = DEFAULT_BUDGET, seed: int = 0,
            chosen: list[tuple[Scenario, dict[str, Any]]] | None = None) -> VariantReport:
    """Every scenario under ``budget`` schedules; the shortest counterexample of each kind,
    then minimized."""
    chosen = chosen if chosen is not None else scenarios()
    partials = [explore_scenario((variant, scenario, machine, budget, seed))
                for scenario, machine in chosen]
    return finish(variant, partials, seed, chosen)


def explore_scenario(task: tuple[dict[str, Any], Scenario, dict[str, Any], int, int]
                     ) -> VariantReport:
    """One variant on one scenario (a task of an executor): its findings, not minimized."""
    variant, scenario, machine, budget, seed = task
    report = VariantReport(variant["name"])
    for outcome in _schedules(variant, scenario, machine, budget, seed):
        if outcome.schedule == 0 and exhaustive_size(outcome.cpus, outcome.steps) < budget:
            report.exhaustive.append(scenario.name)
        report.schedules += 1
        for kind in outcome.found:
            known = report.findings.get(kind)
            if known is None:
                report.findings[kind] = Finding(kind, report.schedules, outcome)
            elif violation_time(outcome, kind) < known.time():
                known.counterexample = outcome
    return report


def finish(variant: dict[str, Any], partials: list[VariantReport], seed: int,
           chosen: list[tuple[Scenario, dict[str, Any]]]) -> VariantReport:
    """The scenarios' findings in scenario order (first seen counted over all schedules
    tried, the shortest kept), each counterexample minimized."""
    report = VariantReport(variant["name"])
    for partial in partials:
        for kind, found in partial.findings.items():
            known = report.findings.get(kind)
            if known is None:
                report.findings[kind] = Finding(kind, report.schedules + found.first_schedule,
                                                found.counterexample)
            elif found.time() < known.time():
                known.counterexample = found.counterexample
        report.schedules += partial.schedules
        report.exhaustive += partial.exhaustive
    for finding in report.findings.values():
        finding.counterexample = minimize(variant, finding.kind, finding.counterexample, seed,
                                          chosen)
    return report


def _schedules(variant: dict[str, Any], scenario: Scenario, machine: dict[str, Any],
               budget: int, seed: int) -> Iterator[Outcome]:
    plain = run_schedule(variant, scenario, machine, 0, seed, budget=budget)
    yield plain
    for index in range(1, budget):
        yield run_schedule(variant, scenario, machine, index, seed, plain.steps, budget=budget)


def minimize(variant: dict[str, Any], kind: str, outcome: Outcome, seed: int,
             chosen: list[tuple[Scenario, dict[str, Any]]] | None = None) -> Outcome:
    """Shrink a counterexample while its violation stays: fewer CPUs, then a shorter run (the
    workload stops issuing sooner: fewer operations before the violation)."""
    scenario, machine = scenario_named(outcome.scenario, chosen)

    def again(cpus: int, duration: float) -> Outcome | None:
        tried = run_schedule(variant, scenario, machine, outcome.schedule, seed,
                             outcome.steps, cpus, duration, budget=outcome.budget)
        return tried if kind in tried.found else None

    best = outcome
    while best.cpus > 2 and (fewer := again(best.cpus - 1, best.duration)) is not None:
        best = fewer
    for _ in range(8):
        shorter = again(best.cpus, best.duration / 2)
        if shorter is None:
            break
        best = shorter
    return best


def targets(names: list[str]) -> list[dict[str, Any]]:
    """The variants ``vmapsim verify`` names, each once, in order: a preset, a YAML file of one
    proposal mapping (``{name: my-idea, base: linux-4.7, purge_lock: none}``), or an
    experiment (a file or a built-in name) whose variants are taken."""
    variants: dict[str, dict[str, Any]] = {}
    for name in names:
        for variant in _named(name):
            variants.setdefault(variant["name"], variant)
    return list(variants.values())


def _named(name: str) -> list[dict[str, Any]]:
    if name in presets():
        return [validated_variant(name, Origins(), ())]
    path = Path(name)
    if path.is_file():
        doc = load_yaml(path)
        if "variants" in doc.data or "workload" in doc.data:
            return load_experiment(path).variants
        origins = Origins(default_file=doc.file)
        origins.add((), doc.file, doc.lines)
        return [validated_variant(doc.data, origins, ())]
    if name in catalog_names("experiments"):
        return load_experiment(name).variants
    known = list(presets()) + catalog_names("experiments")
    raise ConfigError(f"expected a variant, a proposal file or an experiment, found "
                      f"'{name}'{did_you_mean(name, known)}", "command line")


def pick_scenarios(names: list[str]) -> list[tuple[Scenario, dict[str, Any]]]:
    """The built-in scenarios named (all without names)."""
    if not names:
        return scenarios()
    every = scenarios(every=True)
    known = [s.name for s, _ in every]
    for name in names:
        if name not in known:
            raise ConfigError(f"unknown scenario '{name}'{did_you_mean(name, known)} "
                              f"(known: {', '.join(known)})", "--scenario")
    return [(s, m) for s, m in every if s.name in names]


def verify_all(variants: list[dict[str, Any]], budget: int, seed: int,
               chosen: list[tuple[Scenario, dict[str, Any]]], jobs: int = 1,
               executor: str = "local", scheduler: str | None = None) -> list[VariantReport]:
    """:func:`explore` each variant, its scenarios as tasks of an executor (serial, local
    processes or Dask, as sweeps run); the reports in the order of ``variants``, the same on
    any executor (each task is a pure function of its inputs)."""
    tasks = [(v, s, m, budget, seed) for v in variants for s, m in chosen]
    done: dict[int, VariantReport] = {}
    index = {id(task): i for i, task in enumerate(tasks)}
    with open_executor(executor, jobs, scheduler) as pool:
        for task, future in pool.map_unordered(explore_scenario, tasks):
            done[index[id(task)]] = future.result()
    per = len(chosen)
    return [finish(v, [done[i * per + j] for j in range(per)], seed, chosen)
            for i, v in enumerate(variants)]
