"""How lazily freed areas are remembered until a purge: the ``lazy_list`` mechanism.

``full_walk`` (Linux <= 4.6): ``free_vmap_area_noflush`` sets ``VM_LAZY_FREE`` on an area that
stays in ``vmap_area_list``; ``__purge_vmap_area_lazy`` walks *every* area under RCU to find the
flagged ones.

``llist`` (Linux 4.7, Chris Wilson, "mm/vmalloc: Keep a separate lazy-free list", commit
80c4bd7a5e43, v2 as merged): lazily freed areas go on a lock-free ``llist``; a purge takes the
whole list with one ``llist_del_all`` and walks only it. v2 also reorders
``free_vmap_area_noflush`` so that the size is read (``atomic_add_return``) before the area is
published with ``llist_add`` (Roman Pen's use-after-free review).
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
    """Template: the two hooks that differ between lazy-list mechanisms."""

    def free_vmap_area_noflush(self, vm: VmallocModel, cpu: Cpu, va: VmapArea
                               ) -> Generator[simpy.Event, None, None]:
        raise NotImplementedError

    def collect(self, vm: VmallocModel, cpu: Cpu) -> list[VmapArea]:
        """Take the areas this purge will free, charging the walk that finds them."""
        raise NotImplementedError

    def pending(self) -> int:
        """Areas lazily freed and not yet taken by a purge."""
        raise NotImplementedError


class FullWalk(LazyList):
    """Linux 4.5: VM_LAZY_FREE flags on areas in vmap_area_list; a purge walks all areas."""

    def __init__(self) -> None:
        self._flagged: dict[int, VmapArea] = {}

    def free_vmap_area_noflush(self, vm: VmallocModel, cpu: Cpu, va: VmapArea
                               ) -> Generator[simpy.Event, None, None]:
        va.flags |= VM_LAZY_FREE
        self._flagged[va.va_start] = va
        vm.atomic_lazy_nr(cpu, va.size)  # atomic_add(nr, &vmap_lazy_nr)
        if vm.vmap_lazy_nr > vm.lazy_max_pages:  # atomic_read(&vmap_lazy_nr)
            yield from vm.try_purge_vmap_area_lazy(cpu)

    def collect(self, vm: VmallocModel, cpu: Cpu) -> list[VmapArea]:
        # rcu_read_lock(); list_for_each_entry_rcu(va, &vmap_area_list, list) { ... }
        cpu.charge(vm.busy.count * vm.costs.list_walk_per_node_ns)
        areas = list(self._flagged.values())
        self._flagged.clear()
        for va in areas:
            va.flags = (va.flags | VM_LAZY_FREEING) & ~VM_LAZY_FREE
        return areas

    def pending(self) -> int:
        return len(self._flagged)


class Llist(LazyList):
    """Linux 4.7: a separate lock-free llist of lazily freed areas (v2 step order)."""

    def __init__(self) -> None:
        self._llist: list[VmapArea] = []

    def free_vmap_area_noflush(self, vm: VmallocModel, cpu: Cpu, va: VmapArea
                               ) -> Generator[simpy.Event, None, None]:
        nr_lazy = vm.atomic_lazy_nr(cpu, va.size)  # atomic_add_return(nr, &vmap_lazy_nr)
        cpu.charge(vm.costs.atomic_ns)  # llist_add(&va->purge_list, &vmap_purge_list)
        self._llist.append(va)
        # After this point, we may free va at any time.
        if nr_lazy > vm.lazy_max_pages:
            yield from vm.try_purge_vmap_area_lazy(cpu)

    def collect(self, vm: VmallocModel, cpu: Cpu) -> list[VmapArea]:
        areas, self._llist = self._llist, []  # valist = llist_del_all(&vmap_purge_list)
        cpu.charge(vm.costs.atomic_ns + len(areas) * vm.costs.list_walk_per_node_ns)
        return areas

    def pending(self) -> int:
        return len(self._llist)


LAZY_LISTS: dict[str, type[LazyList]] = {"full_walk": FullWalk, "llist": Llist}
