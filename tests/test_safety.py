"""The safety checker: one hand-placed interleaving per violation kind, reported on the variant
that is unsafe there and silent on one that is safe; presets use exactly their choices; random
small workloads keep the safe presets clean."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.config.loader import catalog_dir
from sim.config.schema import RunConfig
from sim.mm.lazy import FullWalk, Llist, NoLazy, SortedTree
from sim.mm.node_purge import PerNodeLazy
from sim.mm.purge_lock import MutexPurgeLock, NoPurgeLock, RefcountPurgeLock, SpinPurgeLock
from sim.mm.safety import KINDS
from sim.mm.variants import presets
from sim.simulation import Simulation

MACHINE = yaml.safe_load((catalog_dir("cpus") / "xeon-2s-112.yaml").read_text())
FIX_SIZE = yaml.safe_load((catalog_dir("workloads") / "test_vmalloc-fix_size.yaml").read_text())
SAFE = ["linux-4.5", "linux-4.7", "linux-4.10", "linux-5.2", "linux-5.4", "linux-5.11",
        "linux-5.18", "linux-6.9"]


def variant(name: str, **changes) -> dict:
    return {**presets()[name], **changes, "name": name + "+" if changes else name}


def build(var: dict, cpus: int = 2, **workload) -> Simulation:
    work = {**FIX_SIZE, "background": {"count": 0}, **workload}
    config = RunConfig.model_validate({"machine": MACHINE, "workload": work, "variant": var,
                                       "cpus": cpus, "duration": 1e6})
    return Simulation(config, (0,))


def at(sim: Simulation, t: float, gen_fn):
    """Run ``gen_fn()`` as a process starting at simulated time ``t``."""
    def proc():
        yield sim.env.timeout(t - sim.env.now)
        result = yield from gen_fn()
        return result
    return sim.env.process(proc())


def allocate(sim: Simulation, cpu: int = 0, pages: int = 1):
    va = {}

    def go():
        va["area"] = yield from sim.vm.vmalloc(sim.cpus[cpu], pages)
        yield from sim.cpus[cpu].settle()  # the CPU's clock catches up with its charged work
    sim.env.run(until=at(sim, sim.env.now, go))
    return va["area"]


def counts(sim: Simulation) -> dict[str, int]:
    return {k: v for k, v in sim.safety.counts.items() if v}


# --- reuse before flush -----------------------------------------------------------------------

@pytest.mark.parametrize("var,unsafe", [
    (variant("linux-4.7", lazy_in_busy_tree=False), True),  # first fit sees the hole at once
    (variant("linux-4.7"), False),   # lazy areas keep their range busy until purged
    (variant("linux-5.4"), False),   # out of the busy tree, but not back in the free tree
])
def test_range_reused_before_its_flush(var: dict, unsafe: bool) -> None:
    sim = build(var)
    first = allocate(sim)
    sim.env.run(until=at(sim, sim.env.now, lambda: sim.vm.vfree(sim.cpus[0], first)))
    second = allocate(sim, cpu=1)
    assert (second.va_start == first.va_start) == unsafe
    assert counts(sim) == ({"reuse_before_flush": 1} if unsafe else {})
    if unsafe:
        example = sim.safety.examples["reuse_before_flush"]
        assert example["area"] == [first.va_start, first.va_end]
        assert [step for _, _, step in example["steps"]] == ["alloc_vmap_area",
                                                             "free_vmap_area_noflush"]


# --- vm_unmap_aliases() returning with an unflushed lazy area ---------------------------------

@pytest.mark.parametrize("name,unsafe", [("pen-2016-no-purge-lock", True),
                                         ("fernandes-2016-refcount", True),
                                         ("linux-4.7", False), ("linux-4.10", False)])
def test_vm_unmap_aliases_races_a_purge_in_progress(name: str, unsafe: bool) -> None:
    """CPU 1's sync purge has taken the llist and waits for its flush's ack from CPU 2, busy in
    a 50 us device interrupt, when CPU 0 calls vm_unmap_aliases() (no dirty vmap blocks, so no
    forced flush). Without purge_lock CPU 0 finds the llist empty and returns at once: the
    area CPU 1 holds is unflushed."""
    sim = build(variant(name), cpus=3, vmap_block_dirty=False)
    va = allocate(sim)
    sim.env.run(until=at(sim, sim.env.now, lambda: sim.vm.vfree(sim.cpus[0], va)))
    t0 = sim.env.now + 1000
    sim.irq.deliver(np.array([2]), np.array([t0]), 50_000.0)
    purge = at(sim, t0, lambda: sim.vm.purge_vmap_area_lazy(sim.cpus[1]))
    aliases = at(sim, t0 + 300, lambda: sim.vm.vm_unmap_aliases(sim.cpus[0]))
    sim.env.run(until=simpy_all(sim, purge, aliases))
    assert counts(sim) == ({"unmap_aliases_unflushed": 1} if unsafe else {})


def simpy_all(sim: Simulation, *events):
    import simpy
    return simpy.AllOf(sim.env, list(events))


# --- use after free: Roman Pen's review of v1 -------------------------------------------------

@pytest.mark.parametrize("name,unsafe", [("wilson-2016-v1", True), ("linux-4.5", True),
                                         ("linux-4.7", False)])
def test_area_read_after_another_cpu_freed_it(name: str, unsafe: bool) -> None:
    """CPU 0 publishes the area (flag or llist_add), then an interrupt preempts it before it
    reads the size; CPU 1 purges and frees the area meanwhile (CPU 0 still acks its IPI)."""
    sim = build(variant(name), cpus=2)
    va = allocate(sim)
    vm, c0 = sim.vm, sim.cpus[0]
    del vm.areas[va.va_start]  # as remove_vm_area would have done
    t0 = sim.env.now + 1000
    at(sim, t0, lambda: vm.free_vmap_area_noflush(c0, va))
    # a device interrupt (1 us) landing in the publish step, then 200 us switched out
    sim.irq.deliver(np.array([0]), np.array([t0 + 1.0]), 1000.0, 200_000.0)
    at(sim, t0 + 50, lambda: vm.purge_vmap_area_lazy(sim.cpus[1]))
    sim.env.run(until=t0 + 400_000)
    found = counts(sim)
    if unsafe:
        assert found.get("use_after_free") == 1
        example = sim.safety.examples["use_after_free"]
        assert example["cpus"] == [0, 1]
        assert [s for _, _, s in example["steps"]][-2:] == ["flushed", "__free_vmap_area"]
    else:
        assert found == {}


# --- double free and vmap_lazy_nr subtracted twice --------------------------------------------

@pytest.mark.parametrize("var,unsafe", [(variant("linux-4.5", purge_lock="none"), True),
                                        (variant("linux-4.5"), False),
                                        (variant("pen-2016-no-purge-lock"), False)])
def test_two_purges_take_the_same_areas(var: dict, unsafe: bool) -> None:
    """Two sync purges 100 ns apart. The full walk marks areas as it passes them, so two
    walks that overlap (no purge_lock) both take every lazy area; llist_del_all does not."""
    sim = build(var, cpus=3, background={"count": 2000})
    areas = [allocate(sim) for _ in range(3)]
    for va in areas:
        sim.env.run(until=at(sim, sim.env.now, lambda va=va: sim.vm.vfree(sim.cpus[0], va)))
    t0 = sim.env.now
    a = at(sim, t0, lambda: sim.vm.purge_vmap_area_lazy(sim.cpus[1]))
    b = at(sim, t0 + 100, lambda: sim.vm.purge_vmap_area_lazy(sim.cpus[2]))
    sim.env.run(until=simpy_all(sim, a, b))
    if unsafe:
        assert counts(sim) == {"double_free": 3, "lazy_nr_underflow": 4}  # 3 twice + negative
        assert sim.vm.vmap_lazy_nr == -6
    else:
        assert counts(sim) == {}
        assert sim.vm.vmap_lazy_nr == 0


# --- never purged ---------------------------------------------------------------------------

@pytest.mark.parametrize("var,unsafe", [(variant("linux-4.5", lazy_in_busy_tree=False), True),
                                        (variant("linux-4.5"), False),
                                        (variant("linux-5.4"), False)])
def test_lazy_area_lost_by_the_purge(var: dict, unsafe: bool) -> None:
    """The full walk only finds areas in vmap_area_list: unlinking them at free time (5.4's
    change) without 4.7's llist loses them; a drained run reports each."""
    sim = build(var)
    va = allocate(sim)
    sim.env.run(until=at(sim, sim.env.now, lambda: sim.vm.vfree(sim.cpus[0], va)))
    sim.drain()
    found = counts(sim)
    assert found.get("never_purged", 0) == (1 if unsafe else 0)
    if not unsafe:
        assert found == {}


