"""How fast vmapsim simulates, measured against a bare SimPy event loop on the same machine.

Run from the repository root::

    python benchmarks/run.py            # full run: ~2-3 s per measurement, best of 3 (~75 s)
    python benchmarks/run.py --quick    # ~0.3 s per measurement, best of 2 (~11 s)
    python benchmarks/run.py --json results.json

Everything runs in one process. The cases:

``bare-simpy``
    The reference: 64 SimPy processes, each ``while True: yield env.timeout(d)`` with ``d``
    exponential (mean 1000 ns, pre-drawn so no random draw is timed). Its rate is SimPy's own
    cost per event on this machine and Python build: no simulator can beat it per event.
``seed-i915/<variant>/bg=<n>``
    The flagship workload at 64 CPUs of ``xeon-2s-112`` with ``workload.background.count`` =
    ``n``, kernel variant ``linux-4.7`` or ``linux-4.5``.
``fix_size/linux-4.7``
    ``test_vmalloc-fix_size`` at 64 CPUs: pure vmalloc/vfree, no set_memory.

Each vmapsim case builds a :class:`sim.schema.RunConfig` from the YAML catalogs with
``warmup: 0`` (nothing is reset, so every operation since time 0 counts) and a fixed simulated
duration per case, chosen so that one measurement takes ~2-3 s of wall time on an idle
2-core VM (~0.3 s with ``--quick``). Each case is first run twice, untimed:

1. with an event counter (below), which gives ``ops``, ``events`` and the operation mix;
2. under :mod:`tracemalloc`, over the build and the first 2 ms of simulated time only
   (tracemalloc slows Python ~5x, so it never runs during a timed run), which gives
   ``peak_traced_mib``. The peak is mostly the set-up (background areas, per-CPU state);
   afterwards only lazily freed areas add memory, up to ``lazy_max_pages`` until a purge
   (fix_size reaches ~7 MiB by its first purge, ~20 ms in); histograms are fixed arrays.

Then every case is run ``repeats`` times, round-robin (case 1, 2, ..., 6, case 1, 2, ...), so
that load elsewhere on the machine hits one repeat of several cases rather than every repeat of
one. Only ``env.run(until=duration)`` is timed, with :func:`time.perf_counter` after a
``gc.collect()``; building the model and placing the background areas is ``setup_s``. The best
(smallest) wall time is kept; its process CPU time is ``cpu_s``, and a warning is printed when
wall time exceeds CPU time by more than 10% (another process took the CPU: rerun).

How to read the figures (all in the table and in ``--json``):

``ops``
    Completed vmalloc + vfree + set_memory calls (``Simulation.metrics.ops``); for
    ``bare-simpy`` the number of events (timeouts).
``events_per_op``
    SimPy events scheduled per operation: a deterministic cost counter, the same on every
    machine for a given model version, seed and duration. Counted by replacing
    ``env.schedule`` on the Simulation's environment by a counting wrapper before the workload
    starts: every event SimPy or the model creates (timeouts, process starts, lock handoffs,
    the ``until`` event) goes through ``Environment.schedule``, a public method looked up on
    the instance at each call. Where SimPy exposes its private event-id counter
    (``env._eid``, SimPy 4) the count is checked against it. Events still pending when
    the run stops (about one per process) are included.
``wall_s``, ``ops_per_wall_s``, ``us_per_op``
    Best-of-``repeats`` wall time of ``env.run`` and the rates derived from it.
``ratio_to_bare_simpy``
    ``ops_per_wall_s`` / bare SimPy timeouts per wall second. 0.05 means one simulated
    operation costs as much Python time as 20 bare timeouts.
``engine_share``
    ``events_per_op * ratio_to_bare_simpy``: the part of the wall time that a bare SimPy loop
    scheduling the same number of events would take. The rest is the model's own Python code.
``scaling``
    For each variant, wall time per operation with 1e5 background areas over that with 1e3,
    beside the mean simulated first-fit walk (``alloc_walk_mean``, areas per vmalloc) and the
    share of set_memory calls in the operation mix. The simulated walk grows with the list;
    the Python work per operation should not (the busy tree skips whole blocks of areas).

Wall-clock figures depend on the machine and its load; ``events_per_op`` does not.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import platform
import sys
import time
import tracemalloc
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import simpy
import yaml
from simpy.events import NORMAL

from sim.mm.variants import presets
from sim.run import Simulation
from sim.schema import RunConfig

ROOT = Path(__file__).resolve().parent.parent
MACHINE = "xeon-2s-112"
CPUS = 64
ENTROPY = (1, 2, 3)
BARE_PROCS = 64
BARE_MEAN_NS = 1000.0
BARE_BATCH = 1024
MIB = 2.0**20
CONTENDED = 1.1
"""Warn when a best wall time exceeds its CPU time by this factor (the machine was busy)."""


@dataclass(frozen=True)
class Case:
    """One measurement: a workload, variant and background count, or the bare reference."""

    name: str
    duration_ns: float
    quick_ns: float
    workload: str | None = None  # None: the bare SimPy reference
    variant: str | None = None
    background: int | None = None  # None: the workload file's own count
    memory_ns: float = 2e6
    """Simulated duration of the traced (memory) run: short, the same in both modes."""

    def until(self, quick: bool) -> float:
        return self.quick_ns if quick else self.duration_ns


CASES = [
    Case("bare-simpy", 3e7, 3e6, memory_ns=5e5),
    Case("seed-i915/linux-4.7/bg=1e3", 5e8, 4e7, "seed-i915", "linux-4.7", 1_000),
    Case("seed-i915/linux-4.7/bg=1e5", 3e10, 2e9, "seed-i915", "linux-4.7", 100_000),
    Case("seed-i915/linux-4.5/bg=1e3", 4.5e8, 4e7, "seed-i915", "linux-4.5", 1_000),
    Case("seed-i915/linux-4.5/bg=1e5", 3e10, 5e8, "seed-i915", "linux-4.5", 100_000),
    Case("fix_size/linux-4.7", 3e7, 3e6, "test_vmalloc-fix_size", "linux-4.7"),
]
"""Simulated durations (ns), fixed so that ``events_per_op`` is reproducible, chosen for
~2.5 s (full) and ~0.3 s (quick) of wall time per run on an idle 2-core VM. At 1e5 background
areas the simulated machine completes few operations per simulated second (vmallocs walk
thousands of areas under vmap_area_lock), so those runs cover seconds of simulated time. When
the model changes, a run far from the target prints a suggested duration."""
TARGET_WALL_S = {False: 2.5, True: 0.3}
"""Wall time per run the durations aim at (full, quick); outside 0.4x-2.5x a warning suggests
a new duration."""


@dataclass
class Prepared:
    """A built model, ready to start: its environment and how to read its results."""

    env: simpy.Environment
    start: Callable[[], None]
    summary: Callable[[], dict[str, Any]]


@dataclass
class Result:
    """Every figure of one case (the JSON record)."""

    name: str
    workload: str | None
    variant: str | None
    background: int | None
    cpus: int
    sim_duration_ns: float
    ops: int
    events: int
    events_per_op: float
    events_checked: bool | None
    deterministic: bool
    wall_s: float
    wall_all_s: list[float]
    cpu_s: float
    setup_s: float
    ops_per_wall_s: float
    us_per_op: float
    ns_per_event: float
    peak_traced_mib: float
    memory_sim_ns: float
    ratio_to_bare_simpy: float = float("nan")
    engine_share: float = float("nan")
    model: dict[str, Any] = field(default_factory=dict)


@dataclass
class Timing:
    setup_s: float
    wall_s: float
    cpu_s: float
    summary: dict[str, Any]
    events: int | None


@dataclass
class Counted:
    """What the instrumented runs of a case found: the deterministic part of its figures."""

    case: Case
    until: float
    events: int
    checked: bool | None
    summary: dict[str, Any]
    peak_mib: float
    timings: list[Timing] = field(default_factory=list)


# --- building the cases ----------------------------------------------------------------------

def _bare_proc(env: simpy.Environment, delays: list[float]) -> Generator[simpy.Event, None, None]:
    timeout = env.timeout
    for delay in itertools.cycle(delays):
        yield timeout(delay)


def build_bare() -> Prepared:
    """64 processes of back-to-back exponential timeouts, delays drawn before timing."""
    env = simpy.Environment()
    rng = np.random.default_rng(list(ENTROPY))
    delays = [rng.exponential(BARE_MEAN_NS, BARE_BATCH).tolist() for _ in range(BARE_PROCS)]

    def start() -> None:
        for batch in delays:
            env.process(_bare_proc(env, batch))

    return Prepared(env, start, lambda: {})


def load_catalog(kind: str, name: str) -> dict[str, Any]:
    with open(ROOT / kind / f"{name}.yaml") as f:
        return yaml.safe_load(f)


def run_config(case: Case, duration_ns: float) -> RunConfig:
    workload = load_catalog("workloads", case.workload)
    if case.background is not None:
        workload.setdefault("background", {})["count"] = case.background
    return RunConfig.model_validate({
        "machine": load_catalog("cpus", MACHINE), "workload": workload,
        "variant": dict(presets()[case.variant]), "cpus": CPUS,
        "duration": duration_ns, "warmup": 0,
    })


def model_summary(sim: Simulation) -> dict[str, Any]:
    """Ops and what the model did: the operation mix, walks, purges."""
    m = sim.metrics
    collected = sim.collect()
    return {"ops": m.ops, "vmalloc": m.vmalloc.n, "vfree": m.vfree.n,
            "set_memory": m.set_memory.n, "alloc_walk_mean": collected["alloc_walk_mean"],
            "purges": m.purge.n, "ipis": m.ipis, "sim_ops_per_sec": collected["ops_per_sec"]}


def build_vmapsim(case: Case, duration_ns: float) -> Prepared:
    sim = Simulation(run_config(case, duration_ns), entropy=ENTROPY)
    return Prepared(sim.env, sim.start_workload, lambda: model_summary(sim))


def builder(case: Case, duration_ns: float) -> Callable[[], Prepared]:
    if case.workload is None:
        return build_bare
    return lambda: build_vmapsim(case, duration_ns)


# --- measuring -------------------------------------------------------------------------------

class EventCounter:
    """Counts ``env.schedule`` calls by shadowing the method on the environment instance."""

    def __init__(self, env: simpy.Environment) -> None:
        self.n = 0
        schedule = env.schedule

        def counting(event: simpy.Event, priority: int = NORMAL, delay: float = 0) -> None:
            self.n += 1
            schedule(event, priority, delay)

        env.schedule = counting  # type: ignore[method-assign]


def eid_events(env: simpy.Environment) -> int | None:
    """Events scheduled so far by SimPy's private id counter, if this SimPy has one."""
    eid = getattr(env, "_eid", None)
    return next(eid) if isinstance(eid, itertools.count) else None


