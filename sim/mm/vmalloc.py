"""The vmalloc/vfree paths, the lazy purge and ``vm_unmap_aliases`` of mm/vmalloc.c.

Each method models the kernel function of the same name (x86_64, 4 KiB pages) as of Linux 4.5,
with the mechanism choices of a :class:`~sim.schema.Variant` standing for the patches that
changed it (``sim/mm/presets.yaml``). Kernel steps that touch no shared state are *charged* to
the CPU and turned into simulated time when the CPU next touches shared state. Shared state
changes at the moment the CPU holding the protecting lock is granted it, which is what a reader
holding the same lock could observe; lock-free steps (``llist_add``, atomics) happen at the
CPU's current time.

What every variant shares: ``vmap_area_lock`` is a spinlock over the busy rbtree/list and the
allocator (from 5.5, the allocator's free tree has its own ``free_vmap_area_lock``; with vmap
nodes, 6.9, each node's busy tree has its own lock, ``sim/mm/vmap_node.py``); one
``flush_tlb_kernel_range`` covers [min, max] of the purged areas before they are freed; lazily
freed areas keep their range out of reach of the allocator until purged (unless a composition
breaks that, which the safety checker then reports).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Generator
from operator import attrgetter
from typing import TYPE_CHECKING

import simpy

from sim.config.schema import Variant
from sim.engine.coherence import SharedLines
from sim.engine.cpu import Cpu
from sim.engine.locks import SpinLock, spinlock_handoff
from sim.engine.machine import Machine
from sim.engine.metrics import Metrics
from sim.mm.alloc import FreeVmapCache, first_fit, free_vmap_cache_on_free
from sim.mm.busy_tree import RB_LIST_WRITE_LINES, BusyTree
from sim.mm.lazy import make_lazy_list
from sim.mm.node_purge import PerNodeLazy
from sim.mm.purge import LazyPurge
from sim.mm.purge_lock import make_purge_lock
from sim.mm.safety import SafetyChecker
from sim.mm.tlb import TlbFlusher
from sim.mm.vfree_deferred import VfreeDeferred
from sim.mm.vmap_area import VM_VM_AREA, VmapArea
from sim.mm.vmap_block import VmapBlocks, VmapRam, vm_map_ram, vm_unmap_ram
from sim.mm.vmap_node import MAX_VA_SIZE_PAGES, VmapNodes
from sim.mm.workqueue import Kworker, Work

if TYPE_CHECKING:
    from sim.engine.tracer import Tracer

Gen = Generator[simpy.Event, None, None]

PAGES_PER_32MIB = (32 << 20) // 4096
"""32 MiB in 4 KiB pages, the unit of ``lazy_max_pages()``."""


def fls(x: int) -> int:
    """The kernel's fls(): position of the most significant set bit, 1-based; fls(0) == 0."""
    return x.bit_length()


def lazy_max_pages_formula(online_cpus: int) -> int:
    """``lazy_max_pages()`` of mm/vmalloc.c (2.6.28 onward): fls(num_online_cpus()) * 32 MiB."""
    return fls(online_cpus) * PAGES_PER_32MIB


