"""How lazily freed areas are remembered until a purge: the ``lazy_list`` mechanism.

``full_walk`` (Linux <= 4.6): ``free_vmap_area_noflush`` sets ``VM_LAZY_FREE`` on an area that
stays in ``vmap_area_list``; ``__purge_vmap_area_lazy`` walks *every* area under RCU to find the
flagged ones, marking each ``VM_LAZY_FREEING`` as it passes. Two walks that overlap in time
(possible only without ``purge_lock``) can both take an area.

``llist`` (Linux 4.7, Chris Wilson, "mm/vmalloc: Keep a separate lazy-free list", commit
80c4bd7a5e43): lazily freed areas go on a lock-free ``llist``; a purge takes the whole list with
one ``llist_del_all`` and walks only it, so every purger gets its own areas.

``sorted_tree`` (Linux 5.11, Uladzislau Rezki, commit 96e2db456135 "mm/vmalloc: rework the
drain logic"): ``free_vmap_area_noflush`` merges or inserts the area into
``purge_vmap_area_root``/``purge_vmap_area_list`` under the spinlock ``purge_vmap_area_lock``,
so adjacent lazy areas become one node; a purge takes the whole list with
``list_replace_init``, reads the flush range from its first and last entries, and walks it node
by node.

A purge takes *nodes*: lists of areas that the walk meets as one entry (one area each, except
for the sorted tree's merged neighbours). The areas themselves are kept so that each is still
reported to the safety checker.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Generator, Iterable
from typing import TYPE_CHECKING

import simpy

from sim.engine.coherence import SharedLines
from sim.engine.cpu import Cpu
from sim.engine.locks import Handoff, SpinLock
from sim.engine.machine import Machine
from sim.mm.busy_tree import RB_LIST_WRITE_LINES
from sim.mm.vmap_area import VM_LAZY_FREE, VM_LAZY_FREEING, VmapArea

if TYPE_CHECKING:
    from sim.mm.vmalloc import VmallocModel


Nodes = list[list[VmapArea]]
"""What a purge takes: per node of the lazy structure, the areas merged into it."""


class LazyList:
    """Template: the hooks that differ between lazy-list mechanisms."""

    lock: SpinLock | None = None
    """The lock of the lazy structure itself, if it has one."""
    cold_walk = False
    """True when the purge's free loop is the first walk over the nodes it took (their lines
    were last written by the freeing CPUs): it then pays for them
    (``VmallocModel.areas_walk_ns``)."""
    range_walk = False
    """True when the purge walks what it took to find the flush range (``llist_for_each_entry``
    over the llist before the flush), paying for each area there."""

    def publish(self, vm: VmallocModel, cpu: Cpu, va: VmapArea) -> Iterable[simpy.Event]:
        """Make ``va`` visible to purgers (after this point it may be freed at any time); the
        events to wait for: a generator, or ``()`` from a mechanism that never waits (done at
        the call, which saves a generator per free)."""
        raise NotImplementedError

    def collect(self, vm: VmallocModel, cpu: Cpu) -> Generator[simpy.Event, None, Nodes]:
        """Take the nodes this purge will free, spending the walk that finds them."""
        raise NotImplementedError

    def pending(self) -> int:
        """Areas lazily freed and not yet taken by a purge."""
        raise NotImplementedError


class NoLazy(LazyList):
    """Linux 2.6.27 and before: no lazy freeing; ``vfree`` flushes and frees at once
    (``VmallocModel.remove_vm_area_eager``), so nothing is ever published here."""

    def publish(self, vm: VmallocModel, cpu: Cpu, va: VmapArea) -> Iterable[simpy.Event]:
        raise RuntimeError("lazy_list: none has no lazy list to publish to")

    def collect(self, vm: VmallocModel, cpu: Cpu) -> Generator[simpy.Event, None, Nodes]:
        yield from ()
        return []

    def pending(self) -> int:
        return 0


class FullWalk(LazyList):
    """Linux 4.5: VM_LAZY_FREE flags on areas in vmap_area_list; a purge walks all areas."""

    def __init__(self) -> None:
        self._flagged: dict[int, VmapArea] = {}

    def publish(self, vm: VmallocModel, cpu: Cpu, va: VmapArea) -> Iterable[simpy.Event]:
        cpu.charge(vm.costs.atomic_ns)  # va->flags |= VM_LAZY_FREE: an RMW of the flags word
        va.flags |= VM_LAZY_FREE
        if vm.lazy_in_busy_tree:  # only areas in vmap_area_list can be found by the walk
            self._flagged[va.ident] = va
        return ()

    def collect(self, vm: VmallocModel, cpu: Cpu) -> Generator[simpy.Event, None, Nodes]:
        # rcu_read_lock(); list_for_each_entry_rcu(va, &vmap_area_list, list)
        found = list(self._flagged.values())
        cpu.charge(vm.busy.count * vm.machine.mean_line_ns(cpu.id, vm.busy.count))
        yield from cpu.settle()
        for va in found:  # va->flags |= VM_LAZY_FREEING; va->flags &= ~VM_LAZY_FREE
            va.flags = (va.flags | VM_LAZY_FREEING) & ~VM_LAZY_FREE
            self._flagged.pop(va.ident, None)
        return [[va] for va in found]

    def pending(self) -> int:
        return len(self._flagged)


class Llist(LazyList):
    """Linux 4.7: a separate lock-free llist of lazily freed areas."""

    range_walk = True

    def __init__(self, machine: Machine) -> None:
        self._llist: list[VmapArea] = []
        self.head = SharedLines(machine)
        """``vmap_purge_list``'s head line: every ``llist_add`` cmpxchg and the purge's
        ``llist_del_all`` xchg take it exclusive."""

    def publish(self, vm: VmallocModel, cpu: Cpu, va: VmapArea) -> Iterable[simpy.Event]:
        # llist_add(&va->purge_list, &vmap_purge_list)
        cpu.charge(vm.costs.atomic_ns + self.head.write(cpu.id, 1))
        self._llist.append(va)
        return ()

    def collect(self, vm: VmallocModel, cpu: Cpu) -> Generator[simpy.Event, None, Nodes]:
        yield from cpu.settle()
        areas, self._llist = self._llist, []  # valist = llist_del_all(&vmap_purge_list)
        cpu.charge(vm.costs.atomic_ns + self.head.write(cpu.id, 1))
        return [[va] for va in areas]

    def pending(self) -> int:
        return len(self._llist)


class SortedTree(LazyList):
    """Linux 5.11, 96e2db456135 "mm/vmalloc: rework the drain logic": lazy areas merged or
    inserted into a tree/list sorted by address under ``purge_vmap_area_lock``."""

    cold_walk = True

    def __init__(self, env: simpy.Environment, machine: Machine, handoff: Handoff) -> None:
        self.lock = SpinLock(env, "purge_vmap_area_lock", handoff)
        self.lines = SharedLines(machine)
        """The purge tree's and list's lines a merge touches."""
        self._starts: list[int] = []
        """purge_vmap_area_list: the nodes' va_start, in address order."""
        self._nodes: dict[int, tuple[int, list[VmapArea]]] = {}
        """purge_vmap_area_root: va_start -> (va_end, the lazy areas merged into the node)."""
        self._areas = 0

    def publish(self, vm: VmallocModel, cpu: Cpu, va: VmapArea
                ) -> Generator[simpy.Event, None, None]:
        # spin_lock(&purge_vmap_area_lock); merge_or_add_vmap_area(va, &purge_vmap_area_root,
        # &purge_vmap_area_list); spin_unlock(&purge_vmap_area_lock)
        yield from cpu.spin_lock(self.lock)
        depth = math.log2(len(self._starts) + 2)
        self.merge_or_add_vmap_area(va)
        cpu.charge(vm.costs.lock_acquire_ns + depth * vm.costs.rbtree_level_ns
                   + self.lines.write(cpu.id, RB_LIST_WRITE_LINES))
        yield from cpu.spin_unlock(self.lock)

    def merge_or_add_vmap_area(self, va: VmapArea) -> None:
        """Merge ``va`` with the node ending at its start and the one starting at its end."""
        start, end, areas = va.va_start, va.va_end, [va]
        i = bisect_left(self._starts, start)
        if i < len(self._starts) and self._starts[i] == end:  # next sibling
            end, following = self._nodes.pop(end)
            areas += following
            del self._starts[i]
        if i and self._nodes[self._starts[i - 1]][0] == start:  # previous sibling
            start = self._starts[i - 1]
            areas = self._nodes[start][1] + areas
        else:
            self._starts.insert(i, start)
        self._nodes[start] = (end, areas)
        self._areas += 1

    def collect(self, vm: VmallocModel, cpu: Cpu) -> Generator[simpy.Event, None, Nodes]:
        # spin_lock(&purge_vmap_area_lock); purge_vmap_area_root = RB_ROOT;
        # list_replace_init(&purge_vmap_area_list, &local_pure_list); spin_unlock(...)
        # The flush range is then first/last entry: O(1), no walk here.
        yield from cpu.spin_lock(self.lock)
        nodes = [self._nodes[start][1] for start in self._starts]
        self._starts, self._nodes, self._areas = [], {}, 0
        cpu.charge(vm.costs.lock_acquire_ns + self.lines.write(cpu.id, 1))
        yield from cpu.spin_unlock(self.lock)
        return nodes

    def pending(self) -> int:
        return self._areas

    def nodes(self) -> int:
        """Nodes in the purge tree now."""
        return len(self._starts)


def make_lazy_list(kind: str, env: simpy.Environment, machine: Machine, handoff: Handoff
                   ) -> LazyList:
    """The ``lazy_list`` mechanism of a variant; ``handoff`` is its spinlocks' handoff."""
    if kind == "sorted_tree":
        return SortedTree(env, machine, handoff)
    if kind == "llist":
        return Llist(machine)
    if kind == "none":
        return NoLazy()
    return FullWalk()