def counted_run(build: Callable[[], Prepared], until: float) -> tuple[int, bool | None, dict]:
    """Events scheduled (checked against SimPy's id counter when present) and the summary."""
    prepared = build()
    counter = EventCounter(prepared.env)
    prepared.start()
    prepared.env.run(until=until)
    by_eid = eid_events(prepared.env)
    checked = None if by_eid is None else by_eid == counter.n
    if checked is False:
        print(f"warning: counted {counter.n} events, SimPy ids say {by_eid}", file=sys.stderr)
    return counter.n, checked, prepared.summary()


def traced_peak(build: Callable[[], Prepared], until: float) -> float:
    """Peak traced Python memory (MiB) over build, start and a short run."""
    gc.collect()
    tracemalloc.start()
    try:
        prepared = build()
        prepared.start()
        prepared.env.run(until=until)
        return tracemalloc.get_traced_memory()[1] / MIB
    finally:
        tracemalloc.stop()


def timed_run(build: Callable[[], Prepared], until: float) -> Timing:
    """One plain run: set-up, then ``env.run`` timed by wall clock and process CPU time."""
    t0 = time.perf_counter()
    prepared = build()
    prepared.start()
    setup = time.perf_counter() - t0
    gc.collect()
    t0, c0 = time.perf_counter(), time.process_time()
    prepared.env.run(until=until)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return Timing(setup, wall, cpu, prepared.summary(), eid_events(prepared.env))


