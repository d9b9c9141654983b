"""Interrupt bookkeeping stays bounded: a CPU that spins on a lock while thousands of IPIs
land on it does not keep them all queued, and the time it ends up paying is the same as if
it had consumed them one by one at the end of its wait."""

from __future__ import annotations

import numpy as np
import simpy

from sim.engine.cpu import Cpu, IrqState
from sim.engine.locks import SpinLock

IPIS = 5_000
GAP = 100.0
HANDLER = 40.0
REFILL = 7.25


def spin_behind_a_long_hold(fold: bool) -> tuple[float, float, int]:
    """CPU 0 holds a lock for ``IPIS * GAP`` ns; CPU 1 spins for it while an IPI with work
    left behind lands on it every ``GAP`` ns. Returns CPU 1's grant and release times and
    the longest its handler queue got."""
    env = simpy.Environment()
    irq = IrqState(2)
    cpus = [Cpu(env, i, 0, irq) for i in range(2)]
    if not fold:
        irq.fold_every = 10 * IPIS
    lock = SpinLock(env, "l")
    t: dict[str, float] = {}
    longest = [0]

    def holder():
        yield from cpus[0].spin_lock(lock)
        cpus[0].charge(IPIS * GAP)
        yield from cpus[0].spin_unlock(lock)

    def waiter():
        cpus[1].charge(1.0)
        yield from cpus[1].spin_lock(lock)
        t["grant"] = env.now
        cpus[1].charge(500.0)
        yield from cpus[1].spin_unlock(lock)
        t["release"] = env.now

    def sender():
        for _ in range(IPIS):
            yield env.timeout(GAP)
            irq.deliver(np.array([1]), np.array([env.now]), HANDLER, REFILL)
            longest[0] = max(longest[0], len(irq.handlers[1]))

    for proc in (holder(), waiter(), sender()):
        env.process(proc)
    env.run()
    return t["grant"], t["release"], longest[0]


def test_a_waiting_cpu_folds_its_ended_handlers() -> None:
    grant, release, longest = spin_behind_a_long_hold(fold=True)
    assert longest <= 2 * 16 * 2  # fold_every = 16 per CPU of the machine
    assert (grant, release) == spin_behind_a_long_hold(fold=False)[:2]


def test_without_folding_the_queue_would_hold_every_handler() -> None:
    """The control: the same run with folding off keeps one entry per IPI of the wait."""
    assert spin_behind_a_long_hold(fold=False)[2] >= IPIS - 1
