"""The lazy purge of mm/vmalloc.c: ``__purge_vmap_area_lazy``, its free loop, and 5.18's
``drain_vmap_area_work``.

A mixin of :class:`~sim.mm.vmalloc.VmallocModel` (the state it works on is the model's): a
purge takes ``purge_lock`` (the variant's mechanism, sim/mm/purge_lock.py), takes the lazy list
(sim/mm/lazy.py; 6.9's per-node trees, sim/mm/node_purge.py), flushes the kernel TLB once over
the range of what it took, then frees the areas under ``vmap_area_lock``, with
``cond_resched_lock`` every ``free_lock_break`` areas (4.10). As of Linux 4.5, with the
mechanism choices standing for the patches that changed it.
"""

from __future__ import annotations

from collections.abc import Generator

import simpy

from sim.engine.cpu import Cpu
from sim.mm.alloc import free_vmap_cache_on_free
from sim.mm.lazy import Nodes
from sim.mm.node_purge import decay_va_pool_node, purge_vmap_nodes
from sim.mm.vmap_area import VmapArea
from sim.mm.vmap_node import MAX_VA_SIZE_PAGES

Gen = Generator[simpy.Event, None, None]


class LazyPurge:
    """The purge path of :class:`~sim.mm.vmalloc.VmallocModel`."""

    def try_purge_vmap_area_lazy(self, cpu: Cpu) -> Gen:
        """``try_purge_vmap_area_lazy``: a non-blocking purge."""
        yield from self._purge_vmap_area_lazy(cpu, self.vend, self.vstart, False, False)

    def purge_vmap_area_lazy(self, cpu: Cpu) -> Gen:
        """``purge_vmap_area_lazy``: a synchronous purge."""
        yield from self._purge_vmap_area_lazy(cpu, self.vend, self.vstart, True, False)

    def drain_vmap_area_work(self, cpu: Cpu) -> Gen:
        """Linux 5.18 ("mm/vmalloc: Move draining areas out of caller context", Rezki, v3
        31 Jan 2022): ``do { mutex_lock(&vmap_purge_lock); __purge_vmap_area_lazy(ULONG_MAX,
        0); mutex_unlock(&vmap_purge_lock); } while (atomic_long_read(&vmap_lazy_nr) >
        lazy_max_pages());``"""
        while True:
            called = self.now(cpu)
            yield from self.purge_lock.enter(cpu)
            began = self.now(cpu)
            cpu.charge(self.purge_lock.acquire_ns)
            yield from self.purge_locked(cpu, self.vend, self.vstart, False,
                                         (called, began, False))
            cpu.charge(self.costs.atomic_ns)  # atomic_long_read(&vmap_lazy_nr)
            yield from cpu.settle()
            if self.vmap_lazy_nr <= self.lazy_max_pages:
                return

    def _purge_vmap_area_lazy(self, cpu: Cpu, start: int, end: int, sync: bool,
                              force_flush: bool) -> Gen:
        """``__purge_vmap_area_lazy(&start, &end, sync, force_flush)``; ``start``/``end`` come
        in as the range the caller already needs flushed (ULONG_MAX/0, here vend/vstart, for
        none)."""
        called = self.now(cpu)
        if not sync and not force_flush:
            entered = yield from self.purge_lock.try_enter(cpu)
            if not entered:
                self.metrics.purge_trylock_failures += 1
                return
        else:
            yield from self.purge_lock.enter(cpu)
        began = self.now(cpu)
        cpu.charge(self.purge_lock.acquire_ns)
        if sync:
            yield from self.purge_fragmented_blocks_allcpus(cpu)
        yield from self.purge_locked(cpu, start, end, force_flush, (called, began, sync))

    def purge_locked(self, cpu: Cpu, start: int, end: int, force_flush: bool,
                     when: tuple[float, float, bool]) -> Gen:
        """The body of ``__purge_vmap_area_lazy`` once ``purge_lock`` is held (its entry cost
        charged); releases it. ``when``: (called, got the lock, sync), for metrics and trace."""
        called, began, sync = when
        if self.per_node_lazy:
            valist = yield from purge_vmap_nodes(self, cpu, start, end, force_flush)
            n_nodes = len(valist)
        else:
            valist, n_nodes = yield from self.purge_lazy_list(cpu, start, end, force_flush)
        nr = sum(va.size for va in valist)
        yield from self.purge_lock.exit(cpu)
        self.metrics.purge.record(self.now(cpu) - began)
        self.metrics.purge_areas += len(valist)
        self.metrics.purge_nodes += n_nodes
        if self.tracer is not None:
            self.tracer.purge(cpu.id, called, self.now(cpu), sync, len(valist), nr)

    def purge_lazy_list(self, cpu: Cpu, start: int, end: int, force_flush: bool
                        ) -> Generator[simpy.Event, None, tuple[list[VmapArea], int]]:
        """Take the one lazy list (or tree), flush [start, end) widened over it, free what it
        held: the areas taken, and the nodes they made up."""
        nodes = yield from self.lazy.collect(self, cpu)
        valist = [va for node in nodes for va in node]
        nr = 0
        if self.lazy.range_walk:  # llist_for_each_entry(va, valist, purge_list)
            cpu.charge(self.areas_walk_ns(cpu, valist))
        for va in valist:
            self.safety.read(va, self.now(cpu), cpu.id, "walked the lazy area")
            start = min(start, va.va_start)
            end = max(end, va.va_end)
            nr += va.size
        per_area_sub = self.free_lock_break > 0
        if nr and not per_area_sub:
            self._subtract_lazy(cpu, valist)  # atomic_sub(nr, &vmap_lazy_nr)
        if nr or force_flush:
            yield from self.flusher.flush_tlb_kernel_range(cpu, start, end)
        if nr:
            yield from self.free_loop(cpu, nodes, per_area_sub)
        return valist, len(nodes)

    def _subtract_lazy(self, cpu: Cpu, areas: list[VmapArea]) -> None:
        for va in areas:
            self.safety.lazy_subtracted(va, self.now(cpu), cpu.id)
        self.atomic_lazy_nr(cpu, -sum(va.size for va in areas))

    def free_loop(self, cpu: Cpu, nodes: Nodes, per_area_sub: bool) -> Gen:
        """``__free_vmap_area`` of each purged node under the allocator's lock
        (``vmap_area_lock``; from 5.5 ``free_vmap_area_lock``, the busy tree untouched); with
        ``free_lock_break`` N, ``cond_resched_lock`` every N nodes lets waiters in (4.10),
        and ``vmap_lazy_nr`` drops node by node. A node merged from several lazy areas (5.11)
        costs one step; each of its areas is still freed for the safety checker."""
        if self.nodes is not None:
            nodes = yield from self.purge_to_pools(cpu, nodes, per_area_sub)
            if not nodes:
                return
        every = self.free_lock_break or len(nodes)
        per_node = self.costs.kmalloc_ns
        lock = self.free_vmap_area_lock
        yield from cpu.spin_lock(lock)
        for first in range(0, len(nodes), every):
            chunk = [va for node in nodes[first:first + every] for va in node]
            cpu.charge(min(every, len(nodes) - first) * (self.rbtree_ns() + per_node)
                       + self.free_loop_lines(cpu, nodes[first:first + every]))
            for va in chunk:
                self.__free_vmap_area(cpu, va)
            if per_area_sub:
                self._subtract_lazy(cpu, chunk)
            if first + every < len(nodes):
                yield from cpu.settle()
                # cond_resched_lock(&vmap_area_lock) (5.5+ the free lock): a break when another
                # CPU spins on it (spin_needbreak(), 0 without CONFIG_PREEMPT) or a task woken
                # on this CPU waits (need_resched()), which then runs
                if (lock.waiters and cpu.preemption == "full") or cpu.need_resched():
                    yield from cpu.spin_unlock(lock)
                    yield from cpu.cond_resched()
                    yield from cpu.spin_lock(lock)
        cpu.charge(self.costs.lock_acquire_ns)
        yield from cpu.spin_unlock(lock)

    def free_loop_lines(self, cpu: Cpu, nodes: Nodes) -> float:
        """What one stretch of the free loop pulls from other CPUs' caches: the tree it
        rewrites (taken back from the last writer once per lock hold; the busy tree up to
        5.3, the augmented free tree from 5.2) and, when this loop is the purge's first walk
        over what it took (5.11's tree), each node's first area."""
        cost = 0.0
        if self.lazy_in_busy_tree:
            cost += self.busy_lines.write(cpu.id, self.busy_write_lines)
        if self.space is not self.busy:
            cost += self.free_tree_write(cpu)
        if self.lazy.cold_walk:
            cost += self.areas_walk_ns(cpu, [node[0] for node in nodes])
        return cost

    def purge_to_pools(self, cpu: Cpu, nodes: Nodes, per_area_sub: bool
                       ) -> Generator[simpy.Event, None, Nodes]:
        """Vmap nodes with one global lazy list (a composition: 6.9 itself purges per-node
        lazy trees, sim/mm/node_purge.py), after the flush: ``decay_va_pool_node`` then
        ``node_pool_add_va``.

        First a quarter (``len >> 2``) of every node pool's entries, from the head of its list,
        goes back to the free tree (``decay_va_pool_node``, sim/mm/node_purge.py); their ranges
        leave the allocator's reserved space. Then each purged area of at most
        ``MAX_VA_SIZE_PAGES`` pages is put, under ``pool_lock``, at the head of the pool of
        its size in the node of the CPU that allocated it (O(1)); its range stays reserved.
        Areas merged into one purge-tree node (5.11's tree) are pooled one by one. Returns
        the nodes left for the free tree (the areas too large for a pool)."""
        c = self.costs
        for vn in self.nodes.nodes:
            yield from decay_va_pool_node(self, cpu, vn)
        per_area = c.list_walk_per_node_ns * (2 if self.lazy.cold_walk else 1)
        by_node: dict[int, list[VmapArea]] = {}
        rest: Nodes = []
        for node in nodes:
            large = []
            for va in node:
                if va.size <= MAX_VA_SIZE_PAGES:
                    by_node.setdefault(self.nodes.cpu_to_node(va.cpu).id, []).append(va)
                else:
                    large.append(va)
            if large:
                rest.append(large)
        for node_id, areas in by_node.items():
            vn = self.nodes.nodes[node_id]
            yield from cpu.spin_lock(vn.pool_lock)
            cpu.charge(c.lock_acquire_ns + len(areas) * per_area)
            for va in areas:
                if self.safety.freed(va, self.now(cpu), cpu.id):
                    vn.pool.setdefault(va.size, []).append(va.va_start)
            if per_area_sub:
                self._subtract_lazy(cpu, areas)
            yield from cpu.spin_unlock(vn.pool_lock)
        return rest

    def __free_vmap_area(self, cpu: Cpu, va: VmapArea) -> None:
        """``__free_vmap_area``: cache update, rb_erase, list_del_rcu, kfree_rcu (or, 5.2+,
        ``merge_or_add_vmap_area`` into the free tree)."""
        if not self.safety.freed(va, self.now(cpu), cpu.id):
            return
        if self.lazy_in_busy_tree:
            if self.first_fit:
                free_vmap_cache_on_free(self.busy, self.cache, va.va_start, va.va_end)
            self.busy.erase(va.va_start)
        if self.space is not self.busy:
            self.space.erase(va.va_start)

    def purge_fragmented_blocks_allcpus(self, cpu: Cpu) -> Gen:
        """Walk every possible CPU's vmap_block queue, freeing fragmented blocks
        (``sim/mm/vmap_block.py``); without blocks, only the queue checks."""
        cpu.charge(self.machine.ncpus * self.costs.vb_queue_check_ns)
        if self.vb is not None:
            yield from self.vb.purge_fragmented_blocks_allcpus(cpu)
