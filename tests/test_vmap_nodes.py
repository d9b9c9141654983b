"""Linux 6.9's vmap nodes ("Mitigate a vmap lock contention" v3): per-node busy trees and
locks, ``addr_to_node_id``, the contention they take off the busy-tree lock, and the
size-segregated per-node pools."""

from __future__ import annotations

import pydantic
import pytest
import simpy
import yaml

from sim.config.loader import catalog_dir
from sim.config.schema import MachineProfile, RunConfig, Variant
from sim.engine.locks import no_handoff
from sim.engine.machine import Machine
from sim.mm.variants import presets
from sim.mm.vmap_node import VmapNodes
from sim.simulation import Simulation
from tests.test_drain_logic import build, vfree
from tests.test_safety import allocate, at, counts

MACHINE = yaml.safe_load((catalog_dir("cpus") / "xeon-2s-112.yaml").read_text())
FIX_SIZE = yaml.safe_load((catalog_dir("workloads") / "test_vmalloc-fix_size.yaml").read_text())


def machine(cpus: int) -> Machine:
    return Machine(MachineProfile.model_validate(MACHINE), cpus)


@pytest.mark.parametrize("cpus,nodes", [(1, 1), (4, 4), (112, 112), (128, 128), (256, 128)])
def test_one_node_per_cpu_at_most_128(cpus: int, nodes: int) -> None:
    assert len(VmapNodes(simpy.Environment(), machine(cpus), no_handoff).nodes) == nodes


def test_addr_to_node_id_is_16_page_zones_round_robin() -> None:
    """addr_to_node_id(addr) = (addr / vmap_zone_size) % nr_vmap_nodes, 16-page zones."""
    vn = VmapNodes(simpy.Environment(), machine(4), no_handoff)
    ids = [vn.addr_to_node(addr).id for addr in (0, 15, 16, 31, 32, 48, 63, 64, 16 * 9 + 3)]
    assert ids == [0, 0, 1, 1, 2, 3, 3, 0, 1]
    assert len({id(node.lock.stat) for node in vn.nodes}) == 1  # one lock class


def test_vmap_nodes_need_the_augmented_free_tree() -> None:
    with pytest.raises(pydantic.ValidationError, match="vmap_nodes needs"):
        Variant.model_validate({**presets()["linux-5.4"], "name": "x", "vmap_nodes": True,
                                "allocator": "first_fit_cache"})


def busy_lock_contended_share(variant: str, cpus: int) -> float:
    """test_vmalloc fix_size on every CPU: the share of acquisitions of the busy-tree lock
    class that had to wait (vmap_area_lock before 6.9, the nodes' busy.lock in 6.9)."""
    workload = {**FIX_SIZE, "live_per_cpu": 4}
    config = RunConfig.model_validate({"machine": MACHINE, "workload": workload,
                                       "variant": presets()[variant], "cpus": cpus,
                                       "duration": "1ms", "warmup": "100us"})
    sim = Simulation(config, (7, cpus))
    assert sim.run()["safety_violations"] == 0
    stats = sim.lock_stats()
    lock = "vmap_node.busy.lock" if sim.vm.nodes is not None else "vmap_area_lock"
    return stats[lock]["contentions"] / stats[lock]["acquisitions"]


def test_per_node_lock_contention_stays_far_below_the_global_lock() -> None:
    """linux-6.9's per-node busy.lock makes a CPU wait on under a quarter of its acquisitions
    (neighbouring allocations share a 16-page zone, hence a node), where
    linux-5.4's one vmap_area_lock over the busy tree and the allocator makes it wait on most,
    at every CPU count (one socket, and two from 29 CPUs on this profile)."""
    for cpus in (2, 8, 32):
        assert busy_lock_contended_share("linux-6.9", cpus) < 0.25
        assert busy_lock_contended_share("linux-5.4", cpus) > 0.5


# --- size-segregated per-node pools (72210662c5a2) ------------------------------------------

def purge(sim: Simulation, cpu: int) -> None:
    sim.env.run(until=at(sim, sim.env.now, lambda: sim.vm.purge_vmap_area_lazy(sim.cpus[cpu])))


