"""The simulated machine: online CPUs, their sockets, and the cost table of a profile.

A sweep's ``cpus`` value overrides the profile's CPU count; sockets follow from the profile's
``cpus_per_socket`` (CPU ``i`` sits on socket ``i // cpus_per_socket``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from sim.config.schema import Costs, MachineProfile


@dataclass(frozen=True)
class Machine:
    """A profile instantiated with a CPU count."""

    profile: MachineProfile
    ncpus: int

    @property
    def costs(self) -> Costs:
        return self.profile.costs

    @property
    def sockets(self) -> int:
        return -(-self.ncpus // self.profile.cpus_per_socket)

    def socket_of(self, cpu: int) -> int:
        return cpu // self.profile.cpus_per_socket

    @cached_property
    def cacheline_table(self) -> tuple[int, float, float]:
        """(CPUs per socket, same-socket and cross-socket line transfer), looked up once: a
        lock handoff asks for them on every contended release."""
        c = self.costs
        return (self.profile.cpus_per_socket, c.cacheline_same_socket_ns,
                c.cacheline_cross_socket_ns)

    def cacheline_ns(self, cpu_a: int, cpu_b: int) -> float:
        """One cache-line transfer between two CPUs (same or cross socket)."""
        per_socket, same, cross = self.cacheline_table
        return same if cpu_a // per_socket == cpu_b // per_socket else cross
