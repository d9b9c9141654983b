"""How fast vmapsim simulates, against a bare SimPy event loop and a plain SimPy peer model.

Run from the repository root (it measures the ``sim`` package of this checkout)::

    python benchmarks/run.py                 # ~3 min on 2 cores
    python benchmarks/run.py --quick         # ~1 min
    python benchmarks/run.py --json FILE     # also write every figure as JSON
    python benchmarks/run.py --full-scale    # the CPU-scaling runs at 1e6 operations (~+4 min)

Everything runs in one process. The cases, each timed over a measured window of operations
(vmapsim's in steady state: see below):

``bare-simpy``
    The reference: 64 SimPy processes, each ``while True: yield env.timeout(d)`` with ``d``
    exponential (pre-drawn). Its rate is SimPy's own cost per event on this machine and Python
    build; its "operations" are timeouts.
``bare-sleep``
    The same loop as vmapsim's CPUs run it: the timeout they schedule
    (``sim.engine.fastpath.sleep``: the same :class:`simpy.Timeout`, queued without
    ``env.timeout``'s layers of calls), resumed by their process
    (``sim.engine.fastpath.LeanProcess``): the cheapest a processed SimPy event can be, so the
    rate a model doing nothing but its events could reach.
``peer-simpy/fix_size/64``
    ``test_vmalloc-fix_size`` at 64 CPUs written plainly on SimPy, locks as
    ``simpy.Resource`` (``benchmarks/peer.py``): the model a user would otherwise write.
``fix_size/<n>``
    vmapsim, ``test_vmalloc-fix_size`` under ``linux-4.7`` at 1, 16, 64 and 256 CPUs.
``seed-i915/64/bg=<n>``
    vmapsim, ``seed-i915`` under ``linux-4.7`` at 64 CPUs with 1e3, 1e5 and 1e6 background
    areas (the simulated first-fit walk grows with them; the Python work should not).

All on ``xeon-2s-112``, ``warmup: 0``. A vmapsim case runs, untimed, to the end of its first
purge (``WARMUP_PURGES``; none with ``--smoke``), then its window: at least its operations
(the phase ends at that operation: the ``ops: N`` stop) and at least ``WINDOW_PURGES`` purges
(3; 1 with ``--quick`` and ``--smoke``: if the operations are done first, the window runs on
to the end of its last purge). So every window pays its share of purges: ``fix_size`` at 16
to 256 CPUs purges once every 41,000-74,000 operations, and its window is 3 whole purge
cycles. A window (or warm-up) that has not reached its purges within ``MAX_WINDOW_OPS`` more
operations is refused with an error naming its case (:class:`NoPurge`). The references
(``bare-*`` and the peer, which stays as it was) run their operations from the start. The
window's length is a model outcome, so ``events`` and ``events_per_op`` are the same on every
machine. Each case is timed ``repeats`` times round-robin (so that load elsewhere hits one
repeat of several cases, not every repeat of one case); the best wall time of the window
counts, after ``gc.collect()``. Model set-up (background placement) is ``setup_s``; neither it
nor the warm-up is timed.

Figures per case:

``ops``, ``purges``, ``ops_per_purge``, ``warmup_ops``
    Operations and purges in the window, and the operations of the warm-up before it.

``events_per_op``, ``steps_per_op``
    SimPy events scheduled per operation, from SimPy's event-id counter (``env._eid``; a sleep
    that a CPU skips, ``sim.engine.fastpath.skip``, uses up its id too), and events processed per
    operation (``env.step`` calls, counted in an extra untimed run): deterministic cost
    counters, where regressions show up without the machine's noise.
``ops_per_wall_s``, ``us_per_op``; ``ratio_to_bare_simpy``, ``ratio_to_peer``
    Operations per wall second and their ratios to the bare loop's timeouts per second and to
    the peer's operations per second (measured in the same process).
``ceiling_ratio_to_bare``, ``model_share``
    The events-bound ceiling: the ratio to the bare loop that the case would reach if its
    model cost nothing but the events it processes, at ``bare-sleep``'s rate (``bare-sleep``
    events/s over ``steps_per_op``, over ``bare-simpy`` timeouts/s); and the share of the
    case's wall time that is its model's own Python rather than those events.
``peak_mib``
    tracemalloc peak over build and a run of ``memory_ops`` operations (tracemalloc slows
    Python ~5x, so it never runs during a timed run).

And three studies:

``memory_vs_length``
    ``seed-i915`` at 256 CPUs (IPI-saturated: every CPU waits long for ``purge_lock``) run to
    N and to 10 N operations under tracemalloc: the peak of the longer run over the shorter.
``cpu_scaling``
    ``seed-i915`` (1e4 background areas, its own) at 16 and at 256 CPUs, to the same number of
    operations: 1e5 by default (1e6 with ``--full-scale``, which alone takes minutes), wall
    time of each and their ratio.
``targets``
    The project's targets, each with the measured figure and whether it is met.
``bound``
    For ``fix_size/64``: its processed events per operation and events-bound ceiling; the
    processed events per operation at which even a model that cost nothing would just reach
    half the bare rate (``bare-sleep`` rate over half the ``bare-simpy`` rate); and the
    model's own Python per operation now against what half the bare rate would leave it at
    its present events (``model_us_per_op``, ``model_us_per_op_at_half_bare``).
"""

