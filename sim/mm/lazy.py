"""How lazily freed areas are remembered until a purge: the ``lazy_list`` mechanism.

``full_walk`` (Linux <= 4.6): ``free_vmap_area_noflush`` sets ``VM_LAZY_FREE`` on an area that
stays in ``vmap_area_list``; ``__purge_vmap_area_lazy`` walks *every* area under RCU to find the
flagged ones, marking each ``VM_LAZY_FREEING`` as it passes. Two walks that overlap in time
(possible only without ``purge_lock``) can both take an area.

``llist`` (Linux 4.7, Chris Wilson, "mm/vmalloc: Keep a separate lazy-free list", commit
80c4bd7a5e43): lazily freed areas go on a lock-free ``llist``; a purge takes the whole list with
one ``llist_del_all`` and walks only it, so every purger gets its own areas.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING

import simpy

from ..cpu import Cpu
from .vmap_area import VM_LAZY_FREE, VM_LAZY_FREEING, VmapArea

if TYPE_CHECKING:
    from .vmalloc import VmallocModel


class LazyList:
    """Template: the hooks that differ between lazy-list mechanisms."""

    def publish(self, vm: VmallocModel, cpu: Cpu, va: VmapArea) -> None:
        """Make ``va`` visible to purgers (after this point it may be freed at any time)."""
        raise NotImplementedError

    def collect(self, vm: VmallocModel, cpu: Cpu
                ) -> Generator[simpy.Event, None, list[VmapArea]]:
        """Take the areas this purge will free, spending the walk that finds them."""
        raise NotImplementedError

    def pending(self) -> int:
        """Areas lazily freed and not yet taken by a purge."""
        raise NotImplementedError


class FullWalk(LazyList):
    """Linux 4.5: VM_LAZY_FREE flags on areas in vmap_area_list; a purge walks all areas."""

    def __init__(self) -> None:
        self._flagged: dict[int, VmapArea] = {}

    def publish(self, vm: VmallocModel, cpu: Cpu, va: VmapArea) -> None:
        cpu.charge(vm.costs.atomic_ns)  # va->flags |= VM_LAZY_FREE: an RMW of the flags word
        va.flags |= VM_LAZY_FREE
        if vm.lazy_in_busy_tree:  # only areas in vmap_area_list can be found by the walk
            self._flagged[va.ident] = va

    def collect(self, vm: VmallocModel, cpu: Cpu
                ) -> Generator[simpy.Event, None, list[VmapArea]]:
        # rcu_read_lock(); list_for_each_entry_rcu(va, &vmap_area_list, list)
        found = list(self._flagged.values())
        cpu.charge(vm.busy.count * vm.costs.list_walk_per_node_ns)
        yield from cpu.settle()
        for va in found:  # va->flags |= VM_LAZY_FREEING; va->flags &= ~VM_LAZY_FREE
            va.flags = (va.flags | VM_LAZY_FREEING) & ~VM_LAZY_FREE
            self._flagged.pop(va.ident, None)
        return found

    def pending(self) -> int:
        return len(self._flagged)


class Llist(LazyList):
    """Linux 4.7: a separate lock-free llist of lazily freed areas."""

    def __init__(self) -> None:
        self._llist: list[VmapArea] = []

    def publish(self, vm: VmallocModel, cpu: Cpu, va: VmapArea) -> None:
        cpu.charge(vm.costs.atomic_ns)  # llist_add(&va->purge_list, &vmap_purge_list)
        self._llist.append(va)

    def collect(self, vm: VmallocModel, cpu: Cpu
                ) -> Generator[simpy.Event, None, list[VmapArea]]:
        yield from cpu.settle()
        areas, self._llist = self._llist, []  # valist = llist_del_all(&vmap_purge_list)
        cpu.charge(vm.costs.atomic_ns + len(areas) * vm.costs.list_walk_per_node_ns)
        return areas

    def pending(self) -> int:
        return len(self._llist)


LAZY_LISTS: dict[str, type[LazyList]] = {"full_walk": FullWalk, "llist": Llist}