# --- presets --------------------------------------------------------------------------------

CHOICES = {
    # name: (lazy_list, noflush_order, purge_lock, free_lock_break, allocator, lazy_in_busy,
    #        purge_context, vmap_nodes, purge_helpers)
    "linux-2.6.27": ("none", "read_then_publish", "none", 0, "first_fit_list", True,
                     "caller", False, False),
    "linux-4.5": ("full_walk", "publish_then_read", "spin", 0, "first_fit_cache", True,
                  "caller", False, False),
    "wilson-2016-v1": ("llist", "publish_then_read", "spin", 0, "first_fit_cache", True,
                       "caller", False, False),
    "linux-4.7": ("llist", "read_then_publish", "spin", 0, "first_fit_cache", True,
                  "caller", False, False),
    "pen-2016-no-purge-lock": ("llist", "read_then_publish", "none", 0, "first_fit_cache", True,
                               "caller", False, False),
    "fernandes-2016-refcount": ("llist", "read_then_publish", "refcount", 1, "first_fit_cache",
                                True, "caller", False, False),
    "linux-4.10": ("llist", "read_then_publish", "mutex", 1, "first_fit_cache", True,
                   "caller", False, False),
    "linux-5.2": ("llist", "read_then_publish", "mutex", 1, "augmented_tree", True,
                  "caller", False, False),
    "linux-5.4": ("llist", "read_then_publish", "mutex", 1, "augmented_tree", False,
                  "caller", False, False),
    "linux-5.5": ("llist", "read_then_publish", "mutex", 1, "augmented_tree", False,
                  "caller", False, False),
    "linux-5.11": ("sorted_tree", "read_then_publish", "mutex", 1, "augmented_tree", False,
                   "caller", False, False),
    "linux-5.18": ("sorted_tree", "read_then_publish", "mutex", 1, "augmented_tree", False,
                   "workqueue", False, False),
    "linux-6.9": ("per_node", "read_then_publish", "mutex", 0, "augmented_tree", False,
                  "workqueue", True, True),
}
FIELDS = ("lazy_list", "noflush_order", "purge_lock", "free_lock_break", "allocator",
          "lazy_in_busy_tree", "purge_context", "vmap_nodes", "purge_helpers")

