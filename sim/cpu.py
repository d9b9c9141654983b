"""Simulated CPUs: costed execution, time stolen by interrupt handlers, and lock waits.

A CPU accumulates the cost of consecutive steps that touch no shared state (``charge``) and
turns them into one SimPy timeout when it next needs the clock to be right (``settle``), for
instance before taking a lock. Interrupt handlers (TLB-flush IPIs) run on a CPU whatever it is
doing: their time is *stolen* from the current step, so a lock holder that takes an IPI holds
the lock longer. Handlers on one CPU run one after another. While a CPU spins on a lock or waits
for IPI acknowledgements, handler time overlaps the wait and only the part still running when the
wait ends delays the CPU.
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np
import simpy

from .locks import SpinLock


class IrqState:
    """Per-CPU interrupt bookkeeping, as arrays so that an IPI fan-out is vectorised."""

    def __init__(self, ncpus: int) -> None:
        self.busy_until = np.zeros(ncpus)
        """Time at which the handlers queued on each CPU finish."""
        self.stolen = np.zeros(ncpus)
        """Handler time each CPU has not yet absorbed into its current step."""

    def deliver(self, targets: np.ndarray, arrivals: np.ndarray, handler_ns: float,
                extra_stolen_ns: float = 0.0) -> np.ndarray:
        """Run a handler of ``handler_ns`` on each target from its arrival; return ack times.

        ``extra_stolen_ns`` is work the handler leaves behind without delaying the ack (TLB
        refill after a full flush).
        """
        start = np.maximum(arrivals, self.busy_until[targets])
        done = start + handler_ns
        self.busy_until[targets] = done
        self.stolen[targets] += handler_ns + extra_stolen_ns
        return done

    def reset(self) -> None:
        self.busy_until[:] = 0.0
        self.stolen[:] = 0.0


class Cpu:
    """One online CPU executing kernel code paths on behalf of a workload."""

    __slots__ = ("env", "id", "socket", "irq", "pending", "timeout")

    def __init__(self, env: simpy.Environment, cpu_id: int, socket: int, irq: IrqState) -> None:
        self.env = env
        self.id = cpu_id
        self.socket = socket
        self.irq = irq
        self.pending = 0.0
        self.timeout = env.timeout

    def __repr__(self) -> str:
        return f"CPU{self.id}"

    def charge(self, ns: float) -> None:
        """Add the cost of a step that touches no shared state."""
        self.pending += ns

    def settle(self) -> Generator[simpy.Event, None, None]:
        """Advance the clock over the charged steps and any handler time stolen meanwhile."""
        stolen = self.irq.stolen
        i = self.id
        ns = self.pending + float(stolen[i])
        self.pending = 0.0
        stolen[i] = 0.0
        while ns > 0.0:
            yield self.timeout(ns)
            ns = float(stolen[i])
            stolen[i] = 0.0

    def waited(self) -> None:
        """After a wait (lock spin, ack wait): keep only handler time still running now."""
        i = self.id
        self.irq.stolen[i] = max(0.0, float(self.irq.busy_until[i]) - self.env.now)

    def wait_until(self, t: float) -> Generator[simpy.Event, None, None]:
        """Spin until absolute time ``t`` (handlers overlap the spin)."""
        yield from self.settle()
        if t > self.env.now:
            yield self.timeout(t - self.env.now)
            self.waited()

    def spin_lock(self, lock: SpinLock) -> Generator[simpy.Event, None, None]:
        """``spin_lock(lock)``: settle the clock, then take the lock or spin for it."""
        yield from self.settle()
        event = lock.acquire(self)
        if event is not None:
            yield event
            self.waited()

    def spin_unlock(self, lock: SpinLock) -> Generator[simpy.Event, None, None]:
        """``spin_unlock(lock)`` at the end of the charged critical section."""
        yield from self.settle()
        lock.release(self)

    def spin_trylock(self, lock: SpinLock) -> Generator[simpy.Event, None, bool]:
        """``spin_trylock(lock)`` at the current time; True if taken."""
        yield from self.settle()
        return lock.trylock(self)
