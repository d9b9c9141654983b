"""Linux 5.11's sorted purge tree (96e2db456135) and 5.18's workqueue drain ("mm/vmalloc: Move
draining areas out of caller context"): hand-placed sequences with exact outcomes."""

from __future__ import annotations

import numpy as np
import simpy
import yaml

from sim.config.loader import catalog_dir
from sim.config.schema import MachineProfile, RunConfig
from sim.engine.machine import Machine
from sim.mm.lazy import SortedTree
from sim.mm.variants import presets
from sim.mm.vmap_area import VmapArea
from sim.mm.workqueue import Kworker
from sim.simulation import Simulation
from tests.test_safety import allocate, at, counts

MACHINE = yaml.safe_load((catalog_dir("cpus") / "xeon-2s-112.yaml").read_text())
FIX_SIZE = yaml.safe_load((catalog_dir("workloads") / "test_vmalloc-fix_size.yaml").read_text())
COSTS = MACHINE["costs"]
MACHINE_PROFILE = MachineProfile.model_validate(MACHINE)


def build(name: str, cpus: int = 2, lazy_max_pages: int | str = "auto") -> Simulation:
    work = {**FIX_SIZE, "background": {"count": 0}}
    config = RunConfig.model_validate({"machine": MACHINE, "workload": work,
                                       "variant": presets()[name], "cpus": cpus,
                                       "lazy_max_pages": lazy_max_pages, "duration": 1e6})
    return Simulation(config, (0,))


def vfree(sim: Simulation, cpu: int, va: VmapArea) -> float:
    """One vfree on ``cpu``, run to its return; its latency."""
    before = sim.metrics.vfree.total
    sim.env.run(until=at(sim, sim.env.now, lambda: sim.vm.vfree(sim.cpus[cpu], va)))
    return sim.metrics.vfree.total - before


# --- 5.11: the sorted purge tree ---------------------------------------------------------------

def test_purge_tree_merges_adjacent_lazy_areas() -> None:
    """merge_or_add_vmap_area: a node absorbs the area ending at its start or starting at its
    end; a gap keeps nodes apart."""
    tree = SortedTree(simpy.Environment(), Machine(MACHINE_PROFILE, 2), lambda a, b, k: 0.0)
    for ident, (start, end) in enumerate([(0, 2), (4, 6), (10, 12), (2, 4), (6, 8)]):
        tree.merge_or_add_vmap_area(VmapArea(start, end, 0, ident))
    assert tree.nodes() == 2  # [0, 8) and [10, 12)
    assert tree.pending() == 5
    assert [(va.va_start, va.va_end) for va in tree._nodes[0][1]] == [(0, 2), (2, 4), (4, 6),
                                                                       (6, 8)]


def purge_three_neighbours(name: str) -> Simulation:
    """Three adjacent areas (each 1 page + guard) lazily freed by CPU 0, purged by CPU 1."""
    sim = build(name)
    areas = [allocate(sim) for _ in range(3)]
    assert [(va.va_start, va.va_end) for va in areas] == [(0, 2), (2, 4), (4, 6)]
    for va in areas:
        vfree(sim, 0, va)
    sim.env.run(until=at(sim, sim.env.now, lambda: sim.vm.purge_vmap_area_lazy(sim.cpus[1])))
    assert all(va.freed_at is not None for va in areas)  # each area still freed and reported
    assert counts(sim) == {} and sim.vm.vmap_lazy_nr == 0
    return sim


def test_merged_neighbours_are_one_node_of_the_purge_walk() -> None:
    """linux-5.4 walks the llist area by area; linux-5.11 walks the merged node once."""
    old, new = purge_three_neighbours("linux-5.4"), purge_three_neighbours("linux-5.11")
    assert (old.metrics.purge_areas, old.metrics.purge_nodes) == (3, 3)
    assert (new.metrics.purge_areas, new.metrics.purge_nodes) == (3, 1)
    assert new.metrics.purge.total < old.metrics.purge.total
    stat = new.lock_stats()["purge_vmap_area_lock"]
    assert stat["acquisitions"] == 4  # three merge_or_add_vmap_area, one list_replace_init


