"""The vmalloc/vfree paths, the lazy purge and ``vm_unmap_aliases`` of Linux 4.5 .. 4.7.

Each method models the kernel function of the same name in mm/vmalloc.c (x86_64, 4 KiB pages)
and reads beside it line by line. Kernel steps that touch no shared state are *charged* to the
CPU and turned into simulated time when the CPU next touches a lock. Shared state changes at
the moment the CPU holding the protecting lock is granted it, which is what a reader holding
the same lock could observe.

What the two variants share (before the 2016 latency work of 4.10): ``vmap_area_lock`` is a
spinlock over the busy rbtree/list and the allocation cache; ``purge_lock`` is a spinlock, taken
with ``spin_trylock`` by the lazy path and spun on by sync callers; one
``flush_tlb_kernel_range`` covers [min, max] of the purged areas; the free loop runs under one
hold of ``vmap_area_lock``. Lazily freed areas keep their address range busy until purged.
"""

from __future__ import annotations

import math
from collections.abc import Generator

import simpy

from ..cpu import Cpu
from ..locks import Handoff, SpinLock
from ..machine import Machine, lazy_max_pages_formula
from ..metrics import Metrics
from ..schema import Variant
from ..tlb import TlbFlusher
from .alloc import FreeVmapCache, first_fit, free_vmap_cache_on_free
from .busy_tree import BusyTree
from .lazy import LAZY_LISTS
from .vmap_area import VM_VM_AREA, VmapArea

Gen = Generator[simpy.Event, None, None]


def spinlock_handoff(kind: str, machine: Machine) -> Handoff:
    """Handoff cost of a spinlock kind: qspinlock one line transfer, ticket c*k/2."""
    if kind == "qspinlock":
        def handoff(previous: Cpu, following: Cpu, cores: int) -> float:
            return machine.cacheline_ns(previous.id, following.id)
    else:
        def handoff(previous: Cpu, following: Cpu, cores: int) -> float:
            return machine.cacheline_ns(previous.id, following.id) * cores / 2.0
    return handoff


