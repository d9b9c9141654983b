"""Kernel spinlocks: FIFO handoff with the cost of the lock kind, ``spin_trylock``, lock_stat.

Modelled on x86 spinlocks as of Linux 4.2+ (queued spinlocks, kernel/locking/qspinlock.c) and
on the ticket locks they replaced. Both hand the lock to waiters in arrival order. What differs
is the handoff: a qspinlock waiter spins on its own MCS node, so a release costs one cache-line
transfer to the successor whatever the queue length; with a ticket lock every waiter re-reads
the lock word on each release, so the handoff grows with the number of cores holding or waiting
(Boyd-Wickizer et al., "Non-scalable locks are dangerous", 2012: service time s + c*k/2).

An uncontended acquire schedules no event: the caller continues at once. A contended acquire
returns an event that fires when the lock is handed over; the releaser schedules it after the
handoff delay.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import simpy
from simpy.events import Event

from sim.engine.fastpath import handover_event, succeed_after

if TYPE_CHECKING:
    from sim.engine.machine import Machine
    from sim.engine.tracer import Tracer

Handoff = Callable[[Any, Any, int], float]
"""handoff(previous_holder, next_holder, cores_holding_or_waiting) -> ns."""



def no_handoff(previous: Any, following: Any, cores: int) -> float:
    """A handoff that costs nothing (for queueing-theory checks)."""
    return 0.0


@dataclass
class LockStat:
    """The counters of /proc/lock_stat for one lock class (times in ns), as lockdep keeps them
    (kernel/locking/lockdep.c, ``struct lock_class_stats``; Linux 2.6.23 onward).

    ``acquisitions`` counts every ``acquire`` when it is called and every successful
    ``trylock`` (the kernel counts its ``holdtime`` events, at release); ``contentions`` the
    acquisitions that waited, when the lock is granted (the kernel's ``waittime`` events): the
    waits under way at a :meth:`SpinLock.reset_stat` are the new window's contentions but
    not its acquisitions. A minimum is ``inf`` until its first event.

    Bounces: a lock instance remembers the CPU that last acquired it (``lock->cpu``, the CPU
    of ``lockdep_init_map`` until then: CPU 0 for the model's locks, static or made at boot,
    the allocating CPU for a ``vb->lock``). ``acq_bounces`` counts the acquisitions by another
    CPU (``__lock_acquired``), which then becomes the last acquirer; ``con_bounces`` the
    contentions by another CPU than the last acquirer at the moment of contending
    (``__lock_contended``), counted when the wait ends with its contention (a wait still going
    at the end of the window is in neither count, so ``con_bounces <= contentions``;
    ``acq_bounces`` is at most ``acquisitions`` and the waits carried over a reset). A
    ``trylock`` calls neither (``spin_trylock`` and ``mutex_trylock`` do not go through
    ``LOCK_CONTENDED``): it counts as an acquisition but no bounce, and leaves the last
    acquirer as it was."""

    acquisitions: int = 0
    contentions: int = 0
    wait_total: float = 0.0
    wait_max: float = 0.0
    hold_total: float = 0.0
    hold_max: float = 0.0
    wait_min: float = math.inf
    hold_min: float = math.inf
    con_bounces: int = 0
    acq_bounces: int = 0


def spinlock_handoff(kind: str, machine: Machine) -> Handoff:
    """Handoff cost of a spinlock kind: qspinlock one line transfer, ticket c*k/2 (the
    transfer by the closest cache level the two CPUs share)."""
    table = machine.transfer
    if kind == "qspinlock":  # "ticket", "rwlock": every waiter re-reads the lock word
        def handoff(previous: Any, following: Any, cores: int) -> float:
            return table[previous.id][following.id]
    else:
        def handoff(previous: Any, following: Any, cores: int) -> float:
            return table[previous.id][following.id] * cores / 2.0
    return handoff


class SpinLock:
    """A FIFO spinlock. ``who`` is the holder: a simulated CPU, or anything with the ``id`` of
    the CPU it runs on (a kworker has its CPU's)."""

    __slots__ = ("env", "name", "handoff", "holder", "granted_at", "waiters", "stat", "tracer",
                 "last_cpu")

    def __init__(self, env: simpy.Environment, name: str, handoff: Handoff = no_handoff,
                 init_cpu: int = 0) -> None:
        """``init_cpu``: the CPU that initialised the lock (lockdep's first ``lock->cpu``)."""
        self.env = env
        self.name = name
        self.handoff = handoff
        self.holder: Any = None
        self.granted_at = 0.0
        self.waiters: deque[tuple[Any, Event, float, int]] = deque()
        """(who, its handover event, when it arrived, the last acquirer's CPU then)."""
        self.stat = LockStat()
        self.tracer: Tracer | None = None
        """Records holds and contended waits (the holders are then CPUs); None: off."""
        self.last_cpu = init_cpu
        """``lock->cpu``: the CPU of the last acquisition (not trylock), for the bounces."""

    def acquire(self, who: Any) -> Event | None:
        """``spin_lock()``: ``None`` if taken at once, else an event fired on handover."""
        stat = self.stat
        stat.acquisitions += 1
        if self.holder is None:
            self.holder = who
            self.granted_at = self.env.now
            if who.id != self.last_cpu:  # __lock_acquired: lock->cpu != cpu
                stat.acq_bounces += 1
                self.last_cpu = who.id
            return None
        env = self.env
        event = handover_event(env)
        self.waiters.append((who, event, env.now, self.last_cpu))
        return event

    def trylock(self, who: Any) -> bool:
        """``spin_trylock()``: take the lock only if nobody holds or is being handed it."""
        if self.holder is not None:
            return False
        self.stat.acquisitions += 1
        self.holder = who
        self.granted_at = self.env.now
        return True

    def release(self, who: Any) -> None:
        """``spin_unlock()``: hand the lock to the longest waiter after the handoff delay."""
        if self.holder is not who:
            raise RuntimeError(f"{self.name}: released by {who!r}, held by {self.holder!r}")
        env = self.env
        now = env.now
        stat = self.stat
        held = now - self.granted_at
        stat.hold_total += held
        if held > stat.hold_max:
            stat.hold_max = held
        if held < stat.hold_min:
            stat.hold_min = held
        tracer = self.tracer
        if tracer is not None:
            tracer.lock_hold(who.id, self.name, self.granted_at, now)
        if not self.waiters:
            self.holder = None
            return
        following, event, arrived, last_cpu = self.waiters.popleft()
        delay = self.handoff(who, following, len(self.waiters) + 2)
        self.holder = following
        granted = self.granted_at = now + delay
        waited = granted - arrived
        stat.contentions += 1
        stat.wait_total += waited
        if waited > stat.wait_max:
            stat.wait_max = waited
        if waited < stat.wait_min:
            stat.wait_min = waited
        cpu = following.id
        if cpu != last_cpu:  # __lock_contended, when it began waiting
            stat.con_bounces += 1
        if cpu != self.last_cpu:  # __lock_acquired, now
            stat.acq_bounces += 1
            self.last_cpu = cpu
        if tracer is not None:
            tracer.lock_wait(following.id, self.name, arrived, self.granted_at)
            tracer.flow(f"handover {self.name}", who.id, now, following.id, granted)
        succeed_after(env, event, delay)

    def reset_stat(self) -> None:
        """Start a fresh lock_stat window (end of warm-up), in place: locks of one lock class
        share their LockStat."""
        vars(self.stat).update(vars(LockStat()))