# --- 5.18: the drain in a workqueue -------------------------------------------------------------

def test_vfree_crossing_the_threshold_does_not_wait_for_the_purge() -> None:
    """lazy_max_pages 4: the third 2-page vfree crosses it. linux-5.11's caller purges before
    returning; linux-5.18's only queues drain_vmap_work, which a kworker runs afterwards."""
    latency = {}
    for name in ("linux-5.11", "linux-5.18"):
        sim = build(name, lazy_max_pages=4)
        areas = [allocate(sim) for _ in range(3)]
        before = [vfree(sim, 0, va) for va in areas[:2]]
        latency[name] = vfree(sim, 0, areas[2])
        if name == "linux-5.11":
            assert sim.metrics.purge.n == 1
            assert latency[name] > sim.metrics.purge.total  # the caller waited for it all
        else:
            assert sim.metrics.purge.n == 0 and sim.vm.vmap_lazy_nr == 6
            assert not sim.vm.drain_vmap_work.idle()
            sim.env.run(until=sim.vm.drain_vmap_work.process)
            assert sim.metrics.purge.n == 1 and sim.vm.vmap_lazy_nr == 0
            assert isinstance(sim.vm.kworkers[0], Kworker)
            # the caller paid test_and_set_bit + insert_work under pool->lock, nothing more
            assert latency[name] - before[1] < 2 * (COSTS["atomic_ns"]
                                                    + COSTS["lock_acquire_ns"])
        assert counts(sim) == {}
    assert latency["linux-5.18"] < latency["linux-5.11"] / 5


def test_drain_loops_while_over_the_threshold_and_requeues_once() -> None:
    """The kworker's first purge takes CPU 0's three areas and waits for CPU 2's ack (CPU 2 is
    in a 200 us interrupt); meanwhile CPU 1 frees three more, crossing the threshold again:
    its schedule_work sets PENDING once (then no-ops). After the purge vmap_lazy_nr is 6 > 4,
    so drain_vmap_area_work purges again; then the re-queued item runs once more and finds
    nothing (a do-while: one purge at least)."""
    sim = build("linux-5.18", cpus=3, lazy_max_pages=4)
    mine = [allocate(sim, cpu=0) for _ in range(3)]
    theirs = [allocate(sim, cpu=1) for _ in range(3)]
    t0 = sim.env.now
    sim.irq.deliver(np.array([2]), np.array([t0]), 200_000.0)
    for va in mine:
        vfree(sim, 0, va)
    work = sim.vm.drain_vmap_work
    assert work.pending and work.runs == 0
    sim.env.run(until=t0 + 20_000)
    assert work.runs == 1 and not work.pending and sim.metrics.purge.n == 0
    for va in theirs:
        vfree(sim, 1, va)
    assert work.pending
    sim.env.run(until=work.process)
    assert work.runs == 2 and work.idle()
    assert sim.metrics.purge.n == 3
    assert (sim.metrics.purge_areas, sim.metrics.purge_nodes) == (6, 2)
    assert sim.vm.vmap_lazy_nr == 0 and counts(sim) == {}


def test_kworker_time_is_stolen_from_its_cpu() -> None:
    """The kworker runs on the CPU that queued the work: what it computes pauses that CPU's
    task like a handler, and the other CPU is untouched but for the flush IPI."""
    sim = build("linux-5.18", lazy_max_pages=4)
    areas = [allocate(sim) for _ in range(3)]
    for va in areas:
        vfree(sim, 0, va)
    sim.env.run(until=sim.vm.drain_vmap_work.process)
    stolen = [(s, e) for s, e, _ in sim.irq.handlers[0]]
    assert stolen and all(e > s for s, e in stolen)
    assert sum(e - s for s, e in stolen) < sim.metrics.purge.total + COSTS["atomic_ns"]


