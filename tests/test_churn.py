"""The ``object_churn`` workload kind (sim/workloads/churn.py) and ``vfree_atomic()``
(sim/mm/vfree_deferred.py): arrival statistics, set_memory_*() calls per object, the
VMAP_STACK stack cache, deferred frees, and the catalog workloads built on them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml

from sim.config.loader import catalog_dir
from sim.config.schema import RunConfig
from sim.mm.variants import presets
from sim.simulation import Simulation
from sim.workloads.churn import ChurnCpu, create, destroy
from sim.workloads.common import Control

MACHINE = yaml.safe_load((catalog_dir("cpus") / "xeon-2s-112.yaml").read_text())


def build(objects: list[dict], cpus: int = 1, variant: str = "linux-5.18",
          duration: float = 1e6) -> Simulation:
    workload = {"name": "churn", "kind": "object_churn", "objects": objects,
                "vmap_block_dirty": False, "background": {"count": 0}}
    config = RunConfig.model_validate({"machine": MACHINE, "workload": workload,
                                       "variant": presets()[variant], "cpus": cpus,
                                       "lazy_max_pages": 10_000, "duration": duration})
    return Simulation(config, (11,))


def churn_cpu(sim: Simulation, seed: int = 0) -> ChurnCpu:
    """CPU 0's churn state, driven as the run's only workload process until ``stop``."""
    state = ChurnCpu(sim.env, sim.cpus[0], sim.vm, sim.config.workload,
                     np.random.default_rng(seed))
    control = Control()
    sim.env.process(state.run(control))
    return state


def test_creations_are_poisson_at_the_rate_and_each_object_gets_its_calls() -> None:
    """2000 objects/s for 0.5 s: 1000 expected (sd 31.6); each created object got its two
    whole-object set_memory_*() calls, each destroyed one its three per-page calls and its
    vfree; the live objects are the difference."""
    sim = build([{"name": "o", "rate": 2000, "size": 3, "lifetime": "50us",
                  "on_alloc": ["all", "all"], "on_free": ["each"]}])
    state = churn_cpu(sim)
    sim.env.run(until=0.5e9)
    kind = state.kinds[0]
    assert abs(kind.created - 1000) < 4 * math.sqrt(1000)
    m = sim.metrics
    assert m.vmalloc.n == kind.created and m.vfree.n == kind.destroyed
    assert kind.created - kind.destroyed == len(state.frees) <= 3
    assert m.set_memory.n == 2 * kind.created + 3 * kind.destroyed


def test_set_memory_calls_follow_the_object_definition() -> None:
    """``all``: one call over the object; ``each``: one call per page; a number: one call."""
    sim = build([{"name": "o", "rate": 1, "size": 6, "lifetime": "1us",
                  "on_alloc": ["all", "each", 2], "on_free": [3, "each"]}])
    state = ChurnCpu(sim.env, sim.cpus[0], sim.vm, sim.config.workload,
                     np.random.default_rng(0))
    kind = state.kinds[0]
    done = {}

    def one():
        va = yield from create(sim.vm, sim.cpus[0], kind)
        done["after_create"] = sim.metrics.set_memory.n
        yield from destroy(sim.vm, sim.cpus[0], kind, va)
        done["after_destroy"] = sim.metrics.set_memory.n

    sim.env.run(until=sim.env.process(one()))
    assert done == {"after_create": 1 + 6 + 1, "after_destroy": 8 + 1 + 6}
    assert (sim.metrics.vmalloc.n, sim.metrics.vfree.n) == (1, 1)


def test_vmap_stack_cache_holds_two_freed_stacks_per_cpu() -> None:
    """free_thread_stack: a freed stack goes to one of NR_CACHED_STACKS per-CPU slots, else to
    vfree_atomic(); alloc_thread_stack_node takes a cached stack before it vmallocs."""
    sim = build([{"name": "stack", "rate": 1, "size": 4, "lifetime": "1us",
                  "free": "cached", "cache": 2}])
    cpu, vm = sim.cpus[0], sim.vm
    state = ChurnCpu(sim.env, cpu, vm, sim.config.workload, np.random.default_rng(0))
    kind = state.kinds[0]
    got = {}

    def scenario():
        stacks = []
        for _ in range(3):
            stacks.append((yield from create(vm, cpu, kind)))
        for va in stacks:
            yield from destroy(vm, cpu, kind, va)
        got["cached"] = list(kind.cached)
        got["deferred"] = list(vm.vfree_deferred[0].list)
        again = []
        for _ in range(3):
            again.append((yield from create(vm, cpu, kind)))
        got["again"] = again
        got["stacks"] = stacks
        yield from cpu.settle()

    sim.env.run(until=sim.env.process(scenario()))
    sim.env.run()
    stacks = got["stacks"]
    assert got["cached"] == stacks[:2] and got["deferred"] == [stacks[2]]
    assert got["again"][:2] == [stacks[1], stacks[0]]  # the cache, last in first out
    assert kind.cache_hits == 2 and sim.metrics.vmalloc.n == 4
    assert sim.metrics.vfree.n == 1 and stacks[2].freed_lazily_at is not None


def test_vfree_atomic_frees_on_the_cpus_kworker_after_the_caller_returned() -> None:
    """vfree_atomic: llist_add, schedule_work once for a batch; the kworker vfree()s each area
    of the batch later, and its time is taken from the CPU."""
    sim = build([{"name": "o", "rate": 1, "size": 1, "lifetime": "1us", "free": "deferred"}])
    cpu, vm = sim.cpus[0], sim.vm
    state = ChurnCpu(sim.env, cpu, vm, sim.config.workload, np.random.default_rng(0))
    kind = state.kinds[0]
    seen = {}

    def scenario():
        areas = []
        for _ in range(3):
            areas.append((yield from create(vm, cpu, kind)))
        for va in areas:
            yield from destroy(vm, cpu, kind, va)
        seen["vfrees_at_return"] = sim.metrics.vfree.n
        seen["work_runs"] = vm.vfree_deferred[0].work.runs
        seen["areas"] = areas
        yield from cpu.settle()

    sim.env.run(until=sim.env.process(scenario()))
    sim.env.run()
    assert seen["vfrees_at_return"] == 0 and seen["work_runs"] == 0
    deferred = vm.vfree_deferred[0]
    assert deferred.work.runs == 1 and deferred.list == []
    assert sim.metrics.vfree.n == 3
    assert all(va.freed_lazily_at is not None for va in seen["areas"])


@pytest.mark.parametrize("name,duration", [
    ("seed-i915-pages", "3ms"), ("thread-churn-vmap-stack", "3ms"), ("bpf-jit-churn", "10ms"),
    ("module-load-unload", "40ms")])
def test_catalog_churn_workloads_run_safely_and_drain(name: str, duration: str) -> None:
    """Each catalog churn workload on 4 CPUs under linux-6.9: operations happen, deferred
    frees finish before the drained run's last vm_unmap_aliases(), nothing is lost."""
    workload = yaml.safe_load((catalog_dir("workloads") / f"{name}.yaml").read_text())
    workload["background"] = {"count": 200}
    config = RunConfig.model_validate({"machine": MACHINE, "workload": workload,
                                       "variant": presets()["linux-6.9"], "cpus": 4,
                                       "lazy_max_pages": 32, "duration": duration})
    sim = Simulation(config, (2,))
    metrics = sim.run()
    assert metrics["ops_per_sec"] > 0 and metrics["safety_violations"] == 0
    assert all(w.process is None for w in sim.vm.works())


def test_bad_free_mode_is_a_clear_error(bad_input) -> None:
    text = """name: bad
machine: desktop-8c16t
workload:
  name: w
  kind: object_churn
  objects:
    - {name: o, rate: 10, size: 4K, lifetime: 1ms, free: recycle}
variants: [linux-4.7]
duration: 1ms
"""
    bad_input(text, [], "bad.yaml:7: workload.objects[0].free: input should be 'vfree', "
                        "'deferred' or 'cached', found 'recycle'")