VB_CHOICES = {name: (False, False) for name in CHOICES} | {"linux-6.9": (True, True)}
"""(vb_dirty_reset, vb_walk_all): Thomas Gleixner's 6.5 fixes of vm_unmap_aliases()'s block
walk, a09fad96ffb1 and fc1e0d980037."""


@pytest.mark.parametrize("name", list(CHOICES))
def test_preset_uses_exactly_its_choices(name: str) -> None:
    resolved = build(presets()[name]).config.variant
    assert tuple(getattr(resolved, f) for f in FIELDS) == CHOICES[name]
    assert (resolved.vb_dirty_reset, resolved.vb_walk_all) == VB_CHOICES[name]
    assert {"vb_dirty_reset", "vb_walk_all"} <= set(presets()[name])  # listed by every preset
    vm = build(presets()[name]).vm
    lazy, _, lock, _, allocator, in_busy, _, nodes, _ = CHOICES[name]
    assert type(vm.lazy) is {"full_walk": FullWalk, "llist": Llist, "sorted_tree": SortedTree,
                             "per_node": PerNodeLazy, "none": NoLazy}[lazy]
    if lazy == "sorted_tree":
        assert vm.lazy.lock.name == "purge_vmap_area_lock"
        assert vm.lazy.lock in vm.locks
    if lazy == "per_node":
        assert {lock.name for lock in vm.locks} >= {"vmap_node.lazy.lock",
                                                    "vmap_node.busy.lock"}
    expected_lock = {"spin": SpinPurgeLock, "mutex": MutexPurgeLock, "none": NoPurgeLock,
                     "refcount": RefcountPurgeLock}[lock]
    assert type(vm.purge_lock) is expected_lock
    if lock in ("spin", "mutex"):
        assert vm.purge_lock.lock.name == ("purge_lock" if lock == "spin" else "vmap_purge_lock")
    assert (vm.space is vm.busy) == (allocator in ("first_fit_cache", "first_fit_list"))
    assert vm.lazy_in_busy_tree is in_busy
    assert (vm.nodes is not None) == nodes
    assert vm.vmap_area_lock.name == ("free_vmap_area_lock" if nodes else
                                      "vmlist_lock" if lazy == "none" else "vmap_area_lock")


def test_every_preset_is_listed() -> None:
    assert set(presets()) == set(CHOICES)


# --- random small workloads ------------------------------------------------------------------

@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(SAFE), cpus=st.integers(1, 4), seed=st.integers(0, 2**16),
       live=st.integers(1, 6), rate=st.sampled_from([0, 5000, 50000]),
       dirty=st.booleans(), lazy_max=st.sampled_from([16, 64, "auto"]),
       noise=st.sampled_from([0, 100_000]))
def test_safe_presets_stay_clean(name, cpus, seed, live, rate, dirty, lazy_max, noise) -> None:
    """Random small workloads, device interrupts included (non-preemptible kernel): the safe
    presets never violate; the same seed gives the same counts."""
    workload = {**FIX_SIZE, "size": {"dist": "uniform", "min": 1, "max": 6},
                "live_per_cpu": live, "set_memory_rate": rate, "vmap_block_dirty": dirty,
                "background": {"count": 200}, "irq_noise": {"rate": noise, "mean": 3000}}
    config = RunConfig.model_validate({
        "machine": MACHINE, "workload": workload, "variant": presets()[name], "cpus": cpus,
        "lazy_max_pages": lazy_max, "duration": "300us"})
    first = Simulation(config, (seed,)).run()
    assert first["safety_violations"] == 0
    assert first["purges"] > 0 or lazy_max == "auto"
    again = Simulation(config, (seed,)).run()
    assert repr(again) == repr(first)  # NaN-aware: identical numbers


def test_all_kinds_are_metrics() -> None:
    metrics = build(presets()["linux-4.7"]).safety.metrics()
    assert set(metrics) == {f"safety_{k}" for k in KINDS} | {"safety_violations"}