from __future__ import annotations

import argparse
import copy
import gc
import itertools
import json
import os
import platform
import sys
import time
import tracemalloc
from collections.abc import Callable, Generator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]  # this checkout, not an installed copy

import numpy as np  # noqa: E402
import simpy  # noqa: E402
import yaml  # noqa: E402
from peer import PeerModel  # noqa: E402

from sim.config.schema import RunConfig  # noqa: E402
from sim.engine.fastpath import LeanProcess, collector_tuned, sleep  # noqa: E402
from sim.engine.metrics import Histogram  # noqa: E402
from sim.experiment.verify import DEFAULT_BUDGET, explore  # noqa: E402
from sim.mm.variants import presets  # noqa: E402
from sim.simulation import Simulation  # noqa: E402

MACHINE = "xeon-2s-112"
VARIANT = "linux-4.7"
ENTROPY = (1, 2, 3)
BARE_PROCS = 64
BARE_MEAN_NS = 1000.0
BARE_BATCH = 1024
MIB = 2.0**20
CONTENDED = 1.1
"""Warn when a best wall time exceeds its CPU time by this factor (the machine was busy)."""
SCALES = {"full": 1.0, "quick": 0.2, "smoke": 0.004}
"""Operations per case relative to the full run."""
SMOKE_BACKGROUND = 10_000


@dataclass(frozen=True)
class Case:
    """One measurement: a workload at a CPU count and background count, or a reference."""

    name: str
    ops: int  # full-mode operations (bare-simpy: timeouts)
    kind: str = "vmapsim"  # or "bare", "bare-sleep", "peer"
    workload: str = "test_vmalloc-fix_size"
    cpus: int = 64
    background: int | None = None  # None: the workload file's own count
    memory_ops: int = 2000

    def n_ops(self, scale: float) -> int:
        return max(50, int(self.ops * scale))

    def background_for(self, mode: str) -> int | None:
        """Background areas in ``mode``: ``--smoke`` caps them at 1e4 (it checks structure,
        and building 1e6 areas takes seconds)."""
        if mode == "smoke" and self.background is not None:
            return min(self.background, SMOKE_BACKGROUND)
        return self.background


CASES = [
    Case("bare-simpy", 1_500_000, kind="bare", memory_ops=100_000),
    Case("bare-sleep", 1_500_000, kind="bare-sleep", memory_ops=100_000),
    Case("peer-simpy/fix_size/64", 80_000, kind="peer"),
    Case("fix_size/1", 80_000, cpus=1),
    Case("fix_size/16", 60_000, cpus=16),
    Case("fix_size/64", 60_000, cpus=64),
    Case("fix_size/256", 40_000, cpus=256),
    Case("seed-i915/64/bg=1e3", 25_000, workload="seed-i915", background=1_000),
    Case("seed-i915/64/bg=1e5", 25_000, workload="seed-i915", background=100_000),
    Case("seed-i915/64/bg=1e6", 25_000, workload="seed-i915", background=1_000_000),
]
"""Operations of each case's measured window (at least: a vmapsim window also runs to
``WINDOW_PURGES`` purges), chosen for ~1-2 s of wall time per full-mode run on an idle 2-core
VM; ``fix_size`` at 16 to 256 CPUs purges every 41,000-74,000 operations, so its window is
whole purge cycles."""
WARMUP_PURGES = {"full": 1, "quick": 1, "smoke": 0}
"""Purges a vmapsim case runs to, untimed, before its window: the window starts in steady
state, just after a purge (``--smoke`` checks structure: its window starts at the start)."""
WINDOW_PURGES = {"full": 3, "quick": 1, "smoke": 1}
"""Purges every vmapsim window holds at least: it runs past its operations to the end of its
last purge if need be."""
MAX_WINDOW_OPS = 1_000_000
"""Operations a window or warm-up may add to wait for a purge before the case is refused."""
MEMORY_OPS = 5_000
"""Operations of the shorter memory_vs_length run (the longer one runs 10 times as many)."""
SCALING_OPS = {"full": 100_000, "quick": 20_000, "smoke": 200, "full-scale": 1_000_000}


