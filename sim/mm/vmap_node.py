"""Per-node busy trees: the ``vmap_nodes`` mechanism.

Linux 6.9, Uladzislau Rezki, "Mitigate a vmap lock contention" v3 (2 Jan 2024; d093602919ad
"mm: vmalloc: remove global vmap_area_root rb-tree", 72210662c5a2 "mm: vmalloc: offload
free_vmap_area_lock lock", "mm: vmalloc: set nr_nodes based on CPUs in a system"): the global
``vmap_area_root`` and its ``vmap_area_lock`` give way to ``vmap_nodes[]``, each with its own busy
tree under its own ``vn->busy.lock``. An area lives in the node of its start address,
``addr_to_node_id(addr) = (addr / vmap_zone_size) % nr_vmap_nodes``; there are as many nodes
as CPUs, at most 128. The allocator's free tree keeps its one global lock
(``free_vmap_area_lock``).

Not modelled: the per-node lazy trees, the size-segregated per-node pools, and the purge
helpers (the purge tree keeps its one ``purge_vmap_area_lock`` of 5.11).
"""

from __future__ import annotations

import simpy

from ..locks import Handoff, LockStat, SpinLock

VMAP_ZONE_PAGES = 16
"""``vmap_zone_size`` in pages: the address span mapped to one node before the next."""
MAX_VMAP_NODES = 128
"""The cap on ``nr_vmap_nodes``."""


def nr_vmap_nodes(ncpus: int) -> int:
    """``vmap_init_nodes``: one node per CPU, at most 128."""
    return min(ncpus, MAX_VMAP_NODES)


class VmapNode:
    """``struct vmap_node``: its busy tree (the areas counted) and ``busy.lock``."""

    __slots__ = ("id", "lock", "busy")

    def __init__(self, node_id: int, lock: SpinLock) -> None:
        self.id = node_id
        self.lock = lock
        self.busy = 0
        """Areas in the node's busy tree (its depth is what a lookup pays)."""


class VmapNodes:
    """``vmap_nodes[nr_vmap_nodes]``; their locks are one lock class, as in /proc/lock_stat
    (one ``spin_lock_init`` site), so they share one :class:`LockStat`."""

    def __init__(self, env: simpy.Environment, ncpus: int, handoff: Handoff) -> None:
        stat = LockStat()
        self.nodes = []
        for i in range(nr_vmap_nodes(ncpus)):
            lock = SpinLock(env, "vmap_node.busy.lock", handoff)
            lock.stat = stat
            self.nodes.append(VmapNode(i, lock))

    def addr_to_node(self, addr: int) -> VmapNode:
        """``addr_to_node(addr)``: ``&vmap_nodes[addr_to_node_id(addr)]`` (addr in pages)."""
        return self.nodes[(addr // VMAP_ZONE_PAGES) % len(self.nodes)]

    @property
    def stat(self) -> LockStat:
        return self.nodes[0].lock.stat

    def locks(self) -> list[SpinLock]:
        return [node.lock for node in self.nodes]
