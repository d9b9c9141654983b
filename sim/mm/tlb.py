"""Kernel TLB flushes on x86: ``flush_tlb_kernel_range``, ``flush_tlb_all`` and their IPIs.

Modelled on arch/x86/mm/tlb.c of Linux 4.x. A kernel-range flush of more than
``tlb_single_page_flush_ceiling`` pages (33 since 2014) becomes a full flush
(``do_flush_tlb_all``); otherwise one INVLPG per page (``do_kernel_range_flush``). Either way
``on_each_cpu(func, info, 1)`` sends an IPI to every other online CPU, idle or not, waits for
every acknowledgement, then runs ``func`` locally.

IPIs leave in order, the sender's own socket first; each extra target adds a per-target cost
(same socket or cross socket). A target runs the handler when the IPI arrives, whatever it is
doing (see :mod:`sim.cpu`), and acknowledges when the handler ends. A full flush also drops the
target's global TLB entries; refilling them is charged to the target after the ack.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING

import numpy as np
import simpy

from sim.engine.cpu import Cpu, IrqState
from sim.engine.machine import Machine
from sim.engine.metrics import Metrics
from sim.mm.safety import SafetyChecker

if TYPE_CHECKING:
    from sim.engine.tracer import Tracer


class TlbFlusher:
    """Issues kernel TLB flushes from one CPU to all online CPUs."""

    def __init__(self, machine: Machine, irq: IrqState, metrics: Metrics,
                 safety: SafetyChecker) -> None:
        self.machine = machine
        self.irq = irq
        self.metrics = metrics
        self.safety = safety
        self.ceiling = machine.profile.tlb_single_page_flush_ceiling
        self._fanout: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.tracer: Tracer | None = None
        """Records each flush on its sender; None: off."""

    def fanout(self, sender: int) -> tuple[np.ndarray, np.ndarray]:
        """Targets of an IPI broadcast from ``sender`` and each one's arrival offset (ns)."""
        cached = self._fanout.get(sender)
        if cached is not None:
            return cached
        m = self.machine
        c = m.costs
        others = [cpu for cpu in range(m.ncpus) if cpu != sender]
        home = m.socket_of(sender)
        others.sort(key=lambda cpu: (m.socket_of(cpu) != home, cpu))
        targets = np.array(others, dtype=np.int64)
        per_target = np.array([c.ipi_send_same_socket_ns if m.socket_of(cpu) == home
                               else c.ipi_send_cross_socket_ns for cpu in others])
        offsets = c.ipi_delivery_ns + np.concatenate(([0.0], np.cumsum(per_target)[:-1]))
        self._fanout[sender] = (targets, offsets[: len(others)])
        return self._fanout[sender]

    def is_full_flush(self, start: int, end: int) -> bool:
        """The kernel's test ``end - start > ceiling`` (an empty range is a no-op range flush:
        in unsigned arithmetic 0 - ULONG_MAX is one byte)."""
        return end - start > self.ceiling

    def flush_tlb_kernel_range(self, cpu: Cpu, start: int, end: int
                               ) -> Generator[simpy.Event, None, None]:
        """``flush_tlb_kernel_range(start, end)``: pages [start, end), on every online CPU."""
        c = self.machine.costs
        if self.is_full_flush(start, end):
            yield from self.flush_tlb_all(cpu)
            return
        self.metrics.tlb_flush_range += 1
        yield from self.on_each_cpu(cpu, max(0, end - start) * c.invlpg_ns, 0.0, (start, end))

    def flush_tlb_all(self, cpu: Cpu) -> Generator[simpy.Event, None, None]:
        """``flush_tlb_all()``: a full flush, global entries included, on every online CPU."""
        c = self.machine.costs
        self.metrics.tlb_flush_full += 1
        yield from self.on_each_cpu(cpu, c.flush_full_ns, c.tlb_refill_ns, None)

    def on_each_cpu(self, cpu: Cpu, flush_ns: float, refill_ns: float,
                    pages: tuple[int, int] | None) -> Generator[simpy.Event, None, None]:
        """``on_each_cpu(func, info, wait=1)`` where func flushes ``pages`` (None: all) at a
        cost of ``flush_ns`` on each CPU; tells the safety checker when it has completed."""
        yield from cpu.settle()
        cpu.preempt_disable()  # on_each_cpu: get_cpu()
        initiated = cpu.env.now
        targets, offsets = self.fanout(cpu.id)
        if len(targets):
            handler = self.machine.costs.ipi_handler_ns + flush_ns
            acks = self.irq.deliver(targets, initiated + offsets, handler, refill_ns,
                                    "do_flush_tlb_all" if pages is None
                                    else "do_kernel_range_flush")
            self.metrics.ipis += len(targets)
            yield from cpu.wait_until(float(acks.max()))
        cpu.charge(flush_ns)
        yield from cpu.settle()
        cpu.preempt_enable()  # put_cpu()
        start, end = pages if pages is not None else (0, 0)
        self.safety.flushed(initiated, start, end, pages is None, cpu.env.now, cpu.id)
        if self.tracer is not None:
            self.tracer.flush(cpu.id, initiated, cpu.env.now, pages, len(targets))
            if len(targets):
                self.tracer.ipis(cpu.id, initiated, targets, acks - handler)
        cpu.charge(refill_ns)
