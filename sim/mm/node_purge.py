"""The Linux 6.9 purge over vmap nodes: per-node lazy trees, pool decay, purge helpers.

282631cb2447 "mm: vmalloc: remove global purge_vmap_area_root rb-tree" and 72210662c5a2
"mm: vmalloc: offload free_vmap_area_lock lock" (Uladzislau Rezki, "Mitigate a vmap lock
contention" v3, 2 Jan 2024, merged for 6.9): ``free_vmap_area_noflush`` inserts a lazily freed
area into the lazy tree of its node (``vn->lazy``, under ``vn->lazy.lock``; no merging, so each
area keeps the node it goes back to), and ``__purge_vmap_area_lazy(start, end, false)``, with
``vmap_purge_lock`` held:

1. for every node: ``decay_va_pool_node`` (a quarter of each pool back to the free tree), then,
   if its lazy tree is not empty, ``list_replace_init(&vn->lazy.head, &vn->purge_list)`` under
   ``vn->lazy.lock``, widening [start, end) by its first and last entries;
2. one ``flush_tlb_kernel_range(start, end)`` over the union;
3. ``nr_purge_helpers = clamp(vmap_lazy_nr / lazy_max_pages(), 1, nr_purge_nodes) - 1``: the
   first that many nodes are purged by ``schedule_work_on(node)`` helpers (a kworker on the
   node's CPU), the rest by the purging context itself, which then ``flush_work``\\ s the helpers;
4. ``purge_vmap_node``: each area goes back to its node's pool (``node_pool_add_va``, one
   ``pool_lock`` hold per area) if it is of pool-able size, else to a local list merged into the
   free tree under ``free_vmap_area_lock`` (``reclaim_list_global``); one
   ``atomic_long_sub(nr_purged_pages, &vmap_lazy_nr)`` per node.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from typing import TYPE_CHECKING

import simpy

from sim.engine.cpu import Cpu
from sim.mm.lazy import LazyList, Nodes
from sim.mm.vmap_area import VmapArea
from sim.mm.vmap_node import MAX_VA_SIZE_PAGES, VmapNode, VmapNodes
from sim.mm.workqueue import Kworker

if TYPE_CHECKING:
    from sim.mm.vmalloc import VmallocModel

Gen = Generator[simpy.Event, None, None]

POOL_SCAN_LINES = math.ceil(MAX_VA_SIZE_PAGES * 24 / 64)
"""Cache lines of ``vn->pool[]`` (256 ``struct vmap_pool``: a list head and a length, 24
bytes each) that ``decay_va_pool_node`` reads on every purge to find the non-empty pools;
each is costed as one cached read (``rbtree_level_ns``)."""


class PerNodeLazy(LazyList):
    """``lazy_list: per_node``: each node's lazy tree under its own ``vn->lazy.lock``."""

    cold_walk = True

    def __init__(self, nodes: VmapNodes) -> None:
        self.vmap_nodes = nodes

    def publish(self, vm: VmallocModel, cpu: Cpu, va: VmapArea) -> Gen:
        # vn = is_vn_id_valid(vn_id) ? id_to_node(vn_id) : addr_to_node(va->va_start);
        # spin_lock(&vn->lazy.lock); insert_vmap_area(va, &vn->lazy.root, &vn->lazy.head);
        vn = lazy_node(self.vmap_nodes, va)
        yield from cpu.spin_lock(vn.lazy_lock)
        vn.lazy.append(va)
        depth = math.log2(len(vn.lazy) + 1)
        cpu.charge(vm.costs.lock_acquire_ns + depth * vm.costs.rbtree_level_ns)
        yield from cpu.spin_unlock(vn.lazy_lock)

    def collect(self, vm: VmallocModel, cpu: Cpu) -> Generator[simpy.Event, None, Nodes]:
        raise TypeError("per-node lazy trees are purged node by node (sim/mm/node_purge.py)")

    def pending(self) -> int:
        return sum(len(vn.lazy) for vn in self.vmap_nodes.nodes)


