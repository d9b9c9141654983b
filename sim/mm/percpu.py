"""The percpu allocator (mm/percpu.c) as far as its chunks live in the vmalloc space.

Used by lib/test_vmalloc.c's ``pcpu_alloc_test`` (sim/workloads/lib_test_vmalloc.py).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import simpy

from sim.config.units import PAGE_SIZE
from sim.engine.cpu import Cpu
from sim.engine.locks import SpinLock
from sim.mm.vmalloc import VmallocModel
from sim.mm.vmap_area import VmapArea
from sim.mm.workqueue import Kworker, Work

Gen = Generator[simpy.Event, None, None]


@dataclass
class PercpuChunk:
    """A ``struct pcpu_chunk`` made by ``pcpu_create_chunk``: its vmalloc area (every unit)."""

    va: VmapArea
    offset: int = 0
    """Bytes used in each unit (objects are packed upward, with their alignment)."""
    live: int = 0


class PercpuAllocator:
    """mm/percpu.c, reduced to what pcpu_alloc_test exercises in the vmalloc space.

    ``__alloc_percpu`` takes ``pcpu_alloc_mutex`` then ``pcpu_lock``, and places the object in
    a chunk with room (packed, aligned; the kernel's bitmap search is one ``kmalloc_ns`` step).
    Without room it creates a chunk under the mutex: ``pcpu_get_vm_areas`` takes
    ``cpus * pcpu_unit_size`` of vmalloc space and the chunk is populated, modelled as one
    ``vmalloc`` of that size (pages allocated and mapped at once, as if the chunk were used to
    the end; the group layout and the top-down placement of ``pcpu_get_vm_areas`` are not
    modelled). ``free_percpu`` takes ``pcpu_lock``; a chunk left empty while another is empty
    queues ``pcpu_balance_work``, which, on a kworker, destroys every empty chunk but one:
    ``pcpu_depopulate_chunk`` (``flush_tlb_kernel_range`` over the chunk) and
    ``pcpu_free_vm_areas`` (a vfree: pages freed, area lazily freed). The first chunk, embedded
    at boot outside the vmalloc space, is taken to have no free space left.
    """

    def __init__(self, env: simpy.Environment, vm: VmallocModel, unit_pages: int) -> None:
        self.env = env
        self.vm = vm
        self.unit_pages = unit_pages
        self.unit_bytes = unit_pages * PAGE_SIZE
        c = vm.costs
        self.alloc_mutex = SpinLock(env, "pcpu_alloc_mutex", lambda a, b, k: c.mutex_wake_ns)
        self.lock = SpinLock(env, "pcpu_lock", vm.spin_handoff)
        vm.other_locks += [self.alloc_mutex, self.lock]
        self.chunks: list[PercpuChunk] = []
        self.open: list[PercpuChunk] = []
        """Chunks that may still have room, oldest first."""
        self.kworkers: dict[int, Kworker] = {}
        self.balance_work = Work(env, self.pcpu_balance_workfn, self.kworker, c.lock_acquire_ns,
                                 c.atomic_ns, c.mutex_wake_ns)
        self.created = 0
        self.destroyed = 0

    def kworker(self, cpu_id: int) -> Kworker:
        if cpu_id not in self.kworkers:
            self.kworkers[cpu_id] = Kworker(self.env, cpu_id, self.vm.machine.socket_of(cpu_id),
                                            self.vm.flusher.irq)
        return self.kworkers[cpu_id]

    def _place(self, size: int, align: int) -> PercpuChunk | None:
        """``pcpu_find_block_fit`` over the chunks with room, first fit."""
        for chunk in self.open:
            start = -(-chunk.offset // align) * align
            if start + size <= self.unit_bytes:
                chunk.offset = start + size
                chunk.live += 1
                return chunk
        return None

    def alloc(self, cpu: Cpu, size: int, align: int
              ) -> Generator[simpy.Event, None, PercpuChunk | None]:
        """``__alloc_percpu(size, align)``: the chunk the object is in, or None."""
        c = self.vm.costs
        yield from cpu.mutex_lock(self.alloc_mutex)  # mutex_lock_killable(&pcpu_alloc_mutex)
        yield from cpu.spin_lock(self.lock)
        chunk = self._place(size, align)
        self.open = [ch for ch in self.open if ch.offset < self.unit_bytes - 3 * 1024]
        cpu.charge(2 * c.lock_acquire_ns + c.kmalloc_ns)
        yield from cpu.spin_unlock(self.lock)
        if chunk is None:  # pcpu_create_chunk(): pcpu_get_vm_areas() + populate
            # num_online_cpus() units
            va = yield from self.vm.vmalloc(cpu, self.vm.machine.ncpus * self.unit_pages)
            if va is not None:
                chunk = PercpuChunk(va)
                self.chunks.append(chunk)
                self.open.append(chunk)
                self.created += 1
                yield from cpu.spin_lock(self.lock)
                chunk = self._place(size, align)
                cpu.charge(c.lock_acquire_ns + c.kmalloc_ns)
                yield from cpu.spin_unlock(self.lock)
        yield from cpu.mutex_unlock(self.alloc_mutex)
        return chunk

    def free(self, cpu: Cpu, chunk: PercpuChunk) -> Gen:
        """``free_percpu``: under ``pcpu_lock``; an emptied chunk may queue the balance work."""
        c = self.vm.costs
        yield from cpu.spin_lock(self.lock)
        chunk.live -= 1
        cpu.charge(c.lock_acquire_ns + c.kmalloc_ns)
        if chunk.live == 0:
            chunk.offset = 0
            if chunk not in self.open:
                self.open.append(chunk)
            if sum(1 for ch in self.chunks if ch.live == 0) > 1:
                self.balance_work.schedule_work(cpu)  # pcpu_schedule_balance_work()
        yield from cpu.spin_unlock(self.lock)

    def pcpu_balance_workfn(self, kworker: Cpu) -> Gen:
        """Destroy every fully free chunk but the first (``pcpu_balance_free``)."""
        empty = [ch for ch in self.chunks if ch.live == 0][1:]
        for chunk in empty:
            self.chunks.remove(chunk)
            if chunk in self.open:
                self.open.remove(chunk)
            va = chunk.va
            yield from self.vm.flusher.flush_tlb_kernel_range(kworker, va.va_start, va.va_end)
            yield from self.vm.vfree(kworker, va)
            self.destroyed += 1

    def quiesce(self) -> Gen:
        """Wait until no balance work is queued or running."""
        while self.balance_work.process is not None:
            yield self.balance_work.process
