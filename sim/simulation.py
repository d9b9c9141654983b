"""One simulation: a pure function from a :class:`RunSpec` to its metrics.

``run(spec)`` builds a SimPy environment, the machine's CPUs, the kernel variant and the
workload processes, simulates ``warmup + duration`` nanoseconds, and returns the metrics of the
window after the warm-up. The same spec gives the same result, bit for bit, in any process.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy

from sim.config.schema import RunConfig
from sim.config.versions import versions
from sim.engine.cpu import Cpu, IrqState
from sim.engine.fastpath import (
    Environment,
    LeanProcess,
    collector_tuned,
    has_stopped,
    run_slice,
    stops_the_run,
)
from sim.engine.machine import Machine
from sim.engine.metrics import Metrics
from sim.engine.stop import OpsLimitedMetrics, RunAborted
from sim.mm.safety import SafetyChecker
from sim.mm.tlb import TlbFlusher
from sim.mm.vmalloc import VmallocModel
from sim.workloads.common import Control, irq_noise, place_background
from sim.workloads.kinds import KINDS
from sim.workloads.metric_names import HISTOGRAMS
from sim.workloads.rt_probe import probe_cpus, rt_probe

if TYPE_CHECKING:
    from sim.engine.tracer import Tracer

PROGRESS_STEPS = 1000
"""Slices of a run whose simulated-time progress is shown."""
PURPOSES = {"background": 1, "workload": 2, "irq": 3}
"""Random streams by purpose; a CPU's workload stream is further keyed by the CPU number."""


