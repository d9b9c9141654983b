"""``kvfree_rcu()`` batching (kernel/rcu/tree.c, Linux 5.5+) for vmalloc'ed pointers.

Used by lib/test_vmalloc.c's ``kvfree_rcu_*_vmalloc_test`` cases
(sim/workloads/lib_test_vmalloc.py).
"""

from __future__ import annotations

from collections.abc import Generator

import simpy

from sim.config.units import PAGE_SIZE
from sim.engine.cpu import Cpu
from sim.mm.vmalloc import VmallocModel
from sim.mm.vmap_area import VmapArea
from sim.mm.workqueue import Kworker

Gen = Generator[simpy.Event, None, None]

KVFREE_BULK_MAX_ENTR = (PAGE_SIZE - 2 * 8) // 8
"""Pointers per bulk page of kvfree_rcu: ``(PAGE_SIZE - sizeof(struct kvfree_rcu_bulk_data))
/ sizeof(void *)`` = 510 (kernel/rcu/tree.c)."""
KFREE_N_BATCHES = 2
"""Batches of one CPU that may wait for their grace period at once (kernel/rcu/tree.c)."""

class KfreeRcuCpu:
    """One CPU's ``struct kfree_rcu_cpu`` (kernel/rcu/tree.c, kvfree_rcu batching of 5.5+).

    ``kvfree_rcu`` stores the pointer in the CPU's bulk array under the per-CPU ``krcp->lock``
    (a new bulk page every :data:`KVFREE_BULK_MAX_ENTR` pointers) and arms the monitor work to
    run after ``KFREE_DRAIN_JIFFIES`` (``kfree_drain_delay``: HZ/50 = 20 ms from 5.5 to 5.19;
    6.0 raised it to 5 s, draining a full bulk page at once). The monitor moves everything
    pending into one batch, unless :data:`KFREE_N_BATCHES` batches still wait, in which case it
    re-arms; a batch waits one grace period (``rcu_grace_period``), then ``kfree_rcu_work``
    vfree()s each pointer on a kworker of this CPU, whose time is taken from the CPU's task.
    """

    def __init__(self, env: simpy.Environment, vm: VmallocModel, cpu_id: int,
                 grace_period: float, drain_delay: float) -> None:
        self.env = env
        self.vm = vm
        self.pending: list[VmapArea] = []
        self.in_flight = 0
        self.monitor: simpy.Process | None = None
        self.processes: list[simpy.Process] = []
        self.grace_period = grace_period
        """Nanoseconds a batch waits for its RCU grace period."""
        self.drain_delay = drain_delay
        """``KFREE_DRAIN_JIFFIES`` in nanoseconds."""
        self.kworker = Kworker(env, cpu_id, vm.machine.socket_of(cpu_id), vm.flusher.irq)
        self.runner = simpy.Resource(env, 1)
        """One kworker frees this CPU's batches, one batch after another."""
        self.batches = 0

    def kvfree_rcu(self, cpu: Cpu, va: VmapArea) -> None:
        """``kvfree_rcu(ptr)`` / ``kvfree_rcu(ptr, rhf)``: queue the pointer."""
        c = self.vm.costs
        cpu.charge(c.lock_acquire_ns)  # krc_this_cpu_lock() ... krc_this_cpu_unlock()
        if len(self.pending) % KVFREE_BULK_MAX_ENTR == 0:
            cpu.charge(c.page_alloc_ns)  # a new kvfree_rcu_bulk_data page
        self.pending.append(va)
        if self.monitor is None:  # schedule_delayed_work(&krcp->monitor_work, ...)
            self.monitor = self._start(self.kfree_rcu_monitor(self.vm.now(cpu)))

    def _start(self, gen: Gen) -> simpy.Process:
        self.processes = [p for p in self.processes if p.is_alive]
        process = self.env.process(gen)
        self.processes.append(process)
        return process

    def kfree_rcu_monitor(self, armed: float) -> Gen:
        """The monitor work: drain the pending pointers into a batch (or re-arm)."""
        delay = armed - self.env.now + self.drain_delay
        while True:
            yield self.env.timeout(max(0.0, delay))
            if self.in_flight < KFREE_N_BATCHES:
                break
            delay = self.drain_delay
        batch, self.pending = self.pending, []
        self.monitor = None
        self.in_flight += 1
        self._start(self.kfree_rcu_work(batch))

    def kfree_rcu_work(self, batch: list[VmapArea]) -> Gen:
        """``queue_rcu_work``: after a grace period, vfree() the batch on a kworker."""
        yield self.env.timeout(self.grace_period)
        with self.runner.request() as turn:
            yield turn
            yield self.env.timeout(self.vm.costs.mutex_wake_ns)  # the kworker wakes up
            yield from self.kworker.run(self.free_batch(batch))
        self.in_flight -= 1
        self.batches += 1

    def free_batch(self, batch: list[VmapArea]) -> Gen:
        """``kfree_rcu_work``'s loop: vfree() each pointer, free the bulk pages."""
        for va in batch:
            yield from self.vm.vfree(self.kworker, va)
        self.kworker.charge(-(-len(batch) // KVFREE_BULK_MAX_ENTR) * self.vm.costs.page_free_ns)

    def barrier(self) -> Gen:
        """Wait until every pointer queued so far has been freed."""
        while True:
            alive = [p for p in self.processes if p.is_alive]
            if not alive:
                return
            yield self.env.all_of(alive)
