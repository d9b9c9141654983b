"""Object churn: kernel objects backed by vmalloc that are created, protected and freed.

The ``object_churn`` workload kind models the vmalloc users whose life cycle matters more
than a steady loop: each object type arrives on every CPU as a Poisson process, gets a
vmalloc area, has its pages' attributes changed with ``set_memory_*()`` (each call goes
through ``vm_unmap_aliases()``), lives for an exponential time, has attributes changed back,
and is freed by one of three paths:

* ``vfree``: the CPU frees it synchronously (``module_memfree``, i915's objects);
* ``deferred``: ``vfree_atomic()``, a per-CPU kworker frees it later
  (sim/mm/vfree_deferred.py; also the shape of ``do_free_init``'s ``init_free_wq`` and of
  BPF's deferred program free);
* ``cached``: ``free_thread_stack`` under ``CONFIG_VMAP_STACK`` (Linux 4.9, ac496bf48d97
  "fork: Cache two thread stacks per cpu if CONFIG_VMAP_STACK is set", Andy Lutomirski):
  ``this_cpu_cmpxchg`` into one of ``NR_CACHED_STACKS`` per-CPU slots, else ``vfree_atomic``;
  ``alloc_thread_stack_node`` first takes a cached stack (``this_cpu_xchg``) before it
  vmallocs.

A CPU handles whichever comes first, the next creation or the next free that is due; it
idles (taking interrupts) until then. An object is freed on the CPU that created it.
Simplification: module and BPF images come from the module area (``module_alloc``) in the
kernel; here every area comes from the one vmalloc space, with the same locks and purges.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Generator

import numpy as np
import simpy

from sim.config.schema import ChurnObject, ObjectChurn, SetMemoryCall
from sim.engine.cpu import Cpu
from sim.mm.vmalloc import VmallocModel
from sim.mm.vmap_area import VmapArea
from sim.workloads.common import Control, Stream, draw_sizes

Gen = Generator[simpy.Event, None, None]


class ObjectType:
    """One object type's random streams on one CPU, and that CPU's stack cache for it."""

    def __init__(self, spec: ChurnObject, rng: np.random.Generator) -> None:
        self.spec = spec
        self.gaps = Stream(lambda n: rng.exponential(1e9 / spec.rate, n))
        self.sizes = Stream(lambda n: draw_sizes(spec.size, rng, n))
        self.lifetimes = Stream(lambda n: rng.exponential(spec.lifetime, n))
        self.cached: list[VmapArea] = []
        """``cached_stacks[NR_CACHED_STACKS]`` of this CPU (``free: cached``)."""
        self.created = 0
        self.destroyed = 0
        self.cache_hits = 0


def pages_of(call: SetMemoryCall, nr_pages: int) -> list[int]:
    """The set_memory_*() calls one entry makes on an object of ``nr_pages`` pages:
    ``all``: one call over every page; ``each``: one call per page; a number: one call over
    that many pages (at most the object's)."""
    if call == "all":
        return [nr_pages]
    if call == "each":
        return [1] * nr_pages
    return [min(int(call), nr_pages)]


def set_memory_calls(vm: VmallocModel, cpu: Cpu, calls: list[SetMemoryCall], nr_pages: int
                     ) -> Gen:
    for call in calls:
        for pages in pages_of(call, nr_pages):
            yield from vm.set_memory(cpu, pages)


def create(vm: VmallocModel, cpu: Cpu, kind: ObjectType
           ) -> Generator[simpy.Event, None, VmapArea | None]:
    """Allocate one object (a cached stack first, for ``free: cached``) and protect it."""
    spec = kind.spec
    kind.created += 1
    if spec.free == "cached":  # alloc_thread_stack_node: this_cpu_xchg(cached_stacks[i])
        cpu.charge(vm.costs.atomic_ns * (1 if kind.cached else spec.cache))
        if kind.cached:
            kind.cache_hits += 1
            return kind.cached.pop()
    va = yield from vm.vmalloc(cpu, kind.sizes.next())
    if va is not None:
        yield from set_memory_calls(vm, cpu, spec.on_alloc, va.nr_pages)
    return va


def destroy(vm: VmallocModel, cpu: Cpu, kind: ObjectType, va: VmapArea) -> Gen:
    """Restore the object's attributes and free it by its type's path."""
    spec = kind.spec
    yield from set_memory_calls(vm, cpu, spec.on_free, va.nr_pages)
    if spec.free == "cached":
        cpu.charge(vm.costs.atomic_ns * min(len(kind.cached) + 1, spec.cache))
        if len(kind.cached) < spec.cache:  # this_cpu_cmpxchg(cached_stacks[i], NULL, vm)
            kind.cached.append(va)
            return
    if spec.free == "vfree":
        yield from vm.vfree(cpu, va)
    else:
        vm.vfree_atomic(cpu, va)


class ChurnCpu:
    """One CPU's side of an ``object_churn`` workload: its object types (with their random
    streams and stack caches) and the heap of its live objects' ends."""

    def __init__(self, env: simpy.Environment, cpu: Cpu, vm: VmallocModel,
                 workload: ObjectChurn, rng: np.random.Generator) -> None:
        self.env, self.cpu, self.vm = env, cpu, vm
        self.kinds = [ObjectType(spec, rng) for spec in workload.objects]
        self.due = [kind.gaps.next() for kind in self.kinds]
        """Per object type, when its next creation is due."""
        self.frees: list[tuple[float, int, int, VmapArea]] = []
        """(due time, sequence, object type, area): a heap of the live objects' ends."""
        self._order = itertools.count()

    def run(self, control: Control) -> Gen:
        """Whichever comes first: the next creation or the next free that is due."""
        cpu, vm, kinds, due = self.cpu, self.vm, self.kinds, self.due
        while not control.stop:
            i = min(range(len(kinds)), key=due.__getitem__)
            if self.frees and self.frees[0][0] <= due[i]:
                at, _, k, va = heapq.heappop(self.frees)
                yield from cpu.wait_until(at)
                yield from destroy(vm, cpu, kinds[k], va)
                kinds[k].destroyed += 1
                continue
            yield from cpu.wait_until(due[i])
            due[i] += kinds[i].gaps.next()
            va = yield from create(vm, cpu, kinds[i])
            if va is not None:
                end = vm.now(cpu) + kinds[i].lifetimes.next()
                heapq.heappush(self.frees, (end, next(self._order), i, va))
        yield from cpu.settle()


def object_churn(env: simpy.Environment, cpu: Cpu, vm: VmallocModel, workload: ObjectChurn,
                 rng: np.random.Generator, control: Control) -> Gen:
    """The SimPy process of one CPU running an ``object_churn`` workload."""
    yield from ChurnCpu(env, cpu, vm, workload, rng).run(control)