@dataclass
class Prepared:
    """A built model, ready to start: its environment, its measured window (a run of
    ``env``, after an untimed warm-up) and its summary."""

    env: simpy.Environment
    start: Callable[[], None]
    window: Callable[[], None]
    summary: Callable[[], dict[str, Any]]
    context: Callable[[], AbstractContextManager[None]] = nullcontext
    """What the run goes on inside: vmapsim's runs, ``collector_tuned`` as in
    ``Simulation.run``; the references, nothing."""
    warm_up: Callable[[], None] = lambda: None
    ops: Callable[[], int] = lambda: 0
    """Operations done so far."""
    purges: Callable[[], int | None] = lambda: None
    """Purges done so far (None: a reference, which reports none)."""

    def run(self) -> None:
        """Warm up and run the window, inside :attr:`context` (untimed)."""
        self.start()
        with self.context():
            self.warm_up()
            self.window()


@dataclass
class Timing:
    setup_s: float
    wall_s: float
    cpu_s: float
    events: int
    """Events scheduled in the window (with no warm-up, since the environment was made: the
    events of the start are processed in the window)."""
    ops: int
    """Operations in the window."""
    warmup_ops: int
    purges: int | None
    """Purges in the window."""
    summary: dict[str, Any]


@dataclass
class Result:
    """Every figure of one case (its JSON record)."""

    name: str
    kind: str
    workload: str | None
    cpus: int
    background: int | None
    ops: int
    events: int
    events_per_op: float
    steps: int
    steps_per_op: float
    deterministic: bool
    wall_s: float
    wall_all_s: list[float]
    cpu_s: float
    setup_s: float
    ops_per_wall_s: float
    us_per_op: float
    peak_mib: float
    memory_ops: int
    warmup_ops: int = 0
    purges: int | None = None
    """Purges in the measured window (vmapsim cases; None for the references)."""
    ops_per_purge: float = float("nan")
    ratio_to_bare_simpy: float = float("nan")
    ratio_to_peer: float = float("nan")
    ceiling_ratio_to_bare: float = float("nan")
    model_share: float = float("nan")
    model: dict[str, Any] = field(default_factory=dict)


# --- building the cases ----------------------------------------------------------------------

def _bare_proc(env: simpy.Environment, delays: list[float]) -> Generator[simpy.Event, None, None]:
    timeout = env.timeout
    for delay in itertools.cycle(delays):
        yield timeout(delay)


def _sleep_proc(env: simpy.Environment, delays: list[float]
                ) -> Generator[simpy.Event, None, None]:
    for delay in itertools.cycle(delays):
        yield sleep(env, delay)


def build_bare(ops: int, lean: bool = False) -> Prepared:
    """64 processes of back-to-back exponential timeouts (``lean``: vmapsim's ``sleep`` in a
    ``LeanProcess``; else ``env.timeout`` in a ``simpy.Process``), delays drawn before timing;
    the run ends at the time by which ``ops`` timeouts have fired (about)."""
    env = simpy.Environment()
    rng = np.random.default_rng(list(ENTROPY))
    delays = [rng.exponential(BARE_MEAN_NS, BARE_BATCH).tolist() for _ in range(BARE_PROCS)]

    def start() -> None:
        for batch in delays:
            if lean:
                LeanProcess(env, _sleep_proc(env, batch))
            else:
                env.process(_bare_proc(env, batch))

    until = ops * BARE_MEAN_NS / BARE_PROCS
    return Prepared(env, start, lambda: env.run(until=until), lambda: {},
                    ops=lambda: ops if env.now >= until else 0)