class VmallocModel(LazyPurge):
    """Kernel state and code paths of the vmalloc layer on one simulated machine."""

    def __init__(self, env: simpy.Environment, machine: Machine, variant: Variant,
                 lazy_max_pages: int | str, flusher: TlbFlusher, metrics: Metrics,
                 vmap_block_dirty: bool, safety: SafetyChecker) -> None:
        self.env = env
        self.machine = machine
        self.costs = machine.costs
        self.variant = variant
        self.flusher = flusher
        self.metrics = metrics
        self.safety = safety
        self.vmap_block_dirty = vmap_block_dirty
        """Dirty blocks of vm_map_ram users outside the simulated workload (a stand-in: every
        ``vm_unmap_aliases()`` flushes the whole space)."""
        handoff = self.spin_handoff = spinlock_handoff(variant.spinlock, machine)
        """The handoff of the variant's spinlocks (``spinlock``: qspinlock or ticket)."""
        self.nodes = VmapNodes(env, machine, handoff) if variant.vmap_nodes else None
        """Linux 6.9: per-node busy trees and locks; None: one busy tree."""
        self.eager = variant.lazy_list == "none"
        """Linux 2.6.27: no lazy freeing, one sorted ``vmlist`` under ``vmlist_lock``."""
        self.split_locks = self.nodes is not None or variant.split_free_lock
        """The busy tree is not under the allocator's lock (5.5's split, 6.9's nodes)."""
        self.free_vmap_area_lock = SpinLock(
            env, "free_vmap_area_lock" if self.split_locks
            else "vmlist_lock" if self.eager else "vmap_area_lock", handoff)
        """The allocator's lock (its free tree or, up to 5.1, the busy list it walks); before
        5.5 the same lock as the busy tree's, ``vmap_area_lock``."""
        self.vmap_area_lock = (SpinLock(env, "vmap_area_lock", handoff)
                               if variant.split_free_lock and self.nodes is None
                               else self.free_vmap_area_lock)
        """The busy tree's lock when there is one busy tree (5.5+: a lock of its own); with
        vmap nodes, the allocator's (the nodes' busy trees have theirs)."""
        self.purge_lock = make_purge_lock(variant.purge_lock, env, machine, handoff)
        self.cpa_lock = SpinLock(env, "cpa_lock", handoff)
        self.busy = BusyTree()
        """vmap_area_root + vmap_area_list."""
        self.first_fit = variant.allocator == "first_fit_cache"
        self.space = self.busy if self.first_fit or self.eager else BusyTree()
        """What the allocator cannot hand out: the busy tree itself for first fit; for the
        augmented tree, the complement of the free tree (busy and unmerged lazy areas)."""
        self.cache = FreeVmapCache()
        self.busy_lines = SharedLines(machine)
        """The busy tree's and list's lines a step touches (with first fit, also the
        ``free_vmap_cache`` globals beside them)."""
        self.free_lines = SharedLines(machine)
        """The augmented free tree's (5.2+)."""
        self.busy_write_lines = (1 if self.eager  # vmlist: the predecessor's ->next
                                 else RB_LIST_WRITE_LINES + (1 if self.first_fit else 0))
        # The variant's mechanism choices, read once (sim/config/schema.py: Variant)
        self.lazy_in_busy_tree = variant.lazy_in_busy_tree
        self.find_unlink = variant.find_unlink
        self.read_then_publish = variant.noflush_order == "read_then_publish"
        self.purge_in_workqueue = variant.purge_context == "workqueue"
        """5.18: a caller over ``lazy_max_pages()`` schedules ``drain_vmap_work``."""
        self.free_lock_break = variant.free_lock_break
        """4.10: ``cond_resched_lock`` every this many areas of the free loop (0: never)."""
        self.per_node_lazy = variant.lazy_list == "per_node"
        """6.9: each vmap node has its own lazy tree (sim/mm/node_purge.py)."""
        self.purge_helpers = variant.purge_helpers
        """6.9: a purge spreads nodes over helper kworkers."""
        self.vb_dirty_reset = variant.vb_dirty_reset
        self.vb_walk_all = variant.vb_walk_all
        self.areas: dict[int, VmapArea] = {}
        """Live areas by va_start: what find_vmap_area can return."""
        self.lazy = PerNodeLazy(self.nodes) if self.per_node_lazy else \
            make_lazy_list(variant.lazy_list, env, machine, handoff)
        self.vmap_lazy_nr = 0
        self.lazy_nr_line = SharedLines(machine)
        """``vmap_lazy_nr``'s cache line: every atomic on it takes it exclusive."""
        self._ident = itertools.count()
        self.lazy_max_pages = (lazy_max_pages_formula(machine.ncpus)
                               if lazy_max_pages == "auto" else int(lazy_max_pages))
        self.vstart = 0
        self.vend = machine.profile.vmalloc_space
        self.tracer: Tracer | None = None
        """Records operations and purges on their CPU; None: off."""
        self.kworkers: dict[int, Kworker] = {}
        self.purge_kworkers: dict[int, Kworker] = {}
        """6.9 purge helpers: the kworker running ``vn->purge_work`` on each node's CPU."""
        self.purge_helpers_busy: set[int] = set()
        self.purge_helper_runs = 0
        self.pool_allocs = 0
        """Allocations served from a vmap node's pool (6.9)."""
        self.vb: VmapBlocks | None = None
        """The per-CPU vmap_block allocator, made by the first vm_map_ram() that needs it."""
        self.vm_map_ram_calls = 0
        self.vm_map_ram_failures = 0
        self.vm_unmap_ram_calls = 0
        c = self.costs
        self.drain_vmap_work = Work(env, self.drain_vmap_area_work, self.kworker,
                                    c.lock_acquire_ns, c.atomic_ns, c.mutex_wake_ns)
        """``static DECLARE_WORK(drain_vmap_work, drain_vmap_area_work)`` (5.18)."""
        self.other_locks: list[SpinLock] = []
        """Locks of kernel code the workload drives besides the vmalloc layer's own (the
        percpu allocator's): they join lock_stat once made."""
        self.vfree_deferred: dict[int, VfreeDeferred] = {}
        """Per CPU, made on its first ``vfree_atomic()``."""

    @property
    def locks(self) -> list[SpinLock]:
        locks = [lock for lock in (self.free_vmap_area_lock, self.purge_lock.lock,
                                   self.lazy.lock, self.cpa_lock) if lock is not None]
        if self.vmap_area_lock is not self.free_vmap_area_lock:
            locks.insert(1, self.vmap_area_lock)
        if self.vb is not None:  # only once a vm_map_ram() made blocks
            locks += self.vb.locks()
        locks += self.other_locks
        if self.nodes is None:
            return locks
        return locks + self.nodes.locks(self.per_node_lazy)

    def now(self, cpu: Cpu) -> float:
        """The CPU's own clock: simulated time plus the work it has charged."""
        return self.env.now + cpu.pending

    # --- helpers --------------------------------------------------------------------------

    def rbtree_ns(self, tree: BusyTree | None = None) -> float:
        """One rbtree descent, insert or erase: depth ~ log2(N)."""
        return math.log2((tree or self.busy).count + 2) * self.costs.rbtree_level_ns

    def free_tree_write(self, cpu: Cpu) -> float:
        """Coherence cost of a split or merge in the augmented free tree (5.2+): the lines the
        last CPU to split or merge dirtied. A split adjusts the block (or erases it, or
        inserts the remainder: a parent link, a rebalancing node, the list neighbours), a
        merge likewise; ``augment_tree_propagate_from`` stops as soon as a node's
        ``subtree_max_size`` is unchanged, which a small block's change leaves within a level
        or two, the path above it staying clean in every cache: as many lines as an rbtree
        and list insert (:data:`RB_LIST_WRITE_LINES`)."""
        return self.free_lines.write(cpu.id, RB_LIST_WRITE_LINES)

    def busy_lines_of(self, addr: int) -> SharedLines:
        """The lines of the busy tree that holds ``addr`` (6.9: its node's)."""
        if self.nodes is None:
            return self.busy_lines
        return self.nodes.addr_to_node(addr).lines

    def area_line_ns(self, cpu: Cpu, va: VmapArea) -> float:
        """A read of the ``vmap_area`` object itself written last by another CPU: from that
        CPU's cache (or memory, the live areas being more than an LLC holds); written by this
        CPU it is part of the step's own cost."""
        if va.writer == cpu.id:
            return 0.0
        return self.machine.line_ns(va.writer, cpu.id, self.busy.count)

    def areas_walk_ns(self, cpu: Cpu, areas: list[VmapArea]) -> float:
        """A walk over ``areas`` (one dependent load each), each from the cache of the CPU
        that wrote it last, or from memory once they are more than an LLC holds."""
        line, me, n = self.machine.line_ns, cpu.id, len(areas)
        by_writer = Counter(map(attrgetter("writer"), areas))  # counted in C: a purge's areas
        return sum(count * line(writer, me, n) for writer, count in by_writer.items())

    def busy_tree_lock(self, addr: int) -> SpinLock:
        """The lock of the busy tree that holds ``addr``: the global ``vmap_area_lock``, or
        (6.9) ``addr_to_node(addr)->busy.lock``."""
        if self.nodes is None:
            return self.vmap_area_lock
        return self.nodes.addr_to_node(addr).lock

    def busy_rbtree_ns(self, addr: int) -> float:
        """One descent of the busy tree that holds ``addr`` (6.9: its node's tree)."""
        if self.nodes is None:
            return self.rbtree_ns()
        return math.log2(self.nodes.addr_to_node(addr).busy + 2) * self.costs.rbtree_level_ns

    def atomic_lazy_nr(self, cpu: Cpu, delta: int) -> int:
        """An atomic RMW on ``vmap_lazy_nr``: pulls the line from the CPU that last wrote it."""
        cpu.charge(self.costs.atomic_ns + self.lazy_nr_line.write(cpu.id, 1))
        nr = self.vmap_lazy_nr = self.vmap_lazy_nr + delta
        metrics = self.metrics
        if nr > metrics.lazy_pages_peak:
            metrics.lazy_pages_peak = nr
        if nr < 0:  # all safety.lazy_nr_changed() checks
            self.safety.lazy_nr_changed(nr, self.now(cpu), cpu.id)
        if self.tracer is not None:
            self.tracer.counter("vmap_lazy_nr", self.now(cpu),
                                {"vmap_lazy_nr": nr, "lazy_max_pages": self.lazy_max_pages})
        return nr

    def place_background(self, starts, ends) -> None:
        """Areas allocated at boot, before the simulated time starts."""
        self.busy.bulk_load(starts, ends)
        if self.space is not self.busy:
            self.space.bulk_load(starts, ends)
        if self.first_fit:
            self.cache.node = int(starts[-1])

    # --- allocation -----------------------------------------------------------------------

    def vmalloc(self, cpu: Cpu, nr_pages: int, align: int = 1, zero: bool = False
                ) -> Generator[simpy.Event, None, VmapArea | None]:
        """``vmalloc(nr_pages * PAGE_SIZE)``: area, pages, mapping. With ``align`` (pages) or
        ``zero`` it is ``__vmalloc_node(size, align, GFP_KERNEL | __GFP_ZERO, ...)``: the area
        starts at a multiple of ``align`` and every page is cleared as it is allocated."""
        began = self.now(cpu)
        c = self.costs
        # __get_vm_area_node: kzalloc(vm_struct); alloc_vmap_area: kmalloc_node(vmap_area)
        cpu.charge(2 * c.kmalloc_ns + c.vmalloc_fixed_ns)
        va = yield from self.alloc_vmap_area(cpu, nr_pages + 1, align)  # + guard page
        if va is None:
            self.metrics.alloc_failures += 1
            if self.tracer is not None:
                self.tracer.op(cpu.id, "vmalloc", began, self.now(cpu), nr_pages, failed=True)
            return None
        # __vmalloc_area_node: alloc_page() per page, then map_vm_area()
        per_page = c.page_alloc_ns + c.map_page_ns + (c.clear_page_ns if zero else 0.0)
        cpu.charge(nr_pages * per_page)
        metrics = self.metrics
        metrics.vmalloc.record(self.now(cpu) - began)
        metrics.count_op()
        if self.tracer is not None:
            self.tracer.op(cpu.id, "vmalloc", began, self.now(cpu), nr_pages)
        return va

    def alloc_vmap_area(self, cpu: Cpu, size: int, align: int
                        ) -> Generator[simpy.Event, None, VmapArea | None]:
        """``alloc_vmap_area``: search under vmap_area_lock; on overflow purge once, retry."""
        purged = False
        while True:
            if self.nodes is not None and size <= MAX_VA_SIZE_PAGES:
                va = yield from self.node_alloc(cpu, size, align)
                if va is not None:
                    yield from self.insert_vmap_area_busy(cpu, va)
                    return va
            yield from cpu.spin_lock(self.free_vmap_area_lock)
            addr, cost = self._find_space(cpu, size, align)
            va = None
            if addr is not None:
                va = VmapArea(addr, addr + size, cpu.id, next(self._ident))
                if not self.split_locks:
                    self._insert_vmap_area(va)
                    cost += (0.0 if self.eager else self.rbtree_ns()) \
                        + self.busy_lines.write(cpu.id, self.busy_write_lines)
                else:  # 5.5+: only the free-block split happens under free_vmap_area_lock
                    self.space.insert(va.va_start, va.va_end)
                self.safety.allocated(va, self.env.now, cpu.id)
            cpu.charge(self.costs.lock_acquire_ns + cost)
            yield from cpu.spin_unlock(self.free_vmap_area_lock)
            if va is not None and self.split_locks:
                yield from self.insert_vmap_area_busy(cpu, va)
            if va is not None or purged or self.eager:  # 2.6.27: no purge to retry after
                return va
            yield from self.purge_vmap_area_lazy(cpu)
            purged = True

    def node_alloc(self, cpu: Cpu, size: int, align: int
                   ) -> Generator[simpy.Event, None, VmapArea | None]:
        """Linux 6.9 ``node_alloc``: take a free range of exactly ``size`` pages from the pool
        of the allocating CPU's node, under that node's ``pool_lock`` only (``list_first_entry``
        and ``list_del_init``: O(1)). The range was kept reserved in the allocator's space
        while pooled, so nothing is inserted there. An empty pool is seen without the lock.
        None: the pool is empty (or its first range is misaligned), the caller falls back to
        the free tree."""
        vn = self.nodes.cpu_to_node(cpu.id)
        yield from cpu.settle()
        if not vn.pool.get(size):  # list_empty(&vp->head), read before taking the lock
            return None
        yield from cpu.spin_lock(vn.pool_lock)
        starts = vn.pool.get(size)
        va = None
        if starts and starts[-1] % align == 0:
            addr = starts.pop()
            va = VmapArea(addr, addr + size, cpu.id, next(self._ident))
            self.safety.allocated(va, self.env.now, cpu.id)
            self.pool_allocs += 1
        cpu.charge(self.costs.lock_acquire_ns + self.costs.list_walk_per_node_ns)
        yield from cpu.spin_unlock(vn.pool_lock)
        return va

    def insert_vmap_area_busy(self, cpu: Cpu, va: VmapArea) -> Gen:
        """Linux 5.5: ``spin_lock(&vmap_area_lock); insert_vmap_area(va, &vmap_area_root,
        &vmap_area_list); spin_unlock(&vmap_area_lock)`` after the free tree's split; 6.9:
        the same under ``addr_to_node(va->va_start)->busy.lock``, into that node's tree."""
        lock = self.busy_tree_lock(va.va_start)
        yield from cpu.spin_lock(lock)
        self.busy.insert(va.va_start, va.va_end)
        if self.nodes is not None:
            self.nodes.addr_to_node(va.va_start).busy += 1
        self.areas[va.va_start] = va
        cpu.charge(self.costs.lock_acquire_ns + self.busy_rbtree_ns(va.va_start)
                   + self.busy_lines_of(va.va_start).write(cpu.id, RB_LIST_WRITE_LINES))
        yield from cpu.spin_unlock(lock)

    def _find_space(self, cpu: Cpu, size: int, align: int) -> tuple[int | None, float]:
        """Where the allocator puts ``size`` pages, and what the search costs (the lines it
        pulls from other CPUs' caches included; the busy tree's are paid by the insert)."""
        if self.eager:  # Linux 2.6.27 __get_vm_area_node: walk vmlist from its head
            fit = first_fit(self.busy, FreeVmapCache(), size, align, self.vstart, self.vend)
            self.metrics.alloc_walk_steps += fit.walked
            cost = fit.walked * self.machine.mean_line_ns(cpu.id, self.busy.count)
            return fit.addr, cost + (self.busy_lines.read(cpu.id) if fit.addr is None else 0.0)
        if self.first_fit:  # Linux <= 5.1: first fit over the busy list, free_vmap_cache
            fit = first_fit(self.busy, self.cache, size, align, self.vstart, self.vend)
            self.metrics.alloc_walk_steps += fit.walked
            cost = fit.walked * self.machine.mean_line_ns(cpu.id, self.busy.count)
            if fit.descended:
                cost += self.rbtree_ns()
            if fit.addr is None:
                cost += self.busy_lines.read(cpu.id)
            return fit.addr, cost
        # Linux 5.2+: descend the augmented free tree to the lowest block that fits
        fit = first_fit(self.space, FreeVmapCache(), size, align, self.vstart, self.vend)
        cost = 2 * self.rbtree_ns(self.space)
        if fit.addr is None:
            return None, cost + self.free_lines.read(cpu.id)
        return fit.addr, cost + self.free_tree_write(cpu)

    def _insert_vmap_area(self, va: VmapArea) -> None:
        """``__insert_vmap_area`` (and, with the augmented tree, the free-block split)."""
        self.busy.insert(va.va_start, va.va_end)
        if self.space is not self.busy:
            self.space.insert(va.va_start, va.va_end)
        self.areas[va.va_start] = va
        if self.first_fit:
            self.cache.node = va.va_start

    # --- free -----------------------------------------------------------------------------

    def vfree(self, cpu: Cpu, va: VmapArea) -> Gen:
        """``vfree`` -> ``__vunmap`` -> ``remove_vm_area`` -> ``free_unmap_vmap_area``."""
        began = self.now(cpu)
        c = self.costs
        if self.eager:
            yield from self.remove_vm_area_eager(cpu, va)
        elif self.find_unlink:
            yield from self.find_unlink_vmap_area(cpu, va)
        else:
            # find_vmap_area(cpu, va->va_start), written out: called, it adds a generator
            # level to every resume of a contended lock (2.3% more instructions per operation
            # on seed-i915 at 64 CPUs, callgrind)
            lock = self.busy_tree_lock(va.va_start)
            yield from cpu.spin_lock(lock)
            self.areas[va.va_start]  # noqa: B018 (the lookup: KeyError if the area is not live)
            cpu.charge(c.lock_acquire_ns + self.busy_rbtree_ns(va.va_start)
                       + self.busy_lines_of(va.va_start).read(cpu.id))
            yield from cpu.spin_unlock(lock)
            # remove_vm_area: va->vm = NULL; va->flags &= ~VM_VM_AREA under vmap_area_lock
            # (6.9: the same node's busy.lock)
            yield from cpu.spin_lock(lock)
            va.flags &= ~VM_VM_AREA
            del self.areas[va.va_start]
            cpu.charge(c.lock_acquire_ns + self.area_line_ns(cpu, va))
            va.writer = cpu.id
            yield from cpu.spin_unlock(lock)
        if not self.eager:
            # free_unmap_vmap_area: unmap_vmap_area() clears the PTEs, no TLB flush
            cpu.charge(va.nr_pages * c.unmap_page_ns)
            yield from self.free_vmap_area_noflush(cpu, va, unlinked=self.find_unlink)
        # __vunmap: __free_page() per page, kvfree(area->pages), kfree(area)
        cpu.charge(va.nr_pages * c.page_free_ns + 2 * c.kmalloc_ns)
        metrics = self.metrics
        metrics.vfree.record(self.now(cpu) - began)
        metrics.count_op()
        if self.tracer is not None:
            self.tracer.op(cpu.id, "vfree", began, self.now(cpu), va.nr_pages)

    def remove_vm_area_eager(self, cpu: Cpu, va: VmapArea) -> Gen:
        """Linux 2.6.27 ``remove_vm_area``: ``write_lock(&vmlist_lock)``, the linear search of
        ``vmlist`` for the address, ``unmap_vm_area`` (clear the PTEs, then
        ``flush_tlb_kernel_range``, on x86 always ``flush_tlb_all()``: an IPI to every CPU,
        waited for) with the lock held, the unlink (``*p = tmp->next``), ``write_unlock``."""
        c = self.costs
        lock = self.vmap_area_lock
        yield from cpu.spin_lock(lock)
        walked = self.busy.rank(va.va_start)
        del self.areas[va.va_start]
        va.flags &= ~VM_VM_AREA
        cpu.charge(c.lock_acquire_ns + self.busy_lines.read(cpu.id) + self.area_line_ns(cpu, va)
                   + walked * self.machine.mean_line_ns(cpu.id, self.busy.count)
                   + va.nr_pages * c.unmap_page_ns)
        yield from cpu.settle()
        self.safety.lazily_freed(va, self.env.now, cpu.id, "unmap_vm_area")
        yield from self.flusher.flush_tlb_all(cpu)
        self.busy.erase(va.va_start)
        cpu.charge(self.busy_lines.write(cpu.id, self.busy_write_lines))
        yield from cpu.settle()
        self.safety.freed(va, self.env.now, cpu.id)
        yield from cpu.spin_unlock(lock)

    def vfree_atomic(self, cpu: Cpu, va: VmapArea) -> None:
        """``vfree_atomic``: the area goes to this CPU's deferred list, a kworker frees it."""
        if cpu.id not in self.vfree_deferred:
            self.vfree_deferred[cpu.id] = VfreeDeferred(self, cpu.id)
        self.vfree_deferred[cpu.id].vfree_atomic(cpu, va)

    def works(self) -> list[Work]:
        """Every work item a drained run must let finish."""
        return [self.drain_vmap_work] + [d.work for d in self.vfree_deferred.values()]

    def find_vmap_area(self, cpu: Cpu, addr: int) -> Generator[simpy.Event, None, VmapArea]:
        """``find_vmap_area``: an rbtree lookup under vmap_area_lock (6.9: under the busy.lock
        of ``addr``'s node, where the area is, so the first node tried finds it)."""
        lock = self.busy_tree_lock(addr)
        yield from cpu.spin_lock(lock)
        va = self.areas[addr]
        cpu.charge(self.costs.lock_acquire_ns + self.busy_rbtree_ns(addr)
                   + self.busy_lines_of(addr).read(cpu.id))
        yield from cpu.spin_unlock(lock)
        return va

    def find_unlink_vmap_area(self, cpu: Cpu, va: VmapArea) -> Gen:
        """Linux 6.3 (Uladzislau Rezki, "mm: vmalloc: Avoid calling __find_vmap_area() twice
        in __vunmap()", v3 22 Dec 2022): ``remove_vm_area`` looks the area up and unlinks it
        from the busy tree in one hold of its lock (6.9: its node's busy.lock)."""
        lock = self.busy_tree_lock(va.va_start)
        yield from cpu.spin_lock(lock)
        del self.areas[va.va_start]
        va.flags &= ~VM_VM_AREA
        self._unlink_va(va)
        cpu.charge(self.costs.lock_acquire_ns + 2 * self.busy_rbtree_ns(va.va_start)
                   + self.busy_lines_of(va.va_start).write(cpu.id, RB_LIST_WRITE_LINES)
                   + self.area_line_ns(cpu, va))
        va.writer = cpu.id
        yield from cpu.spin_unlock(lock)

    def free_vmap_area_noflush(self, cpu: Cpu, va: VmapArea, unlinked: bool = False) -> Gen:
        """``free_vmap_area_noflush``: account the area lazily, maybe trigger a purge
        (``unlinked``: already out of the busy tree, by ``find_unlink_vmap_area``)."""
        if not self.lazy_in_busy_tree and not unlinked:
            yield from self.unlink_lazy_area(cpu, va)
        yield from cpu.settle()  # lock-free updates of shared state happen at this CPU's time
        va.writer = cpu.id  # va->flags, va->purge_list written here
        if self.read_then_publish:
            # nr_lazy = atomic_add_return(nr, &vmap_lazy_nr); llist_add(...)
            nr_lazy = self.atomic_lazy_nr(cpu, va.va_end - va.va_start)
            self.safety.lazily_freed(va, self.env.now, cpu.id)
            yield from self.lazy.publish(self, cpu, va)
            self.safety.published(va, self.env.now)
        else:
            # va->flags |= VM_LAZY_FREE; [llist_add(...);] atomic_add(nr, &vmap_lazy_nr)
            self.safety.lazily_freed(va, self.env.now, cpu.id)
            yield from self.lazy.publish(self, cpu, va)
            yield from cpu.settle()  # the area is visible to purgers from here on
            self.safety.published(va, self.env.now)
            self.safety.read(va, self.env.now, cpu.id, "read va->va_end - va->va_start")
            nr_lazy = self.atomic_lazy_nr(cpu, va.va_end - va.va_start)
        if nr_lazy > self.lazy_max_pages:
            if self.purge_in_workqueue:
                self.drain_vmap_work.schedule_work(cpu)  # schedule_work(&drain_vmap_work)
            else:
                yield from self.try_purge_vmap_area_lazy(cpu)

    def unlink_lazy_area(self, cpu: Cpu, va: VmapArea) -> Gen:
        """Linux 5.4+: ``unlink_va(va, &vmap_area_root)`` under vmap_area_lock at free time
        (6.9: from its node's busy tree under that node's busy.lock)."""
        lock = self.busy_tree_lock(va.va_start)
        yield from cpu.spin_lock(lock)
        self._unlink_va(va)
        cpu.charge(self.costs.lock_acquire_ns + self.busy_rbtree_ns(va.va_start)
                   + self.busy_lines_of(va.va_start).write(cpu.id, RB_LIST_WRITE_LINES))
        yield from cpu.spin_unlock(lock)

    def _unlink_va(self, va: VmapArea) -> None:
        """``unlink_va(va, root)`` of the busy tree (its lock held)."""
        if self.first_fit:
            free_vmap_cache_on_free(self.busy, self.cache, va.va_start, va.va_end)
        self.busy.erase(va.va_start)
        if self.nodes is not None:
            self.nodes.addr_to_node(va.va_start).busy -= 1

    def kworker(self, cpu_id: int) -> Kworker:
        """The kworker of CPU ``cpu_id``'s system_wq pool."""
        if cpu_id not in self.kworkers:
            self.kworkers[cpu_id] = Kworker(self.env, cpu_id, self.machine.socket_of(cpu_id),
                                            self.flusher.irq)
        return self.kworkers[cpu_id]

    def purge_kworker(self, cpu_id: int) -> Kworker:
        """The kworker that runs a 6.9 purge helper (``vn->purge_work``) on ``cpu_id``: a
        context of its own, beside the one running ``drain_vmap_work``."""
        if cpu_id not in self.purge_kworkers:
            self.purge_kworkers[cpu_id] = Kworker(
                self.env, cpu_id, self.machine.socket_of(cpu_id), self.flusher.irq)
        return self.purge_kworkers[cpu_id]

    # --- vm_map_ram() / vm_unmap_ram() ----------------------------------------------------

    def vm_map_ram(self, cpu: Cpu, count: int) -> Generator[simpy.Event, None, VmapRam | None]:
        """``vm_map_ram(pages, count, node, prot)`` (``sim/mm/vmap_block.py``)."""
        if self.eager:
            raise RuntimeError("vm_map_ram() came with Linux 2.6.28's rewrite: a variant "
                               "with lazy_list: none has none")
        return vm_map_ram(self, cpu, count)

    def vm_unmap_ram(self, cpu: Cpu, ram: VmapRam) -> Gen:
        """``vm_unmap_ram(mem, count)`` of what ``vm_map_ram`` returned."""
        return vm_unmap_ram(self, cpu, ram)

    # --- set_memory_*() -------------------------------------------------------------------

    def vm_unmap_aliases(self, cpu: Cpu) -> Gen:
        """``vm_unmap_aliases``: widen [start, end) over every CPU's dirty vmap blocks, then a
        sync purge that flushes when any block is dirty even if nothing is lazy.

        The blocks of the simulated ``vm_map_ram()`` calls widen the range with their dirty
        ranges (``VmapBlocks.dirty_range``). ``vmap_block_dirty`` stands for the dirty blocks
        of vm_map_ram users outside the simulated workload: their dirty ranges, spread over the
        vmalloc space, are taken to span it all (far more than the flush ceiling, so the flush
        is a full one)."""
        called = self.now(cpu)
        if self.eager:  # Linux 2.6.27 has no vm_unmap_aliases(): nothing is ever left unflushed
            yield from cpu.settle()
            return
        cpu.charge(self.machine.ncpus * self.costs.vb_queue_check_ns)
        start, end, flush = self.vend, self.vstart, False
        if self.vb is not None:
            start, end, flush = yield from self.vb.dirty_range(cpu)
        if self.vmap_block_dirty:
            start, end, flush = self.vstart, self.vend, True
        yield from self._purge_vmap_area_lazy(cpu, start, end, True, flush)
        yield from cpu.settle()
        self.safety.vm_unmap_aliases_returned(called, self.env.now, cpu.id)

    def set_memory(self, cpu: Cpu, nr_pages: int) -> Gen:
        """x86 ``set_memory_wb()`` and friends: ``change_page_attr_set_clr``."""
        began = self.now(cpu)
        c = self.costs
        yield from self.vm_unmap_aliases(cpu)  # (none before 2.6.28)
        yield from cpu.spin_lock(self.cpa_lock)  # __change_page_attr_set_clr
        cpu.charge(c.lock_acquire_ns + nr_pages * c.cpa_ns)
        yield from cpu.spin_unlock(self.cpa_lock)
        yield from self.flusher.flush_tlb_all(cpu)  # cpa_flush_range: flush_tlb_all()
        cpu.charge(nr_pages * c.clflush_page_ns)  # ... then clflush the pages
        self.metrics.set_memory.record(self.now(cpu) - began)
        self.metrics.count_op()
        if self.tracer is not None:
            self.tracer.op(cpu.id, "set_memory", began, self.now(cpu), nr_pages)
