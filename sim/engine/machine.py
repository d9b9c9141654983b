"""The simulated machine: online CPUs, where each sits (core, LLC, socket), and its costs.

A sweep's ``cpus`` value overrides the profile's CPU count: the first ``cpus`` CPU ids are
online, numbered as Linux numbers them on x86 (``arch/x86/kernel/smpboot.c`` brings up the
first thread of every core, socket by socket, before any SMT sibling): CPU ``i`` is thread
``i // cores`` of core ``i % cores``. A sweep asking for more CPUs than the profile has gets
more sockets of the same kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from sim.config.schema import Costs, MachineProfile

LINE_BYTES = 64
"""x86_64 and arm64 cache-line size."""


@dataclass(frozen=True)
class Topology:
    """Per online CPU: its core, its last-level cache domain and its socket (global ids)."""

    core: tuple[int, ...]
    llc: tuple[int, ...]
    socket: tuple[int, ...]
    thread: tuple[int, ...]
    """Which SMT thread of its core the CPU is (0: the first)."""
    cores_per_llc: int


class TransferTable(dict):
    """``table[a][b]``: one cache-line transfer from CPU ``a``'s cache to CPU ``b``, by the
    closest level they share (0 for the same CPU). Rows are built on first use."""

    def __init__(self, topology: Topology, costs: Costs) -> None:
        super().__init__()
        self.topology = topology
        same_llc = costs.cacheline_same_llc_ns
        if same_llc is None:
            same_llc = costs.cacheline_same_socket_ns
        same_core = costs.cacheline_same_core_ns
        self.tiers = (same_llc if same_core is None else same_core, same_llc,
                      costs.cacheline_same_socket_ns, costs.cacheline_cross_socket_ns)

    def __missing__(self, a: int) -> list[float]:
        t = self.topology
        same_core, same_llc, same_socket, cross = self.tiers
        row = [0.0 if b == a else same_core if t.core[b] == t.core[a]
               else same_llc if t.llc[b] == t.llc[a]
               else same_socket if t.socket[b] == t.socket[a] else cross
               for b in range(len(t.core))]
        self[a] = row
        return row


@dataclass(frozen=True)
class Machine:
    """A profile instantiated with a CPU count."""

    profile: MachineProfile
    ncpus: int

    @property
    def costs(self) -> Costs:
        return self.profile.costs

    @cached_property
    def topology(self) -> Topology:
        p = self.profile
        threads = p.threads_per_core
        cores_per_socket = p.cpus_per_socket // threads
        cores_per_llc = (p.cpus_per_llc or p.cpus_per_socket) // threads
        sockets = -(-max(p.cpus, self.ncpus) // p.cpus_per_socket)
        cores = sockets * cores_per_socket
        core = tuple(i % cores for i in range(self.ncpus))
        return Topology(core, tuple(c // cores_per_llc for c in core),
                        tuple(c // cores_per_socket for c in core),
                        tuple(i // cores for i in range(self.ncpus)), cores_per_llc)

    def placement(self, kind: str) -> list[int]:
        """The online CPUs in the order unpinned tasks take them.

        ``spread``: what the scheduler does with busy tasks on an idle machine
        (kernel/sched/fair.c: ``select_idle_sibling`` prefers an idle core to an idle SMT
        sibling, and load balancing evens the tasks out between the LLC domains of a socket):
        one task per core, round-robin over the socket's LLC domains, socket by socket, then
        the second threads in the same order. ``compact``: one LLC domain filled, SMT siblings
        together, before the next. ``pinned``: CPU ids in order."""
        t = self.topology
        cpus = range(self.ncpus)
        if kind == "spread":
            return sorted(cpus, key=lambda c: (t.thread[c], t.socket[c],
                                               t.core[c] % t.cores_per_llc, t.llc[c]))
        if kind == "compact":
            return sorted(cpus, key=lambda c: (t.socket[c], t.llc[c], t.core[c], t.thread[c]))
        return list(cpus)

    def socket_of(self, cpu: int) -> int:
        return self.topology.socket[cpu]

    @cached_property
    def transfer(self) -> TransferTable:
        """``transfer[a][b]``: a cache-line transfer from CPU ``a`` to CPU ``b`` (ns)."""
        return TransferTable(self.topology, self.costs)

    @cached_property
    def cache_tiers(self) -> tuple[float, float, float, float, float]:
        """(L2 lines, LLC lines, L2 hit, LLC hit, DRAM) for :meth:`own_line_ns`."""
        p, c = self.profile, self.costs
        l2 = c.rbtree_level_ns if c.l2_ns is None else c.l2_ns
        llc = l2 if c.llc_ns is None else c.llc_ns
        dram = c.list_walk_per_node_ns if c.dram_ns is None else c.dram_ns
        inf = float("inf")
        return (inf if p.l2_kib is None else p.l2_kib * 1024 / LINE_BYTES,
                inf if p.llc_kib is None else p.llc_kib * 1024 / LINE_BYTES, l2, llc, dram)

    def own_line_ns(self, working_set_lines: float) -> float:
        """A load of a line this CPU wrote last, out of a working set of that many lines:
        an L2 hit if the set fits the L2, an LLC hit if it fits the LLC, else memory."""
        l2_lines, llc_lines, l2, llc, dram = self.cache_tiers
        if working_set_lines <= l2_lines:
            return l2
        return llc if working_set_lines <= llc_lines else dram

    @cached_property
    def others_mean_ns(self) -> list[float]:
        """Per CPU, the mean transfer from the other online CPUs to it."""
        n = self.ncpus
        if n == 1:
            return [0.0]
        return [sum(self.transfer[w][cpu] for w in range(n)) / (n - 1) for cpu in range(n)]

    def mean_line_ns(self, cpu: int, working_set_lines: float) -> float:
        """A load of a line of a structure every online CPU writes alike (a busy list filled
        by all of them): its own share from its cache, the rest from the others' caches, or
        all from memory once the set is more than an LLC holds."""
        own = self.own_line_ns(working_set_lines)
        if working_set_lines > self.cache_tiers[1]:
            return own
        n = self.ncpus
        return (own + (n - 1) * self.others_mean_ns[cpu]) / n

    def line_ns(self, writer: int, cpu: int, working_set_lines: float) -> float:
        """A load by ``cpu`` of a line ``writer`` wrote last (-1: nobody), out of a working
        set of that many lines: from its own cache, from the writer's (one transfer) while
        the set fits an LLC, else from memory."""
        if writer == cpu or writer < 0:
            return self.own_line_ns(working_set_lines)
        if working_set_lines > self.cache_tiers[1]:
            return self.cache_tiers[4]
        return self.transfer[writer][cpu]