def test_purged_area_goes_to_its_allocating_cpus_node_pool_and_is_reused_from_it() -> None:
    """A purged 2-page area (1 page + guard) allocated on CPU 1 goes to node 1's pool of size
    2, its range still reserved in vm.space; CPU 1's next 1-page vmalloc gets it back from the
    pool without touching free_vmap_area_lock or vm.space; CPU 0 (node 0) does not see it."""
    sim = build("linux-6.9", cpus=2)
    vm = sim.vm
    va = allocate(sim, cpu=1)
    assert (va.va_start, va.va_end) == (0, 2)
    vfree(sim, 1, va)
    purge(sim, 0)
    assert va.freed_at is not None and vm.vmap_lazy_nr == 0
    assert vm.nodes.nodes[1].pool == {2: [0]} and vm.nodes.nodes[0].pooled() == 0
    assert vm.space.count == 1  # pooled: not in the free tree
    other = allocate(sim, cpu=0)  # node 0's pool is empty: the free tree, next range
    assert (other.va_start, other.va_end) == (2, 4) and vm.pool_allocs == 0
    free_lock = vm.vmap_area_lock.stat.acquisitions
    again = allocate(sim, cpu=1)
    assert (again.va_start, again.va_end) == (0, 2) and vm.pool_allocs == 1
    assert vm.vmap_area_lock.stat.acquisitions == free_lock  # pool_lock only
    assert vm.nodes.pooled() == 0 and vm.space.count == 2 and vm.areas[0] is again
    pool_lock = sim.lock_stats()["vmap_node.pool_lock"]
    assert pool_lock["acquisitions"] == 2  # add, take (an empty pool is seen without it)
    assert counts(sim) == {}


def test_areas_larger_than_256_pages_bypass_the_pools() -> None:
    """256 pages with its guard is the largest pooled size; 257 goes back to the free tree."""
    sim = build("linux-6.9", cpus=1)
    small, large = allocate(sim, pages=255), allocate(sim, pages=256)
    assert (small.size, large.size) == (256, 257)
    vfree(sim, 0, small)
    vfree(sim, 0, large)
    purge(sim, 0)
    assert sim.vm.nodes.nodes[0].pool == {256: [small.va_start]}
    assert sim.vm.space.count == 1
    assert counts(sim) == {}


def test_each_purge_first_decays_a_quarter_of_every_pool() -> None:
    """decay_va_pool_node: len >> 2 entries of each pool, from its head, go back to the free
    tree before the purged areas are pooled."""
    sim = build("linux-6.9", cpus=1)
    areas = [allocate(sim) for _ in range(9)]
    for va in areas[:8]:
        vfree(sim, 0, va)
    purge(sim, 0)
    pool = sim.vm.nodes.nodes[0].pool
    assert pool == {2: [va.va_start for va in areas[:8]]}  # nothing to decay yet
    assert sim.vm.space.count == 9
    vfree(sim, 0, areas[8])
    purge(sim, 0)  # 8 >> 2 = 2 decayed (the last two added), then areas[8] pooled
    assert pool == {2: [va.va_start for va in areas[:6]] + [areas[8].va_start]}
    assert sim.vm.space.count == 7
    assert counts(sim) == {}


def test_pooled_ranges_are_never_reused_before_their_flush() -> None:
    """A busy run of linux-6.9 serves allocations from the pools and stays safe."""
    workload = {**FIX_SIZE, "live_per_cpu": 4}
    config = RunConfig.model_validate({"machine": MACHINE, "workload": workload,
                                       "variant": presets()["linux-6.9"], "cpus": 4,
                                       "lazy_max_pages": 64, "duration": "300us"})
    sim = Simulation(config, (3,))
    assert sim.run()["safety_violations"] == 0
    assert sim.vm.pool_allocs > 0


# --- per-node lazy trees and purge helpers (282631cb2447) ----------------------------------

def free_on_every_cpu(sim: Simulation, per_cpu: int) -> dict[int, list]:
    """``per_cpu`` 1-page areas allocated and freed by each CPU, with no purge in between."""
    areas = {cpu.id: [allocate(sim, cpu=cpu.id) for _ in range(per_cpu)] for cpu in sim.cpus}
    for cpu, vas in areas.items():
        for va in vas:
            vfree(sim, cpu, va)
    return areas


def test_a_lazily_freed_area_goes_to_its_nodes_lazy_tree() -> None:
    """A pool-able area goes to the lazy tree of the node that allocated it (the CPU's), under
    that node's lazy.lock; a larger one to addr_to_node(va_start)'s; nothing is purged yet."""
    sim = build("linux-6.9", cpus=4, lazy_max_pages=10_000)
    vm = sim.vm
    small = allocate(sim, cpu=1)
    large = allocate(sim, cpu=1, pages=300)
    vfree(sim, 1, small)
    vfree(sim, 1, large)
    assert vm.nodes.nodes[1].lazy == [small]
    assert vm.nodes.addr_to_node(large.va_start).lazy == [large]
    assert vm.lazy.pending() == 2 and vm.vmap_lazy_nr == small.size + large.size
    assert sim.lock_stats()["vmap_node.lazy.lock"]["acquisitions"] == 2
    assert "purge_vmap_area_lock" not in sim.lock_stats()


