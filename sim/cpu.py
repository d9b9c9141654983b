"""Simulated CPUs: costed execution, time stolen by interrupt handlers, and lock waits.

A CPU accumulates the cost of consecutive steps that touch no shared state (``charge``) and
turns them into one SimPy timeout when it next needs the clock to be right (``settle``), for
instance before taking a lock. Interrupt handlers (TLB-flush IPIs) run on a CPU from the moment
they arrive, whatever it is doing: they pause the current step, so a lock holder that takes an
IPI holds the lock longer. Handlers on one CPU run one after another. While a CPU spins on a lock
or waits for IPI acknowledgements, handler time overlaps the wait; only a handler still running
when the wait ends delays the CPU, and work a handler leaves behind (a TLB refill) is always paid.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator
from typing import TYPE_CHECKING

import numpy as np
import simpy

from .locks import SpinLock

if TYPE_CHECKING:
    from .trace import Tracer


class IrqState:
    """Per-CPU interrupt handlers: when each CPU's queued handlers finish, and what they run."""

    def __init__(self, ncpus: int) -> None:
        self.busy_until = np.zeros(ncpus)
        """Time at which the handlers queued on each CPU finish (vectorised fan-out)."""
        self.handlers: list[deque[tuple[float, float, float]]] = [deque() for _ in range(ncpus)]
        """Per CPU, in time order: (start, end, work left behind) of each handler."""
        self.tracer: Tracer | None = None
        """Records every handler on its target; None: off."""

    def deliver(self, targets: np.ndarray, arrivals: np.ndarray, handler_ns: float,
                leftover_ns: float = 0.0, name: str = "irq") -> np.ndarray:
        """Run a handler of ``handler_ns`` on each target from its arrival; return ack times.

        Handlers on one CPU run one after another. ``leftover_ns`` is work the handler leaves
        the CPU without delaying the ack (refilling the TLB after a full flush). ``name``
        names the handler in a trace.
        """
        start = np.maximum(arrivals, self.busy_until[targets])
        done = start + handler_ns
        self.busy_until[targets] = done
        for cpu, s, e in zip(targets.tolist(), start.tolist(), done.tolist()):
            self.handlers[cpu].append((s, e, leftover_ns))
        if self.tracer is not None:
            self.tracer.handlers(name, targets, start, done)
        return done


def finish_time(handlers: deque[tuple[float, float, float]], now: float, work: float) -> float:
    """When ``work`` ns of a CPU's own work started at ``now`` ends, given its handlers.

    Consumes the handlers that run before that end: a handler already running delays the start;
    one arriving meanwhile pauses the work; work a handler leaves behind is added.
    """
    while handlers:
        s, e, leftover = handlers[0]
        if e <= now:  # ran while this CPU waited: only the work it left behind remains
            work += leftover
        elif s >= now + work:  # starts after the work is done
            break
        else:
            work -= max(0.0, s - now)  # work done before the handler started
            now = e
            work += leftover
        handlers.popleft()
    return now + work


class Cpu:
    """One online CPU executing kernel code paths on behalf of a workload."""

    __slots__ = ("env", "id", "socket", "handlers", "pending", "timeout", "preempt_count")

    def __init__(self, env: simpy.Environment, cpu_id: int, socket: int, irq: IrqState) -> None:
        self.env = env
        self.id = cpu_id
        self.socket = socket
        self.handlers = irq.handlers[cpu_id]
        self.pending = 0.0
        self.timeout = env.timeout
        self.preempt_count = 0
        """Non-zero while the CPU holds or spins on a spinlock or waits for IPI acks: an
        interrupt then returns to the same task (no preemption)."""

    def __repr__(self) -> str:
        return f"CPU{self.id}"

    def charge(self, ns: float) -> None:
        """Add the cost of a step that touches no shared state."""
        self.pending += ns

    def settle(self) -> Generator[simpy.Event, None, None]:
        """Advance the clock over the charged work and the handlers that interrupt it.

        Handlers may be queued while the CPU sleeps through its step; on waking it checks for
        any that arrived before the step's end and redoes the work they displaced.
        """
        work, self.pending = self.pending, 0.0
        handlers = self.handlers
        now = self.env.now
        while True:
            end = finish_time(handlers, now, work)
            if end > self.env.now:
                yield self.timeout(end - self.env.now)
            if not handlers or handlers[0][0] >= end:
                return
            now = handlers[0][0]  # a handler arrived during the step: work after it was not done
            work = end - now

    def waited(self) -> None:
        """After a wait (lock spin, ack wait): handlers that ran during it cost nothing but the
        work they left behind; one still running delays the next step."""
        handlers = self.handlers
        now = self.env.now
        while handlers and handlers[0][1] <= now:
            self.pending += handlers.popleft()[2]

    def wait_until(self, t: float) -> Generator[simpy.Event, None, None]:
        """Spin until absolute time ``t`` (handlers overlap the spin)."""
        yield from self.settle()
        if t > self.env.now:
            yield self.timeout(t - self.env.now)
            self.waited()

    def spin_lock(self, lock: SpinLock) -> Generator[simpy.Event, None, None]:
        """``spin_lock(lock)``: settle the clock, then take the lock or spin for it."""
        yield from self.settle()
        self.preempt_count += 1
        event = lock.acquire(self)
        if event is not None:
            yield event
            self.waited()

    def spin_unlock(self, lock: SpinLock) -> Generator[simpy.Event, None, None]:
        """``spin_unlock(lock)`` at the end of the charged critical section."""
        yield from self.settle()
        lock.release(self)
        self.preempt_count -= 1

    def spin_trylock(self, lock: SpinLock) -> Generator[simpy.Event, None, bool]:
        """``spin_trylock(lock)`` at the current time; True if taken."""
        yield from self.settle()
        taken = lock.trylock(self)
        self.preempt_count += taken
        return taken

    def forget_idle_handlers(self) -> None:
        """The CPU was idle: handlers that ran meanwhile leave no work for its next task."""
        handlers = self.handlers
        while handlers and handlers[0][1] <= self.env.now:
            handlers.popleft()
