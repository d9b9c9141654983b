"""Which CPU's cache holds the lines of a shared kernel structure: the cost of touching them.

Each shared structure a critical section reads or writes (the busy tree's top path and list
neighbours, the augmented free tree's path, a list head, a counter) keeps, as one record, the
CPU that wrote its lines last, how many lines that write dirtied, and which CPUs have read them
since (MESI at the grain of a structure). A step pays, per dirty line, the machine's transfer
from the writer's cache by the closest level the two CPUs share, or nothing when it wrote or
read them last itself: analytic, O(1) per step, no per-line objects. Under contention each
holder finds the previous holder's lines dirty, so a contended section is longer than the
same section run twice by one CPU, as on real machines.
"""

from __future__ import annotations

from sim.engine.machine import Machine


class SharedLines:
    """The lines of one shared structure that a step touches."""

    __slots__ = ("transfer", "writer", "dirty", "readers")

    def __init__(self, machine: Machine) -> None:
        self.transfer = machine.transfer
        self.writer = -1
        """The CPU whose write dirtied the lines last (-1: none since boot)."""
        self.dirty = 0
        """How many lines that write dirtied."""
        self.readers = 0
        """Bit ``c`` set: CPU ``c`` holds the current lines (it wrote or read them since)."""

    def read(self, cpu: int) -> float:
        """A read of the structure by ``cpu``: the dirty lines pulled from the writer's
        cache, or nothing if ``cpu`` already holds them."""
        bit = 1 << cpu
        if self.readers & bit:
            return 0.0
        self.readers |= bit
        writer = self.writer
        return 0.0 if writer < 0 else self.dirty * self.transfer[writer][cpu]

    def write(self, cpu: int, lines: int) -> float:
        """A read-modify-write that dirties ``lines`` lines: what the read pulls; afterwards
        only ``cpu`` holds them."""
        cost = self.read(cpu)
        self.writer = cpu
        self.dirty = lines
        self.readers = 1 << cpu
        return cost
