"""The per-CPU ``vmap_block`` allocator: ``vm_map_ram()`` / ``vm_unmap_ram()``.

Models mm/vmalloc.c's "per cpu kva allocator" as reworked in Linux 4.1 by Roman Pen's 2015
series "mm/vmalloc: fix possible exhaustion of vmalloc space caused by vm_map_ram allocator"
(Message-Id ``1426773881-5757-1-git-send-email-r.peniaev@gmail.com``): a request of at most
``VMAP_MAX_ALLOC`` pages, rounded up to ``1 << get_order(count)`` pages, is carved out of a
``vmap_block`` of this CPU by a sequential bump (``pages_off = VMAP_BBMAP_BITS - vb->free``);
new blocks go to the tail of the CPU's ``vmap_block_queue``; a freed range only widens the
block's dirty range ``[dirty_min, dirty_max)`` (no bitmap) and adds to ``dirty``. The space of
a block comes back only as a whole: once every page is dirty (``free_vmap_block``), or when
``purge_fragmented_blocks`` finds it with no live mapping left, its ``vmap_area`` goes down the
ordinary lazy path (``free_vmap_area_noflush``) and is flushed by a purge.

A freed range stays mapped in other CPUs' TLBs until some flush covers it: either the purge of
its whole block, or ``vm_unmap_aliases()``, which widens its flush over every block's dirty
range (:meth:`VmapBlocks.dirty_range`). Two mechanisms of Thomas Gleixner's 2023 series
(Linux 6.5) change that walk: ``vb_dirty_reset`` (a09fad96ffb1) and ``vb_walk_all``
(fc1e0d980037), see :class:`~sim.schema.Variant`.

Blocks are found by address in ``vmap_block_tree`` (a radix tree under ``vmap_block_tree_lock``
in 4.x; later an xarray, per CPU in 6.9: modelled as the one global lock). Not modelled: 6.5's
``VMAP_PURGE_THRESHOLD`` (vm_unmap_aliases then purges only nearly used-up fragmented blocks)
and the ``vb->cpu`` fix of 2024.

Walking a CPU's block list is a Python loop over its blocks, as the kernel's: blocks are few
(each holds up to ``VMAP_BBMAP_BITS`` pages), and nothing here runs unless ``vm_map_ram()`` is
called, so runs without it are unchanged.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Generator
from typing import TYPE_CHECKING

import simpy

from sim.engine.cpu import Cpu
from sim.engine.locks import LockStat, SpinLock
from sim.mm.vmap_area import VmapArea

if TYPE_CHECKING:
    from sim.mm.vmalloc import VmallocModel

Gen = Generator[simpy.Event, None, None]

BITS_PER_LONG = 64
VMAP_MAX_ALLOC = BITS_PER_LONG
"""Largest ``vm_map_ram`` count (pages) served from a block; larger go to alloc_vmap_area."""
VMAP_BBMAP_BITS_MAX = 1024
VMAP_BBMAP_BITS_MIN = VMAP_MAX_ALLOC * 2
NR_CPUS = 8192
"""``CONFIG_NR_CPUS`` of x86_64 distribution kernels (MAXSMP): the formula uses the compiled-in
maximum, not the CPUs online."""
VMALLOC_SPACE_PAGES = (128 << 30) >> 12
"""The formula's guess of the vmalloc space on 64-bit, ``128UL*1024*1024*1024``, in 4 KiB
pages (the real space, ``vmalloc_space`` of the profile, plays no part)."""


def roundup_pow_of_two(n: int) -> int:
    return 1 << (n - 1).bit_length()


def vmap_bbmap_bits(nr_cpus: int, vmalloc_pages: int) -> int:
    """``VMAP_BBMAP_BITS = VMAP_MIN(VMAP_BBMAP_BITS_MAX, VMAP_MAX(VMAP_BBMAP_BITS_MIN,
    VMALLOC_PAGES / roundup_pow_of_two(NR_CPUS) / 16))``: room for at least 16 blocks per CPU."""
    per_cpu = vmalloc_pages // roundup_pow_of_two(nr_cpus) // 16
    return min(VMAP_BBMAP_BITS_MAX, max(VMAP_BBMAP_BITS_MIN, per_cpu))


VMAP_BBMAP_BITS = vmap_bbmap_bits(NR_CPUS, VMALLOC_SPACE_PAGES)
"""Pages per block: 2**25 / 8192 / 16 = 256 with the guesses above (1 MiB blocks)."""
VMAP_BLOCK_SIZE = VMAP_BBMAP_BITS
"""``VMAP_BBMAP_BITS * PAGE_SIZE``, in pages (the model's unit); also the block alignment."""


def get_order(count: int) -> int:
    """``get_order(count << PAGE_SHIFT)``: the smallest order with ``1 << order >= count``."""
    return (count - 1).bit_length()


class VmapRam:
    """What ``vm_map_ram`` returns, to be passed back to ``vm_unmap_ram``: the address and the
    page count (the kernel's ``mem`` and ``count``). ``va`` is the ``vmap_area`` of a large
    mapping, or, for a block mapping, an area standing for its pages for the safety checker."""

    __slots__ = ("addr", "count", "va")

    def __init__(self, addr: int, count: int, va: VmapArea) -> None:
        self.addr = addr
        self.count = count
        self.va = va

    def __repr__(self) -> str:
        return f"VmapRam({self.addr:#x}, {self.count} pages)"


class VmapBlock:
    """``struct vmap_block`` (4.1+): its area, lock, free and dirty page counts, and dirty
    range ``[dirty_min, dirty_max)`` in pages from the block's start."""

    __slots__ = ("va", "lock", "cpu", "free", "dirty", "dirty_min", "dirty_max")

    def __init__(self, va: VmapArea, lock: SpinLock, cpu: int, order: int) -> None:
        self.va = va
        self.lock = lock
        self.cpu = cpu
        self.free = VMAP_BBMAP_BITS - (1 << order)  # new_vmap_block occupies the first range
        self.dirty = 0
        self.dirty_min = VMAP_BBMAP_BITS
        self.dirty_max = 0

    def fragmented(self) -> bool:
        """No live mapping left, yet not all dirty: ``free + dirty == BITS && dirty != BITS``."""
        return self.free + self.dirty == VMAP_BBMAP_BITS and self.dirty != VMAP_BBMAP_BITS


class VmapBlockQueue:
    """``struct vmap_block_queue`` of one CPU: ``free`` (blocks with free space, in list
    order; ``list_add_tail_rcu``) under ``lock``, and ``blocks``, every block the CPU
    allocated and not yet freed (what the 6.5 walk of the ``vmap_blocks`` xarray visits)."""

    __slots__ = ("lock", "free", "blocks")

    def __init__(self, lock: SpinLock) -> None:
        self.lock = lock
        self.free: list[VmapBlock] = []
        self.blocks: dict[int, VmapBlock] = {}


class VmapBlocks:
    """The per-CPU ``vmap_block_queue``s, ``vmap_block_tree`` and its lock, and counters.

    Created by the model at the first ``vm_map_ram`` that needs a block, so that runs without
    one keep their lock_stat. Locks of one kind are one lock class (one ``spin_lock_init``
    site), sharing one :class:`LockStat`: ``vmap_block_queue.lock`` and ``vmap_block.lock``.
    """

    def __init__(self, vm: VmallocModel) -> None:
        self.vm = vm
        self.tracer = vm.tracer  # a traced run's tracer records every lock, these too
        self.tree_lock = self._lock("vmap_block_tree_lock")
        self.queue_lock_class = self._lock("vmap_block_queue.lock")
        self.block_lock_class = self._lock("vmap_block.lock")
        """Stands for every block's ``vb->lock`` in lock_stat (blocks come and go)."""
        self.queues = [VmapBlockQueue(self._lock("vmap_block_queue.lock",
                                                 self.queue_lock_class.stat))
                       for _ in range(vm.machine.ncpus)]
        self.tree: dict[int, VmapBlock] = {}
        """``vmap_block_tree``: block by ``addr_to_vb_idx``."""
        self._ident = itertools.count(-1, -1)  # safety identities of block ranges (not areas)
        self.blocks_allocated = 0
        self.blocks_freed = 0
        """Blocks handed to ``free_vmap_area_noflush`` (fully dirty or fragmented)."""
        self.fragmented_purged = 0
        self.vb_allocs = 0
        self.vb_frees = 0
        self.dirty_flushes = 0
        """``vm_unmap_aliases()`` calls whose walk found a dirty range to flush."""

    def _lock(self, name: str, stat: LockStat | None = None, init_cpu: int = 0) -> SpinLock:
        """A lock of the allocator; ``init_cpu`` runs its ``spin_lock_init`` (boot: CPU 0)."""
        lock = SpinLock(self.vm.env, name, self.vm.vmap_area_lock.handoff, init_cpu)
        if stat is not None:
            lock.stat = stat
        lock.tracer = self.tracer
        return lock

    def locks(self) -> list[SpinLock]:
        return [self.tree_lock, self.queue_lock_class, self.block_lock_class]

    def tree_ns(self) -> float:
        """One ``vmap_block_tree`` lookup, insert or delete: a descent of its depth."""
        return math.log2(len(self.tree) + 2) * self.vm.costs.rbtree_level_ns

    # --- allocation -----------------------------------------------------------------------

    def vb_alloc(self, cpu: Cpu, count: int) -> Generator[simpy.Event, None, int | None]:
        """``vb_alloc``: the first block of this CPU's free list with ``1 << order`` free
        pages gives them at ``VMAP_BBMAP_BITS - vb->free``; a block left with no free page
        leaves the list. None fits: ``new_vmap_block``. Returns the address or None."""
        order = get_order(count)
        vbq = self.queues[cpu.id]
        c = self.vm.costs
        for vb in list(vbq.free):  # list_for_each_entry_rcu: a snapshot may hold removed ones
            yield from cpu.spin_lock(vb.lock)
            cpu.charge(c.lock_acquire_ns)
            if vb.free < (1 << order):
                yield from cpu.spin_unlock(vb.lock)
                continue
            addr = vb.va.va_start + VMAP_BBMAP_BITS - vb.free
            vb.free -= 1 << order
            if vb.free == 0:
                yield from self._list_del(cpu, vbq, vb)
            yield from cpu.spin_unlock(vb.lock)
            self.vb_allocs += 1
            return addr
        addr = yield from self.new_vmap_block(cpu, order)
        if addr is not None:
            self.vb_allocs += 1
        return addr

    def new_vmap_block(self, cpu: Cpu, order: int) -> Generator[simpy.Event, None, int | None]:
        """``new_vmap_block``: ``kmalloc_node`` of the block, ``alloc_vmap_area(VMAP_BLOCK_SIZE,
        VMAP_BLOCK_SIZE)`` (a normal area, purge and retry included), insert into
        ``vmap_block_tree``, add at the tail of this CPU's queue; the first ``1 << order``
        pages are the caller's."""
        vm, c = self.vm, self.vm.costs
        cpu.charge(2 * c.kmalloc_ns)  # kmalloc_node(vmap_block), alloc_vmap_area's vmap_area
        va = yield from vm.alloc_vmap_area(cpu, VMAP_BLOCK_SIZE, VMAP_BLOCK_SIZE)
        if va is None:
            cpu.charge(c.kmalloc_ns)  # kfree(vb)
            return None
        va.flags = 0  # no vm_struct behind a block
        lock = self._lock("vmap_block.lock", self.block_lock_class.stat, cpu.id)  # spin_lock_init
        vb = VmapBlock(va, lock, cpu.id, order)
        yield from cpu.spin_lock(self.tree_lock)
        self.tree[va.va_start // VMAP_BLOCK_SIZE] = vb  # radix_tree_insert(addr_to_vb_idx)
        cpu.charge(c.lock_acquire_ns + self.tree_ns())
        yield from cpu.spin_unlock(self.tree_lock)
        vbq = self.queues[cpu.id]
        yield from cpu.spin_lock(vbq.lock)
        vbq.free.append(vb)  # list_add_tail_rcu(&vb->free_list, &vbq->free)
        vbq.blocks[va.va_start] = vb
        cpu.charge(c.lock_acquire_ns)
        yield from cpu.spin_unlock(vbq.lock)
        self.blocks_allocated += 1
        return va.va_start

    def _list_del(self, cpu: Cpu, vbq: VmapBlockQueue, vb: VmapBlock) -> Gen:
        """``spin_lock(&vbq->lock); list_del_rcu(&vb->free_list); spin_unlock(&vbq->lock)``."""
        yield from cpu.spin_lock(vbq.lock)
        vbq.free.remove(vb)
        cpu.charge(self.vm.costs.lock_acquire_ns)
        yield from cpu.spin_unlock(vbq.lock)

    def block_range(self, addr: int, count: int, cpu: Cpu) -> VmapArea:
        """An area standing for the ``count`` pages mapped at ``addr`` in a block, so that the
        safety checker can follow them (negative identity: not a ``vmap_area``)."""
        va = VmapArea(addr, addr + count, cpu.id, next(self._ident))
        va.flags = 0
        va.log(self.vm.now(cpu), cpu.id, "vb_alloc")
        return va

    # --- free -----------------------------------------------------------------------------

    def vb_free(self, cpu: Cpu, ram: VmapRam) -> Gen:
        """``vb_free``: find the block in ``vmap_block_tree`` (RCU, no lock), clear the PTEs
        without a flush, then under ``vb->lock`` widen the dirty range and add ``1 << order``
        to ``dirty``; a fully dirty block is freed (``free_vmap_block``)."""
        c = self.vm.costs
        order = get_order(ram.count)
        cpu.charge(self.tree_ns() + ram.count * c.unmap_page_ns)  # lookup, vunmap_page_range
        vb = self.tree[ram.addr // VMAP_BLOCK_SIZE]
        offset = ram.addr - vb.va.va_start
        yield from cpu.spin_lock(vb.lock)
        vb.dirty_min = min(vb.dirty_min, offset)
        vb.dirty_max = max(vb.dirty_max, offset + (1 << order))
        vb.dirty += 1 << order
        full = vb.dirty == VMAP_BBMAP_BITS  # read under vb->lock: one freer frees the block
        self.vm.safety.vb_freed(ram.va, self.vm.env.now, cpu.id)
        cpu.charge(c.lock_acquire_ns)
        yield from cpu.spin_unlock(vb.lock)
        self.vb_frees += 1
        if full:
            yield from self.free_vmap_block(cpu, vb)

    def free_vmap_block(self, cpu: Cpu, vb: VmapBlock) -> Gen:
        """``free_vmap_block``: delete from ``vmap_block_tree`` under its lock, then the block's
        area goes down the lazy path, ``free_vmap_area_noflush(vb->va)``; ``kfree_rcu(vb)``."""
        vm, c = self.vm, self.vm.costs
        yield from cpu.spin_lock(self.tree_lock)
        del self.tree[vb.va.va_start // VMAP_BLOCK_SIZE]
        cpu.charge(c.lock_acquire_ns + self.tree_ns())
        yield from cpu.spin_unlock(self.tree_lock)
        del self.queues[vb.cpu].blocks[vb.va.va_start]
        del vm.areas[vb.va.va_start]  # no longer a live area
        yield from vm.free_vmap_area_noflush(cpu, vb.va)
        cpu.charge(c.kmalloc_ns)  # kfree_rcu(vb, rcu_head)
        self.blocks_freed += 1

    def purge_fragmented_blocks(self, cpu: Cpu, target: int) -> Gen:
        """``purge_fragmented_blocks(target)``: walk CPU ``target``'s free list; a block with
        no live mapping left that is not all dirty (checked unlocked, then again under
        ``vb->lock``) is taken off the list with its whole range marked dirty, then freed."""
        c = self.vm.costs
        vbq = self.queues[target]
        purge = []
        for vb in list(vbq.free):
            cpu.charge(c.list_walk_per_node_ns)  # the unlocked check reads the block
            if not vb.fragmented():
                continue
            yield from cpu.spin_lock(vb.lock)
            cpu.charge(c.lock_acquire_ns)
            if vb.fragmented():
                vb.free = 0  # prevent further allocs after releasing lock
                vb.dirty = VMAP_BBMAP_BITS  # prevent purging it again
                vb.dirty_min, vb.dirty_max = 0, VMAP_BBMAP_BITS
                yield from self._list_del(cpu, vbq, vb)
                purge.append(vb)
            yield from cpu.spin_unlock(vb.lock)
        for vb in purge:
            self.fragmented_purged += 1
            yield from self.free_vmap_block(cpu, vb)

    def purge_fragmented_blocks_allcpus(self, cpu: Cpu) -> Gen:
        """``for_each_possible_cpu(cpu) purge_fragmented_blocks(cpu)`` (the per-queue check
        is charged by the caller)."""
        for target, vbq in enumerate(self.queues):
            if vbq.free:
                yield from self.purge_fragmented_blocks(cpu, target)

    # --- vm_unmap_aliases -----------------------------------------------------------------

    def dirty_range(self, cpu: Cpu) -> Generator[simpy.Event, None, tuple[int, int, bool]]:
        """The block walk of ``vm_unmap_aliases()``: under each block's ``vb->lock``, a block
        with dirty space widens ``[start, end)`` by ``va_start + [dirty_min, dirty_max)`` and
        sets ``flush``. Returns ``(start, end, flush)``; nothing dirty: ``(vend, vstart,
        False)``, the kernel's ``ULONG_MAX, 0``.

        Before 6.5 it walks each CPU's free list only (``if (vb->dirty)``), so a block with no
        free page left is skipped, and a dirty range stays to be flushed again by every later
        call. ``vb_walk_all`` (fc1e0d980037): every block, skipping those wholly dirty (being
        freed); ``vb_dirty_reset`` (a09fad96ffb1): ``vb->dirty_max`` decides, and the range is
        reset once taken ("Prevent that this is flushed again")."""
        vm, c = self.vm, self.vm.costs
        reset, walk_all = vm.vb_dirty_reset, vm.vb_walk_all
        start, end, flush = vm.vend, vm.vstart, False
        for vbq in self.queues:
            for vb in list(vbq.blocks.values() if walk_all else vbq.free):
                cpu.charge(c.list_walk_per_node_ns)
                yield from cpu.spin_lock(vb.lock)
                cpu.charge(c.lock_acquire_ns)
                dirty = vb.dirty_max if reset else vb.dirty
                if dirty and not (walk_all and vb.dirty == VMAP_BBMAP_BITS):
                    start = min(start, vb.va.va_start + vb.dirty_min)
                    end = max(end, vb.va.va_start + vb.dirty_max)
                    flush = True
                    if reset:
                        vb.dirty_min, vb.dirty_max = VMAP_BBMAP_BITS, 0
                yield from cpu.spin_unlock(vb.lock)
        self.dirty_flushes += flush
        return start, end, flush


# --- vm_map_ram / vm_unmap_ram ----------------------------------------------------------------

def vm_map_ram(vm: VmallocModel, cpu: Cpu, count: int
               ) -> Generator[simpy.Event, None, VmapRam | None]:
    """``vm_map_ram(pages, count, node, prot)``: up to ``VMAP_MAX_ALLOC`` pages from a block
    (``vb_alloc``), more from ``alloc_vmap_area(count, PAGE_SIZE)`` (no guard page); then
    ``vmap_page_range`` maps the ``count`` pages. None if no space was found."""
    if count < 1:
        raise ValueError(f"vm_map_ram of {count} pages")
    began = vm.now(cpu)
    c = vm.costs
    vm.vm_map_ram_calls += 1
    if count <= VMAP_MAX_ALLOC:
        if vm.vb is None:
            vm.vb = VmapBlocks(vm)
        addr = yield from vm.vb.vb_alloc(cpu, count)
        ram = None if addr is None else VmapRam(addr, count, vm.vb.block_range(addr, count, cpu))
    else:
        cpu.charge(c.kmalloc_ns)  # alloc_vmap_area: kmalloc_node(vmap_area)
        va = yield from vm.alloc_vmap_area(cpu, count, 1)
        ram = None
        if va is not None:
            va.flags = 0  # no vm_struct
            ram = VmapRam(va.va_start, count, va)
    if ram is None:
        vm.vm_map_ram_failures += 1
    else:
        cpu.charge(count * c.map_page_ns)  # vmap_page_range
    vm.metrics.count_op()
    if vm.tracer is not None:
        vm.tracer.op(cpu.id, "vm_map_ram", began, vm.now(cpu), count, failed=ram is None)
    return ram


def vm_unmap_ram(vm: VmallocModel, cpu: Cpu, ram: VmapRam) -> Gen:
    """``vm_unmap_ram(mem, count)``: ``vb_free`` for a block mapping; otherwise
    ``find_vmap_area`` and ``free_unmap_vmap_area``: clear the PTEs, no flush, then the lazy
    ``free_vmap_area_noflush``."""
    began = vm.now(cpu)
    vm.vm_unmap_ram_calls += 1
    if ram.count <= VMAP_MAX_ALLOC:
        yield from vm.vb.vb_free(cpu, ram)
    else:
        va = yield from vm.find_vmap_area(cpu, ram.addr)
        del vm.areas[va.va_start]  # no longer a live area
        cpu.charge(ram.count * vm.costs.unmap_page_ns)  # unmap_vmap_area
        yield from vm.free_vmap_area_noflush(cpu, va)
    vm.metrics.count_op()
    if vm.tracer is not None:
        vm.tracer.op(cpu.id, "vm_unmap_ram", began, vm.now(cpu), ram.count)
