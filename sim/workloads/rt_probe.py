"""A cyclictest-like probe: the wake-up latency a real-time task would see on each CPU.

rt-tests' cyclictest runs a SCHED_FIFO thread per CPU that sleeps to an absolute time
(``clock_nanosleep(TIMER_ABSTIME)``) ``interval`` after the last, and records how late it
woke. Here each probe thread is a :class:`~sim.mm.workqueue.Kworker` of its CPU, so it gets
the CPU by the very rules a kworker does (the machine's ``preemption`` model: wherever
``preempt_count`` falls to zero under ``full``, only at ``cond_resched()`` points, blocking
and returns to user space under ``none``). One wake-up: the timer interrupt's handler runs on
the CPU (``ipi_handler_ns``, an interrupt's entry, handler and exit); the scheduler's wake-up
and switch take ``mutex_wake_ns`` (the same ``try_to_wake_up`` and context switch a mutex
waiter's wake-up costs); then the thread waits for the CPU. Its latency, from the timer's
expiry to the thread running, goes to the ``rt_latency`` histogram; its ``work`` is then
stolen from the CPU's task, and it sleeps to the next expiry (an expiry it overran is skipped,
as cyclictest does).
"""

from __future__ import annotations

from collections.abc import Generator

import simpy

from sim.config.schema import RtProbe
from sim.engine.cpu import Cpu
from sim.engine.metrics import Metrics
from sim.mm.vmalloc import VmallocModel
from sim.mm.workqueue import Kworker
from sim.workloads.common import Control


def probe_cpus(probe: RtProbe, ncpus: int) -> list[int]:
    """The CPUs the probe runs on (``all``, or the listed ones the run has)."""
    return list(range(ncpus)) if probe.cpus == "all" else sorted(
        {c for c in probe.cpus if c < ncpus})


def rt_probe(env: simpy.Environment, cpu: Cpu, vm: VmallocModel, probe: RtProbe,
             metrics: Metrics, control: Control) -> Generator[simpy.Event, None, None]:
    """The probe thread of ``cpu``: wakes every ``probe.interval`` until the run drains."""
    thread = Kworker(env, cpu.id, cpu.socket, vm.flusher.irq)
    costs = vm.machine.costs
    expiry = probe.interval * (1 + cpu.id / max(1, vm.machine.ncpus))  # CPUs staggered
    while not control.stop:
        if expiry > env.now:
            yield env.timeout(expiry - env.now)
        vm.flusher.irq.deliver_one(cpu.id, env.now, costs.ipi_handler_ns)  # hrtimer irq
        yield env.timeout(costs.ipi_handler_ns + costs.mutex_wake_ns)
        yield from thread.switch_in()
        metrics.rt_latency.record(env.now - expiry)
        thread.charge(probe.work)
        yield from thread.settle()
        thread.switch_out()
        expiry += probe.interval
        while expiry < env.now:  # a period overrun: the next expiry still ahead
            expiry += probe.interval