def count(case: Case, quick: bool) -> Counted:
    until = case.until(quick)
    events, checked, summary = counted_run(builder(case, until), until)
    peak = traced_peak(builder(case, case.memory_ns), case.memory_ns)
    return Counted(case, until, events, checked, summary, peak)


def result(c: Counted) -> Result:
    """The figures of a case from its counted run and its timed runs (best wall time)."""
    best = min(c.timings, key=lambda t: t.wall_s)
    same = all(t.summary == c.summary and t.events in (None, c.events) for t in c.timings)
    summary = dict(c.summary)
    ops = summary.pop("ops", c.events)
    case = c.case
    return Result(
        name=case.name, workload=case.workload, variant=case.variant,
        background=case.background, cpus=BARE_PROCS if case.workload is None else CPUS,
        sim_duration_ns=c.until, ops=ops, events=c.events, events_per_op=c.events / ops,
        events_checked=c.checked, deterministic=same, wall_s=best.wall_s,
        wall_all_s=[t.wall_s for t in c.timings], cpu_s=best.cpu_s,
        setup_s=min(t.setup_s for t in c.timings), ops_per_wall_s=ops / best.wall_s,
        us_per_op=best.wall_s / ops * 1e6, ns_per_event=best.wall_s / c.events * 1e9,
        peak_traced_mib=c.peak_mib, memory_sim_ns=case.memory_ns, model=summary)


