"""The peer: ``test_vmalloc-fix_size`` as a user would write it in plain SimPy.

One SimPy process per CPU; ``vmap_area_lock`` and ``purge_lock`` are ``simpy.Resource(capacity=1)``
(FIFO); every costed step is a ``timeout``. The costs are those of the machine profile, the
steps those of vmapsim's ``vmalloc``/``vfree`` on ``linux-4.7`` (first fit from the cached
node, llist lazy free, a purge past ``lazy_max_pages()`` that flushes with a broadcast IPI and
frees under ``vmap_area_lock``). What it leaves out, as a first model would: IPIs stealing
time from their targets, cache-line handoff costs, the safety checks, lock statistics and
latency histograms. It is the reference for "how much faster than the obvious model", not a
second implementation of vmapsim: its simulated throughput is reported for comparison only.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass

import simpy

from sim.config.schema import Costs
from sim.mm.vmalloc import lazy_max_pages_formula


@dataclass
class PeerState:
    """What the CPUs share besides the locks."""

    ops: int = 0
    busy: int = 0
    lazy_pages: int = 0
    lazy_areas: int = 0


class PeerModel:
    """``ncpus`` processes looping ``vmalloc(1 page); vfree()`` on shared ``Resource`` locks."""

    def __init__(self, env: simpy.Environment, costs: Costs, ncpus: int, background: int,
                 limit: int) -> None:
        self.env = env
        self.limit = limit
        self.done = env.event()
        """Succeeds at the ``limit``-th operation."""
        self.c = costs
        self.ncpus = ncpus
        self.vmap_area_lock = simpy.Resource(env, capacity=1)
        self.purge_lock = simpy.Resource(env, capacity=1)
        self.state = PeerState(busy=background)
        self.lazy_max = lazy_max_pages_formula(ncpus)
        self.flush_ns = (costs.ipi_delivery_ns + (ncpus - 2) * costs.ipi_send_same_socket_ns
                         + costs.ipi_handler_ns + costs.flush_full_ns) if ncpus > 1 \
            else costs.flush_full_ns

    def start(self) -> None:
        for _ in range(self.ncpus):
            self.env.process(self.cpu())

    def rbtree(self) -> float:
        return math.log2(self.state.busy + 2) * self.c.rbtree_level_ns

    def cpu(self) -> Generator[simpy.Event, None, None]:
        c, env, st = self.c, self.env, self.state
        while True:
            # vmalloc: kmallocs, then alloc_vmap_area under vmap_area_lock, then map the page
            yield env.timeout(2 * c.kmalloc_ns + c.vmalloc_fixed_ns)
            with self.vmap_area_lock.request() as req:
                yield req
                st.busy += 1
                yield env.timeout(c.lock_acquire_ns + c.list_walk_per_node_ns + self.rbtree())
            yield env.timeout(c.page_alloc_ns + c.map_page_ns)
            self.count_op()
            # vfree: find_vmap_area and remove_vm_area, each under vmap_area_lock
            with self.vmap_area_lock.request() as req:
                yield req
                yield env.timeout(c.lock_acquire_ns + self.rbtree())
            with self.vmap_area_lock.request() as req:
                yield req
                yield env.timeout(c.lock_acquire_ns)
            yield env.timeout(c.unmap_page_ns + 2 * c.atomic_ns)
            st.lazy_pages += 2
            st.lazy_areas += 1
            if st.lazy_pages > self.lazy_max and not self.purge_lock.count:
                yield from self.purge()
            yield env.timeout(c.page_free_ns + 2 * c.kmalloc_ns)
            self.count_op()

    def count_op(self) -> None:
        self.state.ops += 1
        if self.state.ops == self.limit:
            self.done.succeed()

    def purge(self) -> Generator[simpy.Event, None, None]:
        """``try_purge_vmap_area_lazy``: flush on every CPU, then free the areas."""
        c, env, st = self.c, self.env, self.state
        with self.purge_lock.request() as purge:
            yield purge
            areas, st.lazy_areas, st.lazy_pages = st.lazy_areas, 0, 0
            yield env.timeout(c.lock_acquire_ns + areas * c.list_walk_per_node_ns
                              + self.flush_ns)
            with self.vmap_area_lock.request() as req:
                yield req
                yield env.timeout(c.lock_acquire_ns + areas * (self.rbtree() + c.kmalloc_ns))
                st.busy -= areas