def load_catalog(kind: str, name: str) -> dict[str, Any]:
    with open(ROOT / kind / f"{name}.yaml") as f:
        return yaml.safe_load(f)


def run_config(workload: str, cpus: int, background: int | None, ops: int) -> RunConfig:
    spec = load_catalog("workloads", workload)
    if background is not None:
        spec.setdefault("background", {})["count"] = background
    return RunConfig.model_validate({
        "machine": load_catalog("cpus", MACHINE), "workload": spec,
        "variant": dict(presets()[VARIANT]), "cpus": cpus,
        "duration": 1e15, "warmup": 0, "ops": ops,
    })


def model_summary(sim: Simulation) -> dict[str, Any]:
    """What the model did over the whole run (warm-up included): operations, their mix, walks,
    purges, simulated throughput."""
    m = sim.metrics
    return {"ops": m.ops, "vmalloc": m.vmalloc.n, "vfree": m.vfree.n,
            "set_memory": m.set_memory.n, "purges": m.purge.n, "ipis": m.ipis,
            "alloc_walk_mean": m.alloc_walk_steps / m.vmalloc.n if m.vmalloc.n else 0.0,
            "sim_ops_per_sec": m.ops / sim.env.now * 1e9 if sim.env.now else 0.0}


class NoPurge(RuntimeError):
    """A vmapsim case whose window (or warm-up) did not reach its purges: refused, since its
    figures would leave out the purge cost."""


def purge_watch(target: int, stop: simpy.Event) -> type[Histogram]:
    """A :class:`Histogram` class that also succeeds ``stop`` at its ``target``-th record.

    The benchmark sets it as the class of a run's purge histogram (same slots) while it waits
    for a purge, and sets :class:`Histogram` back after: a benchmark's stop, never the
    model's; what the run computes is unchanged."""

    class PurgeWatch(Histogram):
        __slots__ = ()

        def record(self, ns: float) -> None:
            Histogram.record(self, ns)
            if self.n >= target and not stop.triggered:
                stop.succeed()

    return PurgeWatch


class Steady:
    """A vmapsim run driven in phases: to a number of purges (the warm-up), then to at least
    a number of operations and of purges more (the window). Each phase is a run of the
    environment to an event of its own: the operation counter's ``done`` (``ops: N``) at the
    phase's operation count, or a purge (:func:`purge_watch`)."""

    def __init__(self, name: str, sim: Simulation) -> None:
        self.name, self.sim, self.metrics = name, sim, sim.metrics

    def to_ops(self, ops: int) -> None:
        """Run until the ``ops``-th operation of the run (if not there yet)."""
        m = self.metrics
        if m.ops < ops:
            m.done, m.limit = self.sim.env.event(), ops
            self.sim.env.run(until=m.done)

    def to_purges(self, purges: int, what: str) -> None:
        """Run until the ``purges``-th purge of the run ends, or refuse the case."""
        m = self.metrics
        if m.purge.n >= purges:
            return
        stop = self.sim.env.event()
        m.done, m.limit = stop, m.ops + MAX_WINDOW_OPS
        m.purge.__class__ = purge_watch(purges, stop)
        try:
            self.sim.env.run(until=stop)
        finally:
            m.purge.__class__ = Histogram
        if m.purge.n < purges:
            raise NoPurge(f"{self.name}: its {what} reached {m.purge.n} of {purges} purges in "
                          f"{MAX_WINDOW_OPS:,} more operations; a window without purges "
                          f"leaves out their cost")

    def window(self, ops: int, purges: int) -> None:
        """At least ``ops`` operations and ``purges`` purges from here."""
        first = self.metrics.purge.n
        self.to_ops(self.metrics.ops + ops)
        self.to_purges(first + purges, "window")


def build_vmapsim(workload: str, cpus: int, background: int | None, ops: int,
                  warmup_purges: int = 0, window_purges: int = 0, name: str = "") -> Prepared:
    """A vmapsim run; with purges, warmed up to ``warmup_purges`` purges, its window at least
    ``ops`` operations and ``window_purges`` purges (else exactly ``ops`` operations)."""
    sim = Simulation(run_config(workload, cpus, background, ops), entropy=ENTROPY)
    steady = Steady(name or workload, sim)
    return Prepared(sim.env, sim.start_workload, lambda: steady.window(ops, window_purges),
                    lambda: model_summary(sim), collector_tuned,
                    warm_up=lambda: steady.to_purges(warmup_purges, "warm-up"),
                    ops=lambda: sim.metrics.ops, purges=lambda: sim.metrics.purge.n)