def measure_all(quick: bool, repeats: int) -> list[Result]:
    """Count every case, then time them round-robin so that a burst of load elsewhere on the
    machine hits one repeat of several cases rather than every repeat of one case."""
    counted = []
    for case in CASES:
        print(f"counting {case.name} ...", file=sys.stderr, flush=True)
        counted.append(count(case, quick))
    for i in range(repeats):
        print(f"timing, round {i + 1} of {repeats} ...", file=sys.stderr, flush=True)
        for c in counted:
            c.timings.append(timed_run(builder(c.case, c.until), c.until))
    return [result(c) for c in counted]


def add_ratios(results: list[Result]) -> None:
    bare = results[0].ops_per_wall_s
    for r in results:
        r.ratio_to_bare_simpy = r.ops_per_wall_s / bare
        r.engine_share = r.events_per_op * r.ratio_to_bare_simpy


def scaling(results: list[Result]) -> list[dict[str, Any]]:
    """Per variant: wall time per op at 1e5 background areas over that at 1e3."""
    by_key = {(r.variant, r.background): r for r in results if r.workload == "seed-i915"}
    rows = []
    for variant in dict.fromkeys(v for v, _ in by_key):
        small, large = by_key.get((variant, 1_000)), by_key.get((variant, 100_000))
        if small is None or large is None:
            continue
        rows.append({
            "variant": variant,
            "alloc_walk_mean_1e3": small.model["alloc_walk_mean"],
            "alloc_walk_mean_1e5": large.model["alloc_walk_mean"],
            "us_per_op_1e3": small.us_per_op, "us_per_op_1e5": large.us_per_op,
            "wall_per_op_ratio": large.us_per_op / small.us_per_op,
            "events_per_op_ratio": large.events_per_op / small.events_per_op,
            "wall_per_event_ratio": large.ns_per_event / small.ns_per_event,
            "set_memory_share_1e3": small.model["set_memory"] / small.ops,
            "set_memory_share_1e5": large.model["set_memory"] / large.ops,
        })
    return rows


# --- reporting -------------------------------------------------------------------------------

def sim_time(ns: float) -> str:
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= scale:
            return f"{ns / scale:g} {unit}"
    return f"{ns:g} ns"