def test_one_flush_over_the_union_of_the_nodes_lazy_lists() -> None:
    """The purge takes every node's lazy list, flushes once over their union, then frees:
    each node's areas go back to its pool and vmap_lazy_nr drops to zero."""
    sim = build("linux-6.9", cpus=4, lazy_max_pages=10_000)
    vm = sim.vm
    areas = free_on_every_cpu(sim, 2)
    flushes = sim.metrics.tlb_flush_range + sim.metrics.tlb_flush_full
    purge(sim, 0)
    assert sim.metrics.tlb_flush_range + sim.metrics.tlb_flush_full == flushes + 1
    assert vm.vmap_lazy_nr == 0 and vm.lazy.pending() == 0
    for cpu, vas in areas.items():
        assert sorted(vm.nodes.nodes[cpu].pool[2]) == sorted(va.va_start for va in vas)
        assert all(va.freed_at is not None for va in vas)
    assert vm.purge_helper_runs == 0  # 16 pages of backlog is under one lazy_max_pages()
    assert counts(sim) == {}


@pytest.mark.parametrize("lazy_max,helpers", [(1000, 0), (16, 1), (8, 3), (1, 3)])
def test_purge_helpers_one_per_lazy_max_pages_of_backlog(lazy_max: int, helpers: int) -> None:
    """nr_purge_helpers = clamp(vmap_lazy_nr / lazy_max_pages(), 1, nodes) - 1 (32 pages of
    backlog over 4 nodes): the first nodes go to kworkers on their own CPUs, the rest are
    freed by the purging CPU (3), which returns only when the helpers are done."""
    sim = build("linux-6.9", cpus=4, lazy_max_pages=10_000)
    vm = sim.vm
    areas = free_on_every_cpu(sim, 4)
    assert vm.vmap_lazy_nr == 32
    vm.lazy_max_pages = lazy_max
    purge(sim, 3)
    assert vm.purge_helper_runs == helpers
    for node, vas in areas.items():
        expected = node if node < helpers else 3
        assert {va.freed_by for va in vas} == {expected}
        assert all(va.freed_at <= sim.env.now for va in vas)
    assert vm.vmap_lazy_nr == 0 and not vm.purge_helpers_busy
    assert counts(sim) == {}


def test_without_purge_helpers_the_purger_frees_every_node() -> None:
    composed = {**presets()["linux-6.9"], "name": "no-helpers", "purge_helpers": False}
    config = RunConfig.model_validate({"machine": MACHINE, "workload": {**FIX_SIZE,
                                       "background": {"count": 0}}, "variant": composed,
                                       "cpus": 4, "lazy_max_pages": 10_000, "duration": 1e6})
    sim = Simulation(config, (0,))
    areas = free_on_every_cpu(sim, 4)
    sim.vm.lazy_max_pages = 1
    purge(sim, 3)
    assert sim.vm.purge_helper_runs == 0
    assert {va.freed_by for vas in areas.values() for va in vas} == {3}


@pytest.mark.parametrize("changes,message", [
    ({"lazy_list": "per_node", "vmap_nodes": False}, "per_node needs vmap_nodes"),
    ({"lazy_list": "sorted_tree", "purge_helpers": True}, "purge_helpers needs"),
])
def test_per_node_parts_need_their_base(changes: dict, message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        Variant.model_validate({**presets()["linux-6.9"], "name": "x", **changes})


def test_busy_6_9_run_with_helpers_is_safe_and_uses_them() -> None:
    """Many CPUs freeing fast with a small lazy_max_pages(): the backlog the drain kworker finds
    is several thresholds deep, so helpers run; every area is purged exactly once."""
    workload = {**FIX_SIZE, "live_per_cpu": 2}
    config = RunConfig.model_validate({"machine": MACHINE, "workload": workload,
                                       "variant": presets()["linux-6.9"], "cpus": 16,
                                       "lazy_max_pages": 8, "duration": "200us"})
    sim = Simulation(config, (5,))
    assert sim.run()["safety_violations"] == 0
    assert sim.vm.purge_helper_runs > 0


def test_nodes_with_one_global_lazy_list_pool_and_decay_alike() -> None:
    """A composition of 6.9's nodes with 5.11's one sorted purge tree: the purge pools and
    decays through the same decay_va_pool_node as 6.9's per-node purge."""
    composed = {**presets()["linux-6.9"], "name": "nodes-global-lazy",
                "lazy_list": "sorted_tree", "purge_helpers": False}
    config = RunConfig.model_validate({"machine": MACHINE, "workload": {**FIX_SIZE,
                                       "background": {"count": 0}}, "variant": composed,
                                       "cpus": 1, "lazy_max_pages": 10_000, "duration": 1e6})
    sim = Simulation(config, (0,))
    areas = [allocate(sim) for _ in range(9)]
    for va in areas[:8]:
        vfree(sim, 0, va)
    purge(sim, 0)
    pool = sim.vm.nodes.nodes[0].pool
    assert sorted(pool[2]) == sorted(va.va_start for va in areas[:8])
    vfree(sim, 0, areas[8])
    purge(sim, 0)  # 8 >> 2 = 2 decayed first, then areas[8] pooled
    assert len(pool[2]) == 7 and areas[8].va_start in pool[2]
    assert sim.vm.space.count == 7 and counts(sim) == {}