def build_peer(cpus: int, ops: int) -> Prepared:
    env = simpy.Environment()
    config = run_config("test_vmalloc-fix_size", cpus, None, ops)
    model = PeerModel(env, config.machine.costs, cpus, config.workload.background.count, ops)
    return Prepared(env, model.start, lambda: env.run(until=model.done),
                    lambda: {"sim_ops_per_sec": model.state.ops / env.now * 1e9},
                    ops=lambda: model.state.ops)


def builder(case: Case, ops: int, mode: str, steady: bool = True) -> Callable[[], Prepared]:
    """How to build ``case`` to a window of ``ops`` operations (``steady``: vmapsim's warm-up
    and window purges of ``mode``; else ``ops`` operations from the start)."""
    if case.kind == "bare":
        return lambda: build_bare(ops)
    if case.kind == "bare-sleep":
        return lambda: build_bare(ops, lean=True)
    if case.kind == "peer":
        return lambda: build_peer(case.cpus, ops)
    purges = (WARMUP_PURGES[mode], WINDOW_PURGES[mode]) if steady else (0, 0)
    return lambda: build_vmapsim(case.workload, case.cpus, case.background_for(mode), ops,
                                 *purges, name=case.name)


# --- measuring -------------------------------------------------------------------------------

def counted_steps(build: Callable[[], Prepared]) -> int:
    """Events processed in the window (``Environment.run`` calls ``self.step()``: a counting
    wrapper shadows it on the instance once the warm-up is over)."""
    prepared = build()
    env = prepared.env
    step, steps = env.step, itertools.count()

    def counting() -> None:
        step()  # the call that raises StopSimulation (a phase's end) is not counted
        next(steps)

    prepared.start()
    with prepared.context():
        prepared.warm_up()
        env.step = counting  # type: ignore[method-assign]
        prepared.window()
    return next(steps)


def traced_peak(build: Callable[[], Prepared]) -> float:
    """Peak traced Python memory (MiB) over build, start and the run."""
    gc.collect()
    tracemalloc.start()
    try:
        build().run()
        return tracemalloc.get_traced_memory()[1] / MIB
    finally:
        tracemalloc.stop()


def scheduled(env: simpy.Environment) -> int:
    """Events scheduled so far: the next event id (ids count from 0; the 4.x internals this
    SimPy pin guarantees), read from a copy of the counter so as not to use one up."""
    return next(copy.copy(env._eid))


def timed_run(build: Callable[[], Prepared]) -> Timing:
    """One run: set-up and warm-up, then the window timed by wall clock and process CPU
    time."""
    t0 = time.perf_counter()
    prepared = build()
    prepared.start()
    setup = time.perf_counter() - t0
    with prepared.context():
        prepared.warm_up()
        ops, purges = prepared.ops(), prepared.purges()
        events = scheduled(prepared.env) if ops else 0  # no warm-up: the start's events too
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        prepared.window()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    end = prepared.purges()
    return Timing(setup, wall, cpu, scheduled(prepared.env) - events, prepared.ops() - ops, ops,
                  None if end is None else end - purges, prepared.summary())


def result(case: Case, ops: int, timings: list[Timing], steps: int, peak: float,
           memory_ops: int, background: int | None) -> Result:
    """The figures of a case from its timed runs (best wall time)."""
    best = min(timings, key=lambda t: t.wall_s)
    summary = dict(best.summary)
    done, events = best.ops, best.events
    same = all((t.summary, t.events, t.ops, t.purges) == (best.summary, events, done,
                                                          best.purges) for t in timings)
    return Result(
        name=case.name, kind=case.kind,
        workload=None if case.kind.startswith("bare") else case.workload,
        cpus=BARE_PROCS if case.kind.startswith("bare") else case.cpus, background=background,
        ops=done, events=events, events_per_op=events / done, steps=steps,
        steps_per_op=steps / done, deterministic=same,
        wall_s=best.wall_s, wall_all_s=[t.wall_s for t in timings], cpu_s=best.cpu_s,
        setup_s=min(t.setup_s for t in timings), ops_per_wall_s=done / best.wall_s,
        us_per_op=best.wall_s / done * 1e6, peak_mib=peak, memory_ops=memory_ops,
        warmup_ops=best.warmup_ops, purges=best.purges,
        ops_per_purge=done / best.purges if best.purges else float("nan"), model=summary)