@dataclass(frozen=True)
class RunSpec:
    """A complete, canonical description of one simulation."""

    experiment: str
    config: dict[str, Any]
    point: dict[str, Any]
    replication: int
    seed: int
    entropy: tuple[int, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {"experiment": self.experiment, "config": self.config, "point": self.point,
                "replication": self.replication, "seed": self.seed,
                "entropy": list(self.entropy)}

    @property
    def run_id(self) -> str:
        """Hash of the complete spec: the name of its result file."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def variant(self) -> str:
        return self.config["variant"]["name"]


def stream(entropy: tuple[int, ...], purpose: str, *key: int) -> np.random.Generator:
    """The random generator of one purpose (and sub-key) of a run."""
    seq = np.random.SeedSequence(list(entropy), spawn_key=(PURPOSES[purpose], *key))
    return np.random.default_rng(seq)


class Simulation:
    """The assembled model of one run; exposed for tests that drive it step by step."""

    def __init__(self, config: RunConfig, entropy: tuple[int, ...],
                 cpu_type: type[Cpu] = Cpu, safety_type: type[SafetyChecker] = SafetyChecker
                 ) -> None:
        """``cpu_type``, ``safety_type``: the classes of the CPUs and of the safety checker
        (schedule exploration perturbs the one and locates the other's steps)."""
        self.config = config
        self.env = Environment()
        self.machine = Machine(config.machine, config.cpus)
        self.metrics = Metrics() if config.ops is None else \
            OpsLimitedMetrics(self.env, config.ops, config.warmup)
        self.safety = safety_type()
        self.irq = IrqState(config.cpus)
        self.cpus = [cpu_type(self.env, i, self.machine.socket_of(i), self.irq)
                     for i in range(config.cpus)]
        for cpu in self.cpus:
            cpu.metrics = self.metrics
            cpu.preemption = config.machine.preemption
        self.flusher = TlbFlusher(self.machine, self.irq, self.metrics, self.safety)
        self.vm = VmallocModel(self.env, self.machine, config.variant, config.lazy_max_pages,
                               self.flusher, self.metrics, config.workload.vmap_block_dirty,
                               self.safety)
        self.entropy = entropy
        self.control = Control()
        self.workers: list[simpy.Process] = []

    def start_workload(self) -> None:
        workload = self.config.workload
        place_background(self.vm, workload.background, stream(self.entropy, "background"))
        process = KINDS[workload.kind].process
        for cpu in self.cpus:
            rng = stream(self.entropy, "workload", cpu.id)
            worker = LeanProcess(self.env, process(self.env, cpu, self.vm, workload, rng,
                                                   self.control))
            worker.callbacks.append(lambda _, cpu=cpu: cpu.go_idle())  # its CPU goes idle
            self.workers.append(worker)
        if workload.rt_probe is not None:
            for i in probe_cpus(workload.rt_probe, len(self.cpus)):
                self.env.process(rt_probe(self.env, self.cpus[i], self.vm, workload.rt_probe,
                                          self.metrics, self.control))
        if workload.irq_noise.rate > 0:
            self.env.process(irq_noise(self.env, self.irq, self.cpus, workload.irq_noise,
                                       stream(self.entropy, "irq"), self.control))

    def end_warmup(self) -> None:
        self.metrics.reset(self.env.now)
        for lock in self.vm.locks:
            lock.reset_stat()

    def _warmup(self, at: float):
        yield self.env.timeout(at)
        self.end_warmup()

    def run(self, progress: Callable[[float], None] | None = None) -> dict[str, float]:
        """Simulate warm-up and window, collect the window's metrics, then drain the run for
        the safety checker."""
        self.start_workload()
        with collector_tuned():
            if self.config.warmup > 0:
                self.env.process(self._warmup(self.config.warmup))
            end = self.config.warmup + self.config.duration
            ran = self._guarded(lambda: self._run_until(end, progress))
            metrics = self.collect()
            metrics.update(KINDS[self.config.workload.kind].metrics(self.control))
            if ran:
                self._guarded(self.drain)
        metrics.update(self.safety.metrics())
        return metrics

    def _guarded(self, part: Callable[[], None]) -> bool:
        """Run one part of the simulation; an exception of the model's own code (a
        composition that broke an assumption it makes) is the violation ``model_assumption``
        and ends the run there (False). An observer's :class:`RunAborted` passes on."""
        try:
            part()
        except RunAborted:
            raise
        except Exception as exc:
            self.safety.model_assumption(self.env.now, exc)
            return False
        return True

    def _run_until(self, end: float, progress: Callable[[float], None] | None) -> None:
        """``env.run(until=end)``, in slices that report the simulated fraction done when a
        ``progress`` callback is given (slicing changes no event's order).

        With ``ops`` the run stops at the window's ``ops``-th operation, and a workload kind
        that ``finishes`` (test_vmalloc) when all its processes have returned, ``end`` then
        being a cap, created first so that it ends the run at the same event, sliced or not."""
        done = self.metrics.done if self.config.ops is not None else \
            simpy.AllOf(self.env, self.workers) \
            if getattr(self.config.workload, "finishes", False) else None
        stop = None if done is None else self.env.any_of([done, self.env.timeout(end)])
        if progress is None:
            self.env.run(until=end if stop is None else stop)
            return
        if stop is not None:  # as run(until=stop) would: any slice ends where stop fires
            stops_the_run(stop)
        for step in range(1, PROGRESS_STEPS + 1):
            run_slice(self.env, end * step / PROGRESS_STEPS)
            progress(step / PROGRESS_STEPS)
            if stop is not None and has_stopped(stop):
                progress(1.0)
                return
        if stop is not None:  # the cap, due at the last slice's end, has not stopped it yet
            self.env.run()

    def drain(self) -> None:
        """Stop the workload, let every operation in flight and any queued drain work (5.18)
        finish, then one ``vm_unmap_aliases()``: any lazily freed area left is one the
        variant lost."""
        self.control.stop = True
        self.env.run(until=simpy.AllOf(self.env, self.workers))
        busy = [w.process for w in self.vm.works() if w.process is not None]
        while busy:  # queued work (drain, deferred frees) finishes too, and what it queues
            self.env.run(until=busy[0])
            busy = [w.process for w in self.vm.works() if w.process is not None]
        self.cpus[0].forget_idle_handlers()
        final = self.env.process(self.vm.vm_unmap_aliases(self.cpus[0]))
        self.env.run(until=final)
        self.safety.drained(self.env.now)

    def collect(self) -> dict[str, float]:
        """The run's metrics over the measurement window."""
        m = self.metrics
        window_s = (self.env.now - m.window_start) / 1e9
        val = self.vm.vmap_area_lock.stat
        pl = self.vm.purge_lock.lock.stat if self.vm.purge_lock.lock else None
        return {
            "ops_per_sec": m.ops / window_s if window_s > 0 else 0.0,
            "vmalloc_p50_ns": m.vmalloc.percentile(50),
            "vmalloc_p99_ns": m.vmalloc.percentile(99),
            "vmalloc_mean_ns": m.vmalloc.mean(),
            "vmalloc_p999_ns": m.vmalloc.percentile(99.9),
            "vmalloc_max_ns": m.vmalloc.max if m.vmalloc.n else float("nan"),
            "vfree_p50_ns": m.vfree.percentile(50),
            "vfree_p99_ns": m.vfree.percentile(99),
            "vfree_p999_ns": m.vfree.percentile(99.9),
            "vfree_max_ns": m.vfree.max if m.vfree.n else float("nan"),
            "set_memory_p50_ns": m.set_memory.percentile(50),
            "set_memory_p99_ns": m.set_memory.percentile(99),
            "set_memory_p999_ns": m.set_memory.percentile(99.9),
            "set_memory_max_ns": m.set_memory.max if m.set_memory.n else float("nan"),
            "rt_latency_p99_ns": m.rt_latency.percentile(99),
            "rt_latency_max_ns": m.rt_latency.max if m.rt_latency.n else float("nan"),
            "preempt_off_p99_ns": m.preempt_off.percentile(99),
            "preempt_off_max_ns": m.preempt_off.max if m.preempt_off.n else float("nan"),
            "purges": m.purge.n,
            "purge_mean_ns": m.purge.mean(),
            "purge_max_ns": m.purge.max if m.purge.n else float("nan"),
            "purged_areas": m.purge_areas,
            "purged_nodes": m.purge_nodes,
            "tlb_flush_full": m.tlb_flush_full,
            "tlb_flush_range": m.tlb_flush_range,
            "ipis": m.ipis,
            "vmap_area_lock_wait_ns": val.wait_total / val.acquisitions if val.acquisitions
            else 0.0,
            "vmap_area_lock_hold_max_ns": val.hold_max,
            "vmap_area_lock_contentions": val.contentions,
            "purge_lock_contentions": pl.contentions if pl else 0,
            "purge_lock_wait_ns": pl.wait_total / pl.acquisitions if pl and pl.acquisitions
            else 0.0,
            "purge_trylock_failures": m.purge_trylock_failures,
            "alloc_walk_mean": m.alloc_walk_steps / m.vmalloc.n if m.vmalloc.n else 0.0,
            "lazy_pages_peak": m.lazy_pages_peak,
            "alloc_failures": m.alloc_failures,
            "busy_areas_end": self.vm.busy.count,
        }

    def attach(self, tracer: Tracer) -> None:
        """Hook ``tracer`` into the assembled model (before it runs)."""
        tracer.ncpus = len(self.cpus)
        self.vm.tracer = tracer
        self.flusher.tracer = tracer
        self.irq.tracer = tracer
        for lock in self.vm.locks:
            lock.tracer = tracer

    def histograms(self) -> dict[str, dict[str, object]]:
        """The window's latency histograms (merged over replications by the summary)."""
        m = self.metrics
        return {name: getattr(m, name).to_json() for name in HISTOGRAMS}

    def lock_stats(self) -> dict[str, dict[str, float]]:
        """Each lock's :class:`~sim.engine.locks.LockStat` by lock name (the instances of one
        lock class share theirs); a minimum with no event is 0, as the kernel prints it."""
        return {lock.name: {k: 0.0 if v == math.inf else v for k, v in vars(lock.stat).items()}
                for lock in self.vm.locks}


def run(spec: RunSpec, tracer: Tracer | None = None,
        progress: Callable[[float], None] | None = None) -> dict[str, Any]:
    """Simulate one spec; the result embeds the spec, its id and lock_stat. A
    :class:`~sim.trace.Tracer` records the run's timeline and ``progress`` receives the
    fraction of simulated time done, neither changing the result."""
    config = RunConfig.model_validate(spec.config)
    sim = Simulation(config, spec.entropy)
    if tracer is not None:
        sim.attach(tracer)
    metrics = sim.run(progress)
    result = {"run_id": spec.run_id, "spec": spec.to_dict(), "metrics": metrics,
              "lock_stat": sim.lock_stats(), "safety": sim.safety.examples, "status": "ok",
              "histograms": sim.histograms(), "versions": versions()}
    kind = config.workload.kind
    report = KINDS[kind].report
    if report is not None:
        result[kind] = report(sim.control)
    return result
