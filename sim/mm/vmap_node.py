"""Per-node busy trees: the ``vmap_nodes`` mechanism.

Linux 6.9, Uladzislau Rezki, "Mitigate a vmap lock contention" v3 (2 Jan 2024; d093602919ad
"mm: vmalloc: remove global vmap_area_root rb-tree", 72210662c5a2 "mm: vmalloc: offload
free_vmap_area_lock lock", "mm: vmalloc: set nr_nodes based on CPUs in a system"): the global
``vmap_area_root`` and its ``vmap_area_lock`` give way to ``vmap_nodes[]``, each with its own busy
tree under its own ``vn->busy.lock``. An area lives in the node of its start address,
``addr_to_node_id(addr) = (addr / vmap_zone_size) % nr_vmap_nodes``; there are as many nodes
as CPUs, at most 128. The allocator's free tree keeps its one global lock
(``free_vmap_area_lock``).

Size-segregated per-node pools (72210662c5a2 "mm: vmalloc: offload free_vmap_area_lock
lock"): each node keeps ``vn->pool[MAX_VA_SIZE_PAGES]``: per size up to 256 pages (guard page
included), a list of free ranges of exactly that size, under the node's ``pool_lock``.
``node_alloc`` serves a request from the allocating CPU's node (``raw_smp_processor_id() %
nr_vmap_nodes``) when that list is non-empty; a purge puts freed areas of pool-able size back
into the pool of the node that allocated them, after first returning a quarter of every
pool's entries to the free tree (``decay_va_pool_node``). A pooled range is not free in the
free tree: it stays reserved in the allocator's space (``vm.space``) until decayed back.

Per-node lazy trees (282631cb2447 "mm: vmalloc: remove global purge_vmap_area_root
rb-tree"): each node also keeps the areas lazily freed to it (``vn->lazy`` under
``vn->lazy.lock``) and, during a purge, the list taken from it (``vn->purge_list``); the purge
itself is sim/mm/node_purge.py.
"""

from __future__ import annotations

import simpy

from sim.engine.coherence import SharedLines
from sim.engine.locks import Handoff, LockStat, SpinLock
from sim.engine.machine import Machine

VMAP_ZONE_PAGES = 16
"""``vmap_zone_size`` in pages: the address span mapped to one node before the next."""
MAX_VMAP_NODES = 128
"""The cap on ``nr_vmap_nodes``."""
MAX_VA_SIZE_PAGES = 256
"""The largest size (in pages, guard page included) a node pool holds."""


def nr_vmap_nodes(ncpus: int) -> int:
    """``vmap_init_nodes``: one node per CPU, at most 128."""
    return min(ncpus, MAX_VMAP_NODES)


class VmapNode:
    """``struct vmap_node``: its busy tree (the areas counted) and ``busy.lock``, and its
    size-segregated pools of free ranges under ``pool_lock``."""

    __slots__ = ("id", "lock", "busy", "pool", "pool_lock", "lazy", "lazy_lock", "purge_list",
                 "lines")

    def __init__(self, node_id: int, lock: SpinLock, pool_lock: SpinLock,
                 lazy_lock: SpinLock, lines: SharedLines) -> None:
        self.id = node_id
        self.lock = lock
        self.lines = lines
        """The lines of the node's busy tree a step touches (sim/engine/coherence.py)."""
        self.busy = 0
        """Areas in the node's busy tree (its depth is what a lookup pays)."""
        self.pool: dict[int, list[int]] = {}
        """``vn->pool[size - 1]``: size in pages -> va_start of the free ranges of that size
        (last in, first out, as ``list_add``/``list_first_entry``)."""
        self.pool_lock = pool_lock
        self.lazy: list = []
        """``vn->lazy``: the areas lazily freed to this node, not yet taken by a purge."""
        self.lazy_lock = lazy_lock
        self.purge_list: list = []
        """``vn->purge_list``: the areas a running purge took from ``lazy``."""

    def pooled(self) -> int:
        """Ranges in the node's pools."""
        return sum(len(starts) for starts in self.pool.values())


class VmapNodes:
    """``vmap_nodes[nr_vmap_nodes]``; their locks are one lock class, as in /proc/lock_stat
    (one ``spin_lock_init`` site), so they share one :class:`LockStat`."""

    def __init__(self, env: simpy.Environment, machine: Machine, handoff: Handoff) -> None:
        ncpus = machine.ncpus
        stat, pool_stat, lazy_stat = LockStat(), LockStat(), LockStat()
        self.nodes = []
        for i in range(nr_vmap_nodes(ncpus)):
            lock = SpinLock(env, "vmap_node.busy.lock", handoff)
            lock.stat = stat
            pool_lock = SpinLock(env, "vmap_node.pool_lock", handoff)
            pool_lock.stat = pool_stat
            lazy_lock = SpinLock(env, "vmap_node.lazy.lock", handoff)
            lazy_lock.stat = lazy_stat
            self.nodes.append(VmapNode(i, lock, pool_lock, lazy_lock, SharedLines(machine)))

    def addr_to_node(self, addr: int) -> VmapNode:
        """``addr_to_node(addr)``: ``&vmap_nodes[addr_to_node_id(addr)]`` (addr in pages)."""
        return self.nodes[(addr // VMAP_ZONE_PAGES) % len(self.nodes)]

    def cpu_to_node(self, cpu_id: int) -> VmapNode:
        """The node whose pools CPU ``cpu_id`` allocates from (and its frees return to):
        ``raw_smp_processor_id() % nr_vmap_nodes``."""
        return self.nodes[cpu_id % len(self.nodes)]

    def pooled(self) -> int:
        """Ranges in all nodes' pools: reserved in the allocator's space, yet not in use."""
        return sum(node.pooled() for node in self.nodes)

    @property
    def stat(self) -> LockStat:
        return self.nodes[0].lock.stat

    def locks(self, per_node_lazy: bool = False) -> list[SpinLock]:
        """Every node's locks (the lazy-tree locks only when the lazy trees are per node)."""
        locks = [node.lock for node in self.nodes] + [node.pool_lock for node in self.nodes]
        return locks + [node.lazy_lock for node in self.nodes] if per_node_lazy else locks