def lazy_node(nodes: VmapNodes, va: VmapArea) -> VmapNode:
    """The node whose lazy tree (and then pool) takes ``va``: the allocating CPU's node for a
    pool-able size (``node_alloc`` encoded it in ``va->flags``), else ``addr_to_node``."""
    if va.size <= MAX_VA_SIZE_PAGES:
        return nodes.cpu_to_node(va.cpu)
    return nodes.addr_to_node(va.va_start)


def purge_vmap_nodes(vm: VmallocModel, cpu: Cpu, start: int, end: int, force_flush: bool
                     ) -> Generator[simpy.Event, None, list[VmapArea]]:
    """Steps 1-4 of the module docstring; returns the areas purged (``vmap_purge_lock`` held
    by the caller)."""
    purge_nodes: list[VmapNode] = []
    for vn in vm.nodes.nodes:
        yield from decay_va_pool_node(vm, cpu, vn)
        if not vn.lazy:  # RB_EMPTY_ROOT(&vn->lazy.root), read without the lock
            continue
        yield from cpu.spin_lock(vn.lazy_lock)
        vn.purge_list, vn.lazy = sorted(vn.lazy, key=lambda va: va.va_start), []
        cpu.charge(vm.costs.lock_acquire_ns)
        yield from cpu.spin_unlock(vn.lazy_lock)
        start = min(start, vn.purge_list[0].va_start)
        end = max(end, max(va.va_end for va in vn.purge_list))
        purge_nodes.append(vn)
    areas = [va for vn in purge_nodes for va in vn.purge_list]
    for va in areas:
        vm.safety.read(va, vm.now(cpu), cpu.id, "walked the lazy area")
    if purge_nodes or force_flush:
        yield from vm.flusher.flush_tlb_kernel_range(cpu, start, end)
    if purge_nodes:
        yield from spread_over_helpers(vm, cpu, purge_nodes)
    return areas


