"""``vfree_atomic()``: frees deferred to a per-CPU work item.

Linux 4.10, bf22e37a6413 "mm: add vfree_atomic()" (Andrey Ryabinin): ``__vfree_deferred``
does ``llist_add`` of the area to this CPU's ``vfree_deferred`` list and, if the list was
empty, ``schedule_work(&p->wq)``; ``free_work`` takes the list with ``llist_del_all`` and
``__vunmap``\\ s each area, in a kworker of that CPU. The same shape serves other deferred
frees (``do_free_init``'s ``init_free_wq``, BPF's deferred program free).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING

import simpy

from sim.engine.cpu import Cpu
from sim.mm.vmap_area import VmapArea
from sim.mm.workqueue import Kworker, Work

if TYPE_CHECKING:
    from sim.mm.vmalloc import VmallocModel


class VfreeDeferred:
    """``struct vfree_deferred`` of one CPU: its llist of areas and its work item, run by a
    kworker of that CPU (a context of its own, beside the one running ``drain_vmap_work``)."""

    def __init__(self, vm: VmallocModel, cpu_id: int) -> None:
        self.vm = vm
        self.list: list[VmapArea] = []
        kworker = Kworker(vm.env, cpu_id, vm.machine.socket_of(cpu_id), vm.flusher.irq)
        c = vm.costs
        self.work = Work(vm.env, self.free_work, lambda _: kworker, c.lock_acquire_ns,
                         c.atomic_ns, c.mutex_wake_ns)

    def vfree_atomic(self, cpu: Cpu, va: VmapArea) -> None:
        """``__vfree_deferred``: ``if (llist_add(...)) schedule_work(&p->wq)``."""
        cpu.charge(self.vm.costs.atomic_ns)
        first = not self.list
        self.list.append(va)
        if first:
            self.work.schedule_work(cpu)

    def free_work(self, kworker: Cpu) -> Generator[simpy.Event, None, None]:
        """``free_work``: ``llist_for_each_safe(... llist_del_all(&p->list)) __vunmap(...)``."""
        yield from kworker.settle()
        batch, self.list = self.list, []
        kworker.charge(self.vm.costs.atomic_ns)
        for va in batch:
            yield from self.vm.vfree(kworker, va)
