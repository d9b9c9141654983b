"""Exact traces of the mechanisms not pinned by another test: the mutex purge lock's wake-up,
the free loop's lock breaks (``free_lock_break``, 4.10's ``cond_resched_lock``) and 6.3's
``find_unlink_vmap_area`` (``find_unlink``)."""

from __future__ import annotations

import pydantic
import pytest

from sim.config.schema import RunConfig, Variant
from sim.mm.variants import presets
from sim.simulation import Simulation
from tests.test_safety import allocate, at
from tests.test_trace_scenarios import MACHINE_YAML, WORKLOAD_YAML, C, line


def build(variant: dict, cpus: int = 2) -> Simulation:
    work = {**WORKLOAD_YAML, "background": {"count": 0}}
    config = RunConfig.model_validate({"machine": MACHINE_YAML, "workload": work,
                                       "variant": variant, "cpus": cpus,
                                       "lazy_max_pages": 10_000, "duration": 1e6})
    return Simulation(config, (0,))


# --- purge_lock: mutex ------------------------------------------------------------------------

def purge_lock_wait(name: str) -> tuple[float, int]:
    """CPU 0 holds the purge lock 5 us; CPU 1's vm_unmap_aliases() at 1 us waits for it.
    Returns the wait and the lazy path's trylock failures meanwhile."""
    sim = build(presets()[name])
    vm, (c0, c1) = sim.vm, sim.cpus

    def holder():
        yield from c0.spin_lock(vm.purge_lock.lock)
        c0.charge(5_000.0)
        yield from c0.spin_unlock(vm.purge_lock.lock)

    def caller():
        yield from c1.wait_until(500.0)
        yield from vm.try_purge_vmap_area_lazy(c1)  # the lazy path gives up at once
        yield from c1.wait_until(1_000.0)
        yield from vm.vm_unmap_aliases(c1)

    sim.env.process(holder())
    sim.env.process(caller())
    sim.env.run()
    return vm.purge_lock.lock.stat.wait_total, sim.metrics.purge_trylock_failures


def test_mutex_waiter_is_woken_where_a_spinner_takes_the_line() -> None:
    """4.10's vmap_purge_lock: the same protocol as 4.7's spinlock (trylock on the lazy path,
    sync callers wait), but the waiter sleeps and pays mutex_wake_ns instead of one cache-line
    transfer when the holder lets go."""
    spin_wait, spin_failures = purge_lock_wait("linux-4.7")
    mutex_wait, mutex_failures = purge_lock_wait("linux-4.10")
    assert spin_failures == mutex_failures == 1
    assert mutex_wait - spin_wait == pytest.approx(C.mutex_wake_ns - line(0, 1))


# --- free_lock_break: cond_resched_lock in the free loop ---------------------------------------

def waiter_during_free_loop(every: int) -> dict[str, float]:
    """CPU 0 lazily frees 8 areas, then purges them; CPU 1 asks for vmap_area_lock the moment
    CPU 0's free loop has it. What CPU 1 finds when it gets the lock."""
    variant = {**presets()["linux-4.10"], "name": f"break-{every}", "free_lock_break": every}
    sim = build(variant)
    vm, (c0, c1) = sim.vm, sim.cpus
    areas = [allocate(sim, cpu=0) for _ in range(8)]
    for va in areas:
        sim.env.run(until=at(sim, sim.env.now, lambda va=va: vm.vfree(c0, va)))
    seen: dict[str, float] = {}

    def waiter():
        while vm.vmap_area_lock.holder is not c0:
            yield sim.env.timeout(1.0)
        yield from c1.spin_lock(vm.vmap_area_lock)
        seen["freed"] = sum(va.freed_at is not None for va in areas)
        seen["lazy_nr"] = vm.vmap_lazy_nr
        yield from c1.spin_unlock(vm.vmap_area_lock)

    sim.env.process(waiter())
    sim.env.run(until=at(sim, sim.env.now, lambda: vm.purge_vmap_area_lazy(c0)))
    sim.env.run()
    seen["holds_by_purger"] = vm.vmap_area_lock.stat.acquisitions - 1 - 8 * 3
    assert vm.vmap_lazy_nr == 0 and all(va.freed_at is not None for va in areas)
    return seen


@pytest.mark.parametrize("every,freed,lazy_nr", [
    (0, 8, 0),        # one hold: the waiter gets in after the loop; pages dropped before
    (1, 1, 7 * 2),    # a break after each area: in after the first; pages drop area by area
    (4, 4, 4 * 2),    # a break every 4 areas
    (8, 8, 0),        # no break is due before the loop ends
])
def test_free_loop_lets_a_waiter_in_every_n_areas(every: int, freed: int, lazy_nr: int) -> None:
    seen = waiter_during_free_loop(every)
    assert (seen["freed"], seen["lazy_nr"]) == (freed, lazy_nr)
    assert seen["holds_by_purger"] == (2 if freed < 8 else 1)


# --- find_unlink: remove_vm_area's one lock hold (6.3) -----------------------------------------

@pytest.mark.parametrize("find_unlink,holds", [(True, 1), (False, 3)])
def test_vfree_takes_the_busy_lock_once_with_find_unlink(find_unlink: bool, holds: int) -> None:
    """6.3's find_unlink_vmap_area: the lookup and the unlink are one hold of the area's
    busy-tree lock; before, vfree took it three times (lookup, flags, unlink at free)."""
    variant = {**presets()["linux-6.9"], "name": f"find_unlink-{find_unlink}",
               "find_unlink": find_unlink}
    sim = build(variant, cpus=1)
    vm, cpu = sim.vm, sim.cpus[0]
    va = allocate(sim)
    before = sim.lock_stats()["vmap_node.busy.lock"]["acquisitions"]
    sim.env.run(until=at(sim, sim.env.now, lambda: vm.vfree(cpu, va)))
    assert sim.lock_stats()["vmap_node.busy.lock"]["acquisitions"] - before == holds
    assert va.va_start not in vm.areas and vm.busy.count == 0
    assert vm.nodes.addr_to_node(va.va_start).busy == 0 and vm.vmap_lazy_nr == va.size


def test_find_unlink_needs_lazy_areas_out_of_the_busy_tree() -> None:
    with pytest.raises(pydantic.ValidationError, match="find_unlink needs"):
        Variant.model_validate({**presets()["linux-4.7"], "name": "x", "find_unlink": True})


def test_only_linux_6_9_uses_find_unlink() -> None:
    assert [name for name, p in presets().items() if p.get("find_unlink")] == ["linux-6.9"]