def results_table(results: list[Result]) -> str:
    head = ("| case | simulated | ops | events/op | wall s (best) | ops/wall-s | "
            "ratio to bare | us/op | engine share | peak MiB |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in results:
        lines.append(
            f"| {r.name} | {sim_time(r.sim_duration_ns)} | {r.ops:,} | {r.events_per_op:.2f} | "
            f"{r.wall_s:.2f} | {r.ops_per_wall_s:,.0f} | {r.ratio_to_bare_simpy:.4f} | "
            f"{r.us_per_op:.1f} | {r.engine_share:.0%} | {r.peak_traced_mib:.1f} |")
    lines += ["", "ops: completed vmalloc + vfree + set_memory calls (bare-simpy: timeouts). "
              "events/op: SimPy events scheduled per op (deterministic). engine share: "
              "events/op x ratio to bare, the share of the wall time a bare SimPy loop with as "
              "many events would take. peak MiB: tracemalloc peak over build + the first "
              f"{sim_time(CASES[1].memory_ns)} simulated."]
    return "\n".join(lines)


def scaling_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| variant | sim. walk/vmalloc 1e3 -> 1e5 | us/op 1e3 -> 1e5 | wall/op ratio | "
             "events/op ratio | wall/event ratio | set_memory share 1e3 -> 1e5 |",
             "|---|---|---|---|---|---|---|"]
    for s in rows:
        lines.append(
            f"| {s['variant']} | {s['alloc_walk_mean_1e3']:.0f} -> {s['alloc_walk_mean_1e5']:.0f} "
            f"| {s['us_per_op_1e3']:.1f} -> {s['us_per_op_1e5']:.1f} "
            f"| {s['wall_per_op_ratio']:.2f} | {s['events_per_op_ratio']:.2f} "
            f"| {s['wall_per_event_ratio']:.2f} "
            f"| {s['set_memory_share_1e3']:.0%} -> {s['set_memory_share_1e5']:.0%} |")
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    return {"python": platform.python_version(), "implementation": platform.python_implementation(),
            "simpy": simpy.__version__, "numpy": np.__version__, "machine": platform.machine(),
            "processor": platform.processor(), "cpu_count": os.cpu_count(),
            "platform": platform.platform()}


def warn(results: list[Result], quick: bool) -> None:
    for r in results:
        if not r.deterministic or r.events_checked is False:
            print(f"warning: {r.name}: repeated runs disagree on ops or events", file=sys.stderr)
        target = TARGET_WALL_S[quick]
        if not 0.4 * target <= r.cpu_s <= 2.5 * target:
            print(f"note: {r.name}: {r.cpu_s:.2f} s per run, target {target} s; "
                  f"duration {r.sim_duration_ns * target / r.cpu_s:.3g} ns would hit it",
                  file=sys.stderr)
        if r.wall_s > CONTENDED * r.cpu_s:
            print(f"warning: {r.name}: best wall time {r.wall_s:.2f} s > CPU time "
                  f"{r.cpu_s:.2f} s: other processes competed for the CPU", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="~0.3 s per measurement")
    parser.add_argument("--json", metavar="FILE", help="write every figure to FILE as JSON")
    parser.add_argument("--repeats", type=int, help="timed runs per case (default 3, quick 2)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 3)
    started = time.perf_counter()
    results = measure_all(args.quick, repeats)
    add_ratios(results)
    rows = scaling(results)
    total = time.perf_counter() - started
    print(f"vmapsim benchmark ({'quick' if args.quick else 'full'}, best of {repeats}, "
          f"{CPUS} simulated CPUs of {MACHINE}; Python {platform.python_version()}, "
          f"SimPy {simpy.__version__}, {os.cpu_count()} host CPUs)\n")
    print(results_table(results) + "\n")
    print(scaling_table(rows) + "\n")
    print(f"total {total:.0f} s")
    warn(results, args.quick)
    if args.json:
        record = {"quick": args.quick, "repeats": repeats, "environment": environment(),
                  "total_s": total, "cases": [asdict(r) for r in results], "scaling": rows}
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