def test_drain_waits_for_the_queued_work() -> None:
    """A run drained right after a vfree queued the work: the worker finishes first, then
    vm_unmap_aliases(); nothing is lost."""
    sim = build("linux-5.18", lazy_max_pages=4)
    areas = [allocate(sim) for _ in range(3)]
    for va in areas:
        vfree(sim, 0, va)
    assert not sim.vm.drain_vmap_work.idle()
    sim.drain()
    assert sim.vm.drain_vmap_work.idle() and sim.vm.drain_vmap_work.runs == 1
    assert sim.metrics.purge.n == 2  # the kworker's, then vm_unmap_aliases()'s (empty)
    assert sim.metrics.purge_areas == 3 and counts(sim) == {}


# --- 5.5: the allocator's lock apart from the busy tree's --------------------------------------

def test_split_locks_allocation_takes_both_and_the_purge_only_the_free_lock() -> None:
    """linux-5.5: a vmalloc splits a free block under free_vmap_area_lock, then inserts the
    area under vmap_area_lock (two holds, never nested); vfree's three holds are all
    vmap_area_lock's; the purge merges under free_vmap_area_lock alone. linux-5.4 has one lock
    for all of it."""
    sim = build("linux-5.5")
    vm = sim.vm
    assert vm.free_vmap_area_lock is not vm.vmap_area_lock
    assert {lock.name for lock in vm.locks} >= {"free_vmap_area_lock", "vmap_area_lock"}
    va = allocate(sim)
    assert (vm.free_vmap_area_lock.stat.acquisitions, vm.vmap_area_lock.stat.acquisitions) \
        == (1, 1)
    vfree(sim, 0, va)
    assert vm.vmap_area_lock.stat.acquisitions == 4  # find, remove_vm_area, unlink
    assert vm.free_vmap_area_lock.stat.acquisitions == 1
    sim.env.run(until=at(sim, sim.env.now, lambda: vm.purge_vmap_area_lazy(sim.cpus[1])))
    assert vm.free_vmap_area_lock.stat.acquisitions == 2 and \
        vm.vmap_area_lock.stat.acquisitions == 4
    assert counts(sim) == {} and va.freed_at is not None
    old = build("linux-5.4").vm
    assert old.free_vmap_area_lock is old.vmap_area_lock
    assert old.vmap_area_lock.name == "vmap_area_lock"


# --- 2.6.27: before lazy freeing ---------------------------------------------------------------

def test_linux_2_6_27_vfree_flushes_every_cpu_at_once_under_vmlist_lock() -> None:
    """No lazy freeing: the vfree clears the PTEs and waits for a flush_tlb_all() IPI to every
    other CPU while it holds vmlist_lock; the range is free again when it returns (the next
    vmalloc gets it), nothing is left to purge, and each vmalloc walks vmlist from its head."""
    sim = build("linux-2.6.27", cpus=4)
    vm, m = sim.vm, sim.metrics
    assert vm.vmap_area_lock.name == "vmlist_lock" and vm.purge_lock.lock is None
    first = allocate(sim)
    second = allocate(sim)
    assert m.alloc_walk_steps == 1  # the second walked past the first
    vfree(sim, 0, first)
    assert (m.tlb_flush_full, m.tlb_flush_range, m.ipis) == (1, 0, 3)
    assert m.purge.n == 0 and vm.vmap_lazy_nr == 0 and vm.lazy.pending() == 0
    assert first.freed_at is not None and counts(sim) == {}
    flush = (COSTS["ipi_delivery_ns"] + 2 * COSTS["ipi_send_same_socket_ns"]
             + COSTS["ipi_handler_ns"] + COSTS["flush_full_ns"])
    assert vm.vmap_area_lock.stat.hold_max > flush  # the IPI round trip under the lock
    again = allocate(sim)
    assert again.va_start == first.va_start  # reused at once: its flush is done
    sim.drain()
    assert counts(sim) == {} and second.freed_at is None
