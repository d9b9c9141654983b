"""What serialises purges: the ``purge_lock`` mechanism.

``spin`` (Linux <= 4.9): ``static DEFINE_SPINLOCK(purge_lock)`` in ``__purge_vmap_area_lazy``;
the lazy path gives up with ``spin_trylock``, sync callers spin.

``mutex`` (Linux 4.10, f9e09977671b "mm: turn vmap_purge_lock into a mutex"): the same
protocol with ``mutex_trylock``/``mutex_lock``; a waiter sleeps and pays a wake-up.

``none`` (Roman Pen's 2016 suggestion): no lock; every caller purges whatever it finds.

``refcount`` (Joel Fernandes, "Replace purge_lock spinlock with atomic refcount", Oct 2016):
an atomic count of running purges; the lazy path gives up when it is non-zero
(``atomic_cmpxchg(&purging, 0, 1)``), sync callers increment it and go ahead without waiting.
"""

from __future__ import annotations

from collections.abc import Generator

import simpy

from sim.engine.cpu import Cpu
from sim.engine.locks import Handoff, SpinLock
from sim.engine.machine import Machine


class PurgeLock:
    """Template: enter on the lazy path (may give up), enter on the sync path, exit.

    Entering leaves the CPU's clock at the moment it got in; the caller then charges
    ``acquire_ns``, the cost of the entry itself.
    """

    lock: SpinLock | None = None
    acquire_ns = 0.0

    def try_enter(self, cpu: Cpu) -> Generator[simpy.Event, None, bool]:
        raise NotImplementedError

    def enter(self, cpu: Cpu) -> Generator[simpy.Event, None, None]:
        raise NotImplementedError

    def exit(self, cpu: Cpu) -> Generator[simpy.Event, None, None]:
        raise NotImplementedError


class SpinPurgeLock(PurgeLock):
    """A spinlock: trylock lazily, lock when sync. The :class:`~sim.engine.cpu.Cpu` methods
    it takes and releases the lock with are named by ``trylock``, ``lock`` and ``unlock``."""

    trylock, lock_, unlock = "spin_trylock", "spin_lock", "spin_unlock"

    def __init__(self, env: simpy.Environment, name: str, handoff: Handoff,
                 acquire_ns: float) -> None:
        self.lock = SpinLock(env, name, handoff)
        self.acquire_ns = acquire_ns

    def try_enter(self, cpu: Cpu) -> Generator[simpy.Event, None, bool]:
        got = yield from getattr(cpu, self.trylock)(self.lock)
        return got

    def enter(self, cpu: Cpu) -> Generator[simpy.Event, None, None]:
        yield from getattr(cpu, self.lock_)(self.lock)

    def exit(self, cpu: Cpu) -> Generator[simpy.Event, None, None]:
        cpu.charge(self.acquire_ns)
        yield from getattr(cpu, self.unlock)(self.lock)


class MutexPurgeLock(SpinPurgeLock):
    """A mutex (a lock whose handoff is a wake-up): its holder and waiters are preemptible."""

    trylock, lock_, unlock = "mutex_trylock", "mutex_lock", "mutex_unlock"


class NoPurgeLock(PurgeLock):
    """No serialisation at all."""

    def try_enter(self, cpu: Cpu) -> Generator[simpy.Event, None, bool]:
        yield from ()
        return True

    def enter(self, cpu: Cpu) -> Generator[simpy.Event, None, None]:
        yield from ()

    def exit(self, cpu: Cpu) -> Generator[simpy.Event, None, None]:
        yield from ()


class RefcountPurgeLock(PurgeLock):
    """``atomic_t purging``: lazy callers give up while it is non-zero; sync callers do not
    wait for anything."""

    def __init__(self, atomic_ns: float) -> None:
        self.purging = 0
        self.acquire_ns = atomic_ns

    def try_enter(self, cpu: Cpu) -> Generator[simpy.Event, None, bool]:
        yield from cpu.settle()
        if self.purging:  # atomic_cmpxchg(&purging, 0, 1) failed
            return False
        self.purging += 1
        return True

    def enter(self, cpu: Cpu) -> Generator[simpy.Event, None, None]:
        yield from cpu.settle()
        self.purging += 1  # atomic_inc(&purging)

    def exit(self, cpu: Cpu) -> Generator[simpy.Event, None, None]:
        cpu.charge(self.acquire_ns)  # atomic_dec(&purging)
        yield from cpu.settle()
        self.purging -= 1


def make_purge_lock(kind: str, env: simpy.Environment, machine: Machine,
                    spin_handoff: Handoff) -> PurgeLock:
    """The ``purge_lock`` mechanism of a variant: ``spin`` (the 2.6.28 spinlock), ``mutex``
    (4.10's ``vmap_purge_lock``), ``refcount`` or ``none`` (proposals from the 2016 review)."""
    c = machine.costs
    if kind == "spin":
        return SpinPurgeLock(env, "purge_lock", spin_handoff, c.lock_acquire_ns)
    if kind == "mutex":
        def wake(previous: Cpu, following: Cpu, cores: int) -> float:
            return c.mutex_wake_ns
        return MutexPurgeLock(env, "vmap_purge_lock", wake, c.lock_acquire_ns)
    if kind == "refcount":
        return RefcountPurgeLock(c.atomic_ns)
    return NoPurgeLock()