def spread_over_helpers(vm: VmallocModel, cpu: Cpu, purge_nodes: list[VmapNode]) -> Gen:
    """``nr_purge_helpers`` nodes go to ``schedule_work_on(i, &vn->purge_work)``, the rest are
    purged here; then ``flush_work`` on each helper (without ``purge_helpers``: all here)."""
    cpu.charge(vm.costs.atomic_ns)  # atomic_long_read(&vmap_lazy_nr)
    helpers = 0
    if vm.purge_helpers:
        helpers = min(max(vm.vmap_lazy_nr // vm.lazy_max_pages, 1), len(purge_nodes)) - 1
    running: list[simpy.Process] = []
    for vn in purge_nodes:
        kworker = vm.purge_kworker(vn.id) if helpers > 0 else None
        if kworker is not None and kworker.id not in vm.purge_helpers_busy:
            running.append(schedule_work_on(vm, cpu, kworker, vn))
            helpers -= 1
        else:
            yield from purge_vmap_node(vm, cpu, vn)
    for process in running:  # flush_work(&vn->purge_work): sleep until it has run
        yield from cpu.settle()
        if process.is_alive:
            yield from cpu.sleep_on(process)
            cpu.charge(vm.costs.mutex_wake_ns)  # woken by complete()


def schedule_work_on(vm: VmallocModel, cpu: Cpu, kworker: Kworker, vn: VmapNode
                     ) -> simpy.Process:
    """``schedule_work_on(vn->id, &vn->purge_work)``: queue under the pool's lock, wake the
    kworker of the node's CPU; it starts ``mutex_wake_ns`` later."""
    cpu.charge(vm.costs.atomic_ns + vm.costs.lock_acquire_ns)
    vm.purge_helpers_busy.add(kworker.id)
    vm.purge_helper_runs += 1

    def helper(woken: float) -> Gen:
        yield vm.env.timeout(max(0.0, woken - vm.env.now) + vm.costs.mutex_wake_ns)
        yield from kworker.run(purge_vmap_node(vm, kworker, vn))
        vm.purge_helpers_busy.discard(kworker.id)

    return vm.env.process(helper(vm.now(cpu)))


def purge_vmap_node(vm: VmallocModel, ctx: Cpu, vn: VmapNode) -> Gen:
    """``purge_vmap_node``: pool-able areas back to ``vn``'s pools one ``pool_lock`` hold each
    (the lock is released between areas only when someone waits for it: the same interleaving
    at area granularity), one ``atomic_long_sub`` for the node, then the rest merged into the
    free tree by ``reclaim_list_global``."""
    c = vm.costs
    areas, vn.purge_list = vn.purge_list, []
    to_global = [va for va in areas if va.size > MAX_VA_SIZE_PAGES]
    pooled = [va for va in areas if va.size <= MAX_VA_SIZE_PAGES]
    ctx.charge(len(to_global) * c.list_walk_per_node_ns)
    if pooled:
        yield from ctx.spin_lock(vn.pool_lock)
        for i, va in enumerate(pooled):  # node_pool_add_va(vn, va)
            ctx.charge(c.list_walk_per_node_ns + c.lock_acquire_ns)
            if vm.safety.freed(va, vm.now(ctx), ctx.id):
                vn.pool.setdefault(va.size, []).append(va.va_start)
            if i + 1 < len(pooled):
                yield from ctx.settle()
                if vn.pool_lock.waiters:
                    yield from ctx.spin_unlock(vn.pool_lock)
                    yield from ctx.spin_lock(vn.pool_lock)
        yield from ctx.spin_unlock(vn.pool_lock)
    for va in areas:
        vm.safety.lazy_subtracted(va, vm.now(ctx), ctx.id)
    vm.atomic_lazy_nr(ctx, -sum(va.size for va in areas))
    yield from reclaim_list_global(vm, ctx, to_global)


def reclaim_list_global(vm: VmallocModel, ctx: Cpu, areas: list[VmapArea]) -> Gen:
    """``reclaim_list_global``: merge each area into the free tree under
    ``free_vmap_area_lock`` (one hold, no lock break in 6.9)."""
    if not areas:
        return
    yield from ctx.spin_lock(vm.free_vmap_area_lock)
    ctx.charge(vm.costs.lock_acquire_ns + vm.free_tree_write(ctx)
               + len(areas) * (vm.rbtree_ns(vm.space) + vm.costs.kmalloc_ns))
    for va in areas:
        if vm.safety.freed(va, vm.now(ctx), ctx.id):
            vm.space.erase(va.va_start)
    yield from ctx.spin_unlock(vm.free_vmap_area_lock)


def decay_va_pool_node(vm: VmallocModel, cpu: Cpu, vn: VmapNode) -> Gen:
    """``decay_va_pool_node(vn, false)``: scan the node's 256 pools; detach each non-empty one
    under ``pool_lock``, merge its first ``len >> 2`` ranges into a local tree, attach the rest
    back under ``pool_lock`` (both holds of one pool are costed in one hold here), then
    ``reclaim_list_global`` of what was taken: those ranges leave the reserved space."""
    c = vm.costs
    cpu.charge(POOL_SCAN_LINES * c.rbtree_level_ns)
    populated = [starts for starts in vn.pool.values() if starts]
    if not populated:
        return
    decayed: list[int] = []
    yield from cpu.spin_lock(vn.pool_lock)
    for starts in populated:
        n_decay = len(starts) >> 2
        if n_decay:
            decayed += starts[-n_decay:]
            del starts[-n_decay:]
    cpu.charge(len(populated) * 2 * c.lock_acquire_ns)
    yield from cpu.spin_unlock(vn.pool_lock)
    if not decayed:
        return
    cpu.charge(len(decayed) * c.rbtree_level_ns * math.log2(len(decayed) + 1))
    yield from cpu.spin_lock(vm.free_vmap_area_lock)
    cpu.charge(c.lock_acquire_ns + vm.free_tree_write(cpu)
               + len(decayed) * (vm.rbtree_ns(vm.space) + c.kmalloc_ns))
    for addr in decayed:  # merge_or_add_vmap_area_augment(va, &free_vmap_area_root)
        vm.space.erase(addr)
    yield from cpu.spin_unlock(vm.free_vmap_area_lock)