def measure_cases(mode: str, repeats: int) -> list[Result]:
    """Time every case round-robin, then count (if needed) and trace memory."""
    scale = SCALES[mode]
    timings: dict[str, list[Timing]] = {case.name: [] for case in CASES}
    for i in range(repeats):
        print(f"timing, round {i + 1} of {repeats} ...", file=sys.stderr, flush=True)
        for case in CASES:
            timings[case.name].append(timed_run(builder(case, case.n_ops(scale), mode)))
    results = []
    for case in CASES:
        ops = case.n_ops(scale)
        print(f"events and memory of {case.name} ...", file=sys.stderr, flush=True)
        steps = counted_steps(builder(case, ops, mode))
        memory_ops = min(ops, max(50, int(case.memory_ops * min(1.0, scale * 5))))
        peak = traced_peak(builder(case, memory_ops, mode, steady=False))
        results.append(result(case, ops, timings[case.name], steps, peak, memory_ops,
                              case.background_for(mode)))
    rate = {r.kind: r.ops_per_wall_s for r in results if r.kind != "vmapsim"}
    for r in results:
        r.ratio_to_bare_simpy = r.ops_per_wall_s / rate["bare"]
        r.ratio_to_peer = r.ops_per_wall_s / rate["peer"]
        if not r.kind.startswith("bare"):
            events_s = r.steps_per_op / rate["bare-sleep"]  # per op, at the cheapest rate
            r.ceiling_ratio_to_bare = 1.0 / events_s / rate["bare"]
            r.model_share = max(0.0, 1.0 - events_s / (r.us_per_op * 1e-6))
    return results


def bound(results: list[Result]) -> dict[str, Any]:
    """How far ``fix_size/64`` could go with its events alone (see ``ceiling_ratio_to_bare``)."""
    by = {r.name: r for r in results}
    fix = by["fix_size/64"]
    sleep_rate, bare_rate = by["bare-sleep"].ops_per_wall_s, by["bare-simpy"].ops_per_wall_s
    events_us = fix.steps_per_op / sleep_rate * 1e6
    return {"case": fix.name, "steps_per_op": fix.steps_per_op,
            "ceiling_ratio_to_bare": fix.ceiling_ratio_to_bare,
            "model_share": fix.model_share,
            "steps_per_op_at_half_bare": sleep_rate / (0.5 * bare_rate),
            "model_us_per_op": fix.us_per_op * fix.model_share,
            "model_us_per_op_at_half_bare": 1e6 / (0.5 * bare_rate) - events_us}


def memory_vs_length(mode: str) -> dict[str, Any]:
    """tracemalloc peak of ``seed-i915`` at 256 CPUs to N and to 10 N operations."""
    n = max(50, int(MEMORY_OPS * SCALES[mode] * (5 if mode != "full" else 1)))
    peaks = {}
    for ops in (n, 10 * n):
        print(f"memory, {ops} operations ...", file=sys.stderr, flush=True)
        peaks[ops] = traced_peak(lambda ops=ops: build_vmapsim("seed-i915", 256, 1_000, ops))
    return {"workload": "seed-i915", "cpus": 256, "background": 1_000,
            "ops_short": n, "ops_long": 10 * n, "peak_mib_short": peaks[n],
            "peak_mib_long": peaks[10 * n], "ratio": peaks[10 * n] / peaks[n]}


def cpu_scaling(ops: int) -> dict[str, Any]:
    """Wall time of ``seed-i915`` at 16 and at 256 CPUs to the same number of operations."""
    out: dict[str, Any] = {"workload": "seed-i915", "ops": ops}
    for cpus in (16, 256):
        print(f"scaling, {cpus} CPUs, {ops} operations ...", file=sys.stderr, flush=True)
        t = timed_run(lambda cpus=cpus: build_vmapsim("seed-i915", cpus, None, ops))
        out[f"wall_s_{cpus}"] = t.wall_s
        out[f"sim_ms_{cpus}"] = t.summary["ops"] / t.summary["sim_ops_per_sec"] * 1e3
        out[f"ipis_{cpus}"] = t.summary["ipis"]
    out["ratio"] = out["wall_s_256"] / out["wall_s_16"]
    return out


