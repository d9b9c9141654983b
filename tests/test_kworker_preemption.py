"""A kworker takes its CPU only where the CPU's task can be preempted (exact traces).

Linux with ``CONFIG_PREEMPT``: a woken kworker preempts the task at its next
``preempt_enable()`` reaching zero, never inside a spinlock section; until it gives the CPU back
the task does not run.
"""

from __future__ import annotations

from sim.mm.vmap_area import VmapArea
from sim.simulation import Simulation
from tests.test_drain_logic import COSTS, build, vfree
from tests.test_safety import allocate, at

HOLD = 50_000.0
"""How long CPU 0's task holds a spinlock after queueing the drain (ns)."""


def queue_drain(sim: Simulation) -> list[float]:
    """CPU 0 frees three areas over ``lazy_max_pages`` 4: ``drain_vmap_work`` is queued, its
    kworker wakes ``mutex_wake_ns`` later. Returns the list the kworker's start is put in."""
    areas: list[VmapArea] = [allocate(sim) for _ in range(3)]
    for va in areas:
        vfree(sim, 0, va)
    assert sim.vm.drain_vmap_work.pending
    started: list[float] = []
    purge = sim.vm.drain_vmap_work.func

    def traced(kworker):
        started.append(sim.env.now)
        yield from purge(kworker)
    sim.vm.drain_vmap_work.func = traced
    return started


def hold_then_work(sim: Simulation, times: dict[str, float]):
    """CPU 0's task: take ``cpa_lock``, hold it ``HOLD`` ns, release it, then 1 us of work."""
    cpu, lock = sim.cpus[0], sim.vm.cpa_lock

    def task():
        yield from cpu.spin_lock(lock)
        times["locked"] = sim.env.now
        cpu.charge(HOLD)
        yield from cpu.spin_unlock(lock)
        times["unlocked"] = sim.env.now
        cpu.charge(1000.0)
        yield from cpu.settle()
        times["done"] = sim.env.now
    return at(sim, sim.env.now, task)


def test_kworker_waits_for_the_end_of_a_spinlock_section() -> None:
    """The kworker is woken 4 us after the queueing, while the task holds ``cpa_lock``: it
    starts only at the unlock, the hold is exactly the charged 50 us (nothing stolen inside
    it), and the task's next step runs after the kworker has given the CPU back."""
    sim = build("linux-5.18", lazy_max_pages=4)
    started = queue_drain(sim)
    woken = sim.env.now + COSTS["mutex_wake_ns"]
    times: dict[str, float] = {}
    sim.env.run(until=hold_then_work(sim, times))
    assert times["locked"] < woken < times["unlocked"]
    assert started == [times["unlocked"]]
    assert sim.vm.cpa_lock.stat.hold_max == HOLD
    assert sim.vm.drain_vmap_work.idle()
    assert sim.metrics.purge.n == 1
    assert times["done"] >= started[0] + sim.metrics.purge.total + 1000.0


def test_kworker_preempts_a_preemptible_task_at_once() -> None:
    """A task in plain computation (no lock) is preempted when the kworker wakes: the kworker
    starts then, long before the task's 50 us step would end, and what it computes is taken
    from that step."""
    sim = build("linux-5.18", lazy_max_pages=4)
    started = queue_drain(sim)
    cpu = sim.cpus[0]
    began = sim.env.now
    ended: list[float] = []

    def task():
        cpu.charge(HOLD)
        yield from cpu.settle()
        ended.append(sim.env.now)
    sim.env.run(until=at(sim, began, task))
    assert began + COSTS["mutex_wake_ns"] <= started[0] < began + COSTS["mutex_wake_ns"] + 1000
    assert sim.metrics.purge.n == 1
    stolen = ended[0] - began - HOLD
    assert 0.0 < stolen <= sim.metrics.purge.total + 1000


def test_mutex_holder_is_preemptible() -> None:
    """``vmap_purge_lock`` is a mutex: a task that holds it (outside any spinlock) is no
    obstacle to a kworker of its CPU."""
    sim = build("linux-5.18", lazy_max_pages=4)
    cpu = sim.cpus[0]
    lock = sim.vm.purge_lock

    def hold():
        yield from lock.enter(cpu)
        assert cpu.preempt_count == 0
        cpu.charge(1000.0)
        yield from lock.exit(cpu)
    sim.env.run(until=at(sim, sim.env.now, hold))
    assert cpu.preempt_count == 0