class VmallocModel:
    """Kernel state and code paths of the vmalloc layer on one simulated machine."""

    def __init__(self, env: simpy.Environment, machine: Machine, variant: Variant,
                 lazy_max_pages: int | str, flusher: TlbFlusher, metrics: Metrics,
                 vmap_block_dirty: bool) -> None:
        self.env = env
        self.machine = machine
        self.costs = machine.costs
        self.flusher = flusher
        self.metrics = metrics
        self.vmap_block_dirty = vmap_block_dirty
        handoff = spinlock_handoff(variant.spinlock, machine)
        self.vmap_area_lock = SpinLock(env, "vmap_area_lock", handoff)
        self.purge_lock = SpinLock(env, "purge_lock", handoff)
        self.cpa_lock = SpinLock(env, "cpa_lock", handoff)
        self.busy = BusyTree()
        self.cache = FreeVmapCache()
        self.areas: dict[int, VmapArea] = {}
        self.lazy = LAZY_LISTS[variant.lazy_list]()
        self.vmap_lazy_nr = 0
        self._lazy_nr_cpu = -1
        self.lazy_max_pages = (lazy_max_pages_formula(machine.ncpus)
                               if lazy_max_pages == "auto" else int(lazy_max_pages))
        self.vstart = 0
        self.vend = machine.profile.vmalloc_space

    @property
    def locks(self) -> list[SpinLock]:
        return [self.vmap_area_lock, self.purge_lock, self.cpa_lock]

    # --- helpers --------------------------------------------------------------------------

    def rbtree_ns(self) -> float:
        """One rbtree descent, insert or erase over the busy tree: depth ~ log2(N)."""
        return math.log2(self.busy.count + 2) * self.costs.rbtree_level_ns

    def atomic_lazy_nr(self, cpu: Cpu, delta: int) -> int:
        """An atomic RMW on ``vmap_lazy_nr``: pulls the line from the CPU that last wrote it."""
        cost = self.costs.atomic_ns
        if self._lazy_nr_cpu not in (-1, cpu.id):
            cost += self.machine.cacheline_ns(self._lazy_nr_cpu, cpu.id)
        self._lazy_nr_cpu = cpu.id
        cpu.charge(cost)
        self.vmap_lazy_nr += delta
        self.metrics.observe_lazy(self.vmap_lazy_nr)
        return self.vmap_lazy_nr

    # --- allocation -----------------------------------------------------------------------

    def vmalloc(self, cpu: Cpu, nr_pages: int) -> Generator[simpy.Event, None, VmapArea | None]:
        """``vmalloc(nr_pages * PAGE_SIZE)``: area, pages, mapping."""
        began = self.env.now + cpu.pending
        c = self.costs
        # __get_vm_area_node: kzalloc(vm_struct); alloc_vmap_area: kmalloc_node(vmap_area)
        cpu.charge(2 * c.kmalloc_ns + c.vmalloc_fixed_ns)
        va = yield from self.alloc_vmap_area(cpu, nr_pages + 1, 1)  # + guard page
        if va is None:
            self.metrics.alloc_failures += 1
            return None
        # __vmalloc_area_node: alloc_page() per page, then map_vm_area()
        cpu.charge(nr_pages * (c.page_alloc_ns + c.map_page_ns))
        self.metrics.vmalloc.record(self.env.now + cpu.pending - began)
        self.metrics.ops += 1
        return va

    def alloc_vmap_area(self, cpu: Cpu, size: int, align: int
                        ) -> Generator[simpy.Event, None, VmapArea | None]:
        """``alloc_vmap_area``: first fit under vmap_area_lock; on overflow purge once, retry."""
        c = self.costs
        purged = False
        while True:
            yield from cpu.spin_lock(self.vmap_area_lock)
            fit = first_fit(self.busy, self.cache, size, align, self.vstart, self.vend)
            self.metrics.alloc_walk_steps += fit.walked
            cost = c.lock_acquire_ns + fit.walked * c.list_walk_per_node_ns
            if fit.descended:
                cost += self.rbtree_ns()
            va = None
            if fit.addr is not None:
                va = VmapArea(fit.addr, fit.addr + size, cpu.id)
                self.busy.insert(va.va_start, va.va_end)  # __insert_vmap_area
                self.areas[va.va_start] = va
                self.cache.node = va.va_start
                cost += self.rbtree_ns()
            cpu.charge(cost)
            yield from cpu.spin_unlock(self.vmap_area_lock)
            if va is not None or purged:
                return va
            yield from self.purge_vmap_area_lazy(cpu)
            purged = True

    # --- free -----------------------------------------------------------------------------

    def vfree(self, cpu: Cpu, va: VmapArea) -> Gen:
        """``vfree`` -> ``__vunmap`` -> ``remove_vm_area`` -> ``free_unmap_vmap_area``."""
        began = self.env.now + cpu.pending
        c = self.costs
        yield from self.find_vmap_area(cpu, va.va_start)
        # remove_vm_area: va->vm = NULL; va->flags &= ~VM_VM_AREA under vmap_area_lock
        yield from cpu.spin_lock(self.vmap_area_lock)
        va.flags &= ~VM_VM_AREA
        cpu.charge(c.lock_acquire_ns)
        yield from cpu.spin_unlock(self.vmap_area_lock)
        # free_unmap_vmap_area: unmap_vmap_area() clears the PTEs, no TLB flush
        cpu.charge(va.nr_pages * c.unmap_page_ns)
        yield from self.lazy.free_vmap_area_noflush(self, cpu, va)
        # __vunmap: __free_page() per page, kvfree(area->pages), kfree(area)
        cpu.charge(va.nr_pages * c.page_free_ns + 2 * c.kmalloc_ns)
        self.metrics.vfree.record(self.env.now + cpu.pending - began)
        self.metrics.ops += 1

    def find_vmap_area(self, cpu: Cpu, addr: int) -> Generator[simpy.Event, None, VmapArea]:
        """``find_vmap_area``: an rbtree lookup under vmap_area_lock."""
        yield from cpu.spin_lock(self.vmap_area_lock)
        va = self.areas[addr]
        cpu.charge(self.costs.lock_acquire_ns + self.rbtree_ns())
        yield from cpu.spin_unlock(self.vmap_area_lock)
        return va

    def try_purge_vmap_area_lazy(self, cpu: Cpu) -> Gen:
        """``try_purge_vmap_area_lazy``: a non-blocking purge (trylock on purge_lock)."""
        yield from self._purge_vmap_area_lazy(cpu, self.vend, self.vstart, False, False)

    def purge_vmap_area_lazy(self, cpu: Cpu) -> Gen:
        """``purge_vmap_area_lazy``: a synchronous purge (spins on purge_lock)."""
        yield from self._purge_vmap_area_lazy(cpu, self.vend, self.vstart, True, False)

    def _purge_vmap_area_lazy(self, cpu: Cpu, start: int, end: int, sync: bool,
                              force_flush: bool) -> Gen:
        """``__purge_vmap_area_lazy(&start, &end, sync, force_flush)`` of Linux 4.5/4.7;
        ``start``/``end`` come in as the range the caller already needs flushed
        (ULONG_MAX/0, here vend/vstart, for none)."""
        c = self.costs
        if not sync and not force_flush:
            got = yield from cpu.spin_trylock(self.purge_lock)
            if not got:
                self.metrics.purge_trylock_failures += 1
                return
        else:
            yield from cpu.spin_lock(self.purge_lock)
        began = self.env.now
        cpu.charge(c.lock_acquire_ns)
        if sync:
            self.purge_fragmented_blocks_allcpus(cpu)
        valist = self.lazy.collect(self, cpu)
        nr = 0
        for va in valist:
            start = min(start, va.va_start)
            end = max(end, va.va_end)
            nr += va.size
        if nr:
            self.atomic_lazy_nr(cpu, -nr)  # atomic_sub(nr, &vmap_lazy_nr)
        if nr or force_flush:
            yield from self.flusher.flush_tlb_kernel_range(cpu, start, end)
        if nr:
            yield from cpu.spin_lock(self.vmap_area_lock)
            cpu.charge(c.lock_acquire_ns + len(valist) * (self.rbtree_ns() + c.kmalloc_ns))
            for va in valist:
                self.__free_vmap_area(va)
            yield from cpu.spin_unlock(self.vmap_area_lock)
        cpu.charge(c.lock_acquire_ns)
        yield from cpu.spin_unlock(self.purge_lock)
        self.metrics.purge.record(self.env.now - began)
        self.metrics.purge_areas += len(valist)

    def __free_vmap_area(self, va: VmapArea) -> None:
        """``__free_vmap_area``: cache update, rb_erase, list_del_rcu, kfree_rcu."""
        free_vmap_cache_on_free(self.busy, self.cache, va.va_start, va.va_end)
        self.busy.erase(va.va_start)
        del self.areas[va.va_start]

    def purge_fragmented_blocks_allcpus(self, cpu: Cpu) -> None:
        """Walk every possible CPU's vmap_block queue (no blocks are modelled yet)."""
        cpu.charge(self.machine.ncpus * self.costs.vb_queue_check_ns)

    # --- set_memory_*() -------------------------------------------------------------------

    def vm_unmap_aliases(self, cpu: Cpu) -> Gen:
        """``vm_unmap_aliases``: widen [start, end) over every CPU's dirty vmap blocks, then a
        sync purge that flushes when any block is dirty even if nothing is lazy.

        Blocks are not modelled individually: with ``vmap_block_dirty`` the dirty ranges of
        blocks of several CPUs, spread over the vmalloc space, are taken to span it all (far
        more than the flush ceiling, so the flush is a full one)."""
        cpu.charge(self.machine.ncpus * self.costs.vb_queue_check_ns)
        if self.vmap_block_dirty:
            start, end = self.vstart, self.vend
        else:
            start, end = self.vend, self.vstart
        yield from self._purge_vmap_area_lazy(cpu, start, end, True, self.vmap_block_dirty)

    def set_memory(self, cpu: Cpu, nr_pages: int) -> Gen:
        """x86 ``set_memory_wb()`` and friends: ``change_page_attr_set_clr``."""
        began = self.env.now + cpu.pending
        c = self.costs
        yield from self.vm_unmap_aliases(cpu)
        yield from cpu.spin_lock(self.cpa_lock)  # __change_page_attr_set_clr
        cpu.charge(c.lock_acquire_ns + nr_pages * c.cpa_ns)
        yield from cpu.spin_unlock(self.cpa_lock)
        yield from self.flusher.flush_tlb_all(cpu)  # cpa_flush_range: flush_tlb_all()
        cpu.charge(nr_pages * c.clflush_page_ns)  # ... then clflush the pages
        self.metrics.set_memory.record(self.env.now + cpu.pending - began)
        self.metrics.ops += 1