def targets(results: list[Result], memory: dict[str, Any], scaling: dict[str, Any]
            ) -> list[dict[str, Any]]:
    """The project's performance targets: the measured figure, the limit, met or not."""
    by = {r.name: r for r in results}
    fix = by["fix_size/64"]
    walls = [by[f"seed-i915/64/bg={n}"].us_per_op for n in ("1e3", "1e5", "1e6")]
    rows = [
        ("fix_size at 64 CPUs: ops/s over bare SimPy timeouts/s", fix.ratio_to_bare_simpy,
         ">=", 0.5),
        ("fix_size at 64 CPUs: ops/s over the plain SimPy peer's", fix.ratio_to_peer, ">=", 3.0),
        ("seed-i915 at 64 CPUs: wall time per op, 1e6 over 1e3 background areas",
         walls[2] / walls[0], "<=", 1.5),
        ("seed-i915 at 256 CPUs: peak memory, 10x longer run over the shorter",
         memory["ratio"], "<=", 1.2),
        (f"seed-i915, {scaling['ops']} ops: wall time at 256 CPUs over 16 CPUs (same order)",
         scaling["ratio"], "<=", 10.0),
    ]
    return [{"target": name, "measured": value, "limit": f"{op} {limit:g}",
             "met": bool(value >= limit if op == ">=" else value <= limit)}
            for name, value, op, limit in rows]


# --- reporting -------------------------------------------------------------------------------

def results_table(results: list[Result]) -> str:
    head = ("| case | ops | purges | events/op | steps/op | ops/wall-s | x bare SimPy | x peer | "
            "us/op | ceiling x bare | model share | peak MiB |")
    lines = [head, "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        bare = r.kind.startswith("bare")
        ceiling = "" if bare else f"{r.ceiling_ratio_to_bare:.3f}" \
            if r.ceiling_ratio_to_bare < 100 else "> 100"  # (a run that skips nearly all)
        share = "" if bare else f"{r.model_share:.0%}"
        purges = "" if r.purges is None else f"{r.purges:,}"
        lines.append(
            f"| {r.name} | {r.ops:,} | {purges} | {r.events_per_op:.2f} | {r.steps_per_op:.2f} | "
            f"{r.ops_per_wall_s:,.0f} | "
            f"{r.ratio_to_bare_simpy:.3f} | {r.ratio_to_peer:.2f} | {r.us_per_op:.1f} | "
            f"{ceiling} | {share} | {r.peak_mib:.1f} |")
    return "\n".join(lines)


def studies_table(memory: dict[str, Any], scaling: dict[str, Any], limit: dict[str, Any]
                  ) -> str:
    return "\n".join([
        f"memory vs run length (seed-i915, 256 CPUs): {memory['ops_short']:,} ops "
        f"{memory['peak_mib_short']:.1f} MiB, {memory['ops_long']:,} ops "
        f"{memory['peak_mib_long']:.1f} MiB, ratio {memory['ratio']:.2f}",
        f"CPU scaling (seed-i915, {scaling['ops']:,} ops): 16 CPUs {scaling['wall_s_16']:.1f} s,"
        f" 256 CPUs {scaling['wall_s_256']:.1f} s, ratio {scaling['ratio']:.2f}",
        f"events-bound ceiling of {limit['case']}: {limit['steps_per_op']:.2f} processed "
        f"events/op, {limit['ceiling_ratio_to_bare']:.3f}x bare SimPy with a model that cost "
        f"nothing; half the bare rate needs <= {limit['steps_per_op_at_half_bare']:.2f} "
        f"processed events/op, and a model whose own Python ({limit['model_us_per_op']:.2f} "
        f"us/op now) fits in {limit['model_us_per_op_at_half_bare']:.2f} us/op at the present "
        f"events (negative: out of reach at any model cost)"])


def targets_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| target | measured | limit | met |", "|---|---|---|---|"]
    for t in rows:
        lines.append(f"| {t['target']} | {t['measured']:.3g} | {t['limit']} | "
                     f"{'yes' if t['met'] else 'no'} |")
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    return {"python": platform.python_version(), "implementation": platform.python_implementation(),
            "simpy": simpy.__version__, "numpy": np.__version__, "machine": platform.machine(),
            "processor": platform.processor(), "cpu_count": os.cpu_count(),
            "platform": platform.platform()}


def warn(results: list[Result]) -> None:
    for r in results:
        if not r.deterministic:
            print(f"warning: {r.name}: repeated runs disagree on ops or events", file=sys.stderr)
        if r.wall_s > CONTENDED * r.cpu_s:
            print(f"warning: {r.name}: best wall time {r.wall_s:.2f} s > CPU time "
                  f"{r.cpu_s:.2f} s: other processes competed for the CPU", file=sys.stderr)


VERIFY_BUDGET = {"full": DEFAULT_BUDGET, "quick": DEFAULT_BUDGET // 4, "smoke": 3}
"""Schedules per scenario of the ``verify`` study."""


def verify_speed(mode: str) -> dict[str, Any]:
    """``vmapsim verify`` of a safe and an unsafe preset at the default budget, serially: CPU
    seconds per variant and schedules per second."""
    out: dict[str, Any] = {"budget_per_scenario": VERIFY_BUDGET[mode]}
    for name in ("linux-4.7", "wilson-2016-v1"):
        c0 = time.process_time()
        report = explore(dict(presets()[name]), VERIFY_BUDGET[mode])
        cpu = time.process_time() - c0
        out[name] = {"cpu_s": cpu, "schedules": report.schedules, "safe": report.safe,
                     "schedules_per_s": report.schedules / cpu if cpu else float("nan")}
    return out


def measure(mode: str, repeats: int, scaling_ops: int) -> dict[str, Any]:
    """Every figure of the benchmark, as the JSON record."""
    started = time.perf_counter()
    results = measure_cases(mode, repeats)
    memory = memory_vs_length(mode)
    scaling = cpu_scaling(scaling_ops)
    fix = next(r for r in results if r.name == "fix_size/64")
    return {"mode": mode, "repeats": repeats, "environment": environment(),
            "machine_profile": MACHINE, "variant": VARIANT,
            "ratio_to_bare_simpy": fix.ratio_to_bare_simpy, "ratio_to_peer": fix.ratio_to_peer,
            "cases": [asdict(r) for r in results], "memory_vs_length": memory,
            "bound": bound(results),
            "cpu_scaling": scaling, "targets": targets(results, memory, scaling),
            "verify": verify_speed(mode), "total_s": time.perf_counter() - started}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a fifth of the operations (~30 s)")
    size.add_argument("--smoke", action="store_true", help="tiny sizes: checks it runs")
    parser.add_argument("--full-scale", action="store_true",
                        help="CPU scaling at 1e6 operations (adds minutes)")
    parser.add_argument("--json", metavar="FILE", help="write every figure to FILE as JSON")
    parser.add_argument("--repeats", type=int, help="timed runs per case (default 3, quick 2, "
                        "smoke 1)")
    args = parser.parse_args(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    repeats = args.repeats or {"full": 3, "quick": 2, "smoke": 1}[mode]
    scaling_ops = SCALING_OPS["full-scale" if args.full_scale else mode]
    record = measure(mode, repeats, scaling_ops)
    results = [Result(**r) for r in record["cases"]]
    print(f"vmapsim benchmark ({mode}, best of {repeats}; {MACHINE}, {VARIANT}; Python "
          f"{platform.python_version()}, SimPy {simpy.__version__}, {os.cpu_count()} host "
          f"CPUs)\n")
    print(results_table(results) + "\n")
    print(studies_table(record["memory_vs_length"], record["cpu_scaling"], record["bound"])
          + "\n")
    print(targets_table(record["targets"]) + "\n")
    for name, figures in record["verify"].items():
        if isinstance(figures, dict):
            print(f"verify {name} ({record['verify']['budget_per_scenario']} schedules per "
                  f"scenario): {figures['cpu_s']:.1f} CPU-s, {figures['schedules']} schedules, "
                  f"{figures['schedules_per_s']:.0f} schedules/s")
    print(f"total {record['total_s']:.0f} s")
    warn(results)
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
