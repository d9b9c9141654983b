"""Tiny deterministic scenarios with exact simulated times, derived from the profile's costs.

Each test drives a few simulated CPUs by hand (no workload process) and checks the exact
times and orders the model must produce: lock handoffs, ``spin_trylock``, IPI handler time
stolen from a lock holder, the TLB flush ceiling, ``purge_lock`` under a sync purge, and the
lazy free / purge of one area with the 4.5 and 4.7 lazy lists. Expected values are computed
here from the cost table of ``cpus/xeon-2s-112.yaml``, not copied from the simulator.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import simpy
import yaml

from sim.config.schema import Background, MachineProfile, RunConfig
from sim.engine.cpu import Cpu, IrqState
from sim.engine.locks import SpinLock, spinlock_handoff
from sim.engine.machine import Machine
from sim.mm.variants import presets
from sim.mm.vmap_area import VM_LAZY_FREE, VM_LAZY_FREEING, VM_VM_AREA
from sim.simulation import Simulation
from sim.workloads.common import place_background

ROOT = Path(__file__).resolve().parents[1]
MACHINE_YAML = yaml.safe_load((ROOT / "cpus" / "xeon-2s-112.yaml").read_text())
WORKLOAD_YAML = yaml.safe_load((ROOT / "workloads" / "test_vmalloc-fix_size.yaml").read_text())
PROFILE = MachineProfile.model_validate(MACHINE_YAML)
C = PROFILE.costs
CORES = 56
"""2 x 28 cores, SMT: Linux numbers the cores 0-55 (socket 0 first), then their siblings."""


def socket(cpu: int) -> int:
    return cpu % CORES // 28


def line(a: int, b: int) -> float:
    """One cache-line transfer between CPUs ``a`` and ``b`` of the profile (one LLC per
    socket)."""
    if a % CORES == b % CORES:
        return C.cacheline_same_core_ns
    if socket(a) == socket(b):
        return C.cacheline_same_socket_ns
    return C.cacheline_cross_socket_ns


def ipi_offsets(sender: int, ncpus: int) -> dict[int, float]:
    """When each target's IPI arrives after the send: own socket first, in CPU order."""
    others = [c for c in range(ncpus) if c != sender]
    home = socket(sender)
    order = [c for c in others if socket(c) == home]
    order += [c for c in others if socket(c) != home]
    offsets, t = {}, C.ipi_delivery_ns
    for c in order:
        offsets[c] = t
        t += C.ipi_send_same_socket_ns if socket(c) == home else C.ipi_send_cross_socket_ns
    return offsets


FULL_HANDLER = C.ipi_handler_ns + C.flush_full_ns
"""A ``do_flush_tlb_all`` IPI handler on a target (the refill comes after the ack)."""


def make_sim(variant: str = "linux-4.7", cpus: int = 2, background: int = 0) -> Simulation:
    workload = dict(WORKLOAD_YAML)
    workload["background"] = dict(workload["background"], count=background)
    config = RunConfig.model_validate({
        "machine": MACHINE_YAML, "workload": workload, "variant": dict(presets()[variant]),
        "cpus": cpus, "duration": 1e6})
    return Simulation(config, (0,))


def bare_cpus(ncpus: int) -> tuple[simpy.Environment, Machine, list[Cpu]]:
    env = simpy.Environment()
    machine = Machine(PROFILE, ncpus)
    irq = IrqState(ncpus)
    return env, machine, [Cpu(env, i, machine.socket_of(i), irq) for i in range(ncpus)]


def hold(cpu: Cpu, lock, ns: float, t: dict[str, float] | None = None):
    """A process body: take ``lock``, hold it for ``ns`` of charged work, release it, and
    record the release time in ``t["release"]``."""
    yield from cpu.spin_lock(lock)
    cpu.charge(ns)
    yield from cpu.spin_unlock(lock)
    if t is not None:
        t["release"] = cpu.env.now


def near(x: float) -> object:
    """Exact up to float summation order."""
    return pytest.approx(x, rel=1e-12, abs=1e-6)


# --- spinlock handoff -----------------------------------------------------------------------

def test_uncontended_acquire_schedules_nothing() -> None:
    env, machine, cpus = bare_cpus(2)
    lock = SpinLock(env, "l", spinlock_handoff("qspinlock", machine))
    assert lock.acquire(cpus[0]) is None
    assert env.peek() == math.inf  # no event: the caller continues at once
    assert lock.holder is cpus[0]
    lock.release(cpus[0])
    assert lock.holder is None
    with pytest.raises(RuntimeError):
        lock.release(cpus[1])


@pytest.mark.parametrize("kind", ["qspinlock", "ticket"])
def test_handoff_is_fifo_and_costs_the_lock_kind(kind: str) -> None:
    """CPU 0 holds; CPUs 2, 28 (other socket) and 1 arrive in that order and get the lock in
    that order, each at the previous release plus the handoff of the lock kind."""
    env, machine, cpus = bare_cpus(112)
    lock = SpinLock(env, "l", spinlock_handoff(kind, machine))
    arrivals = {0: 0.0, 2: 10.0, 28: 20.0, 1: 30.0}
    holds = {0: 1000.0, 2: 700.0, 28: 300.0, 1: 450.0}
    log: list[tuple[int, float, float]] = []

    def user(cpu: Cpu):
        cpu.charge(arrivals[cpu.id])
        yield from cpu.spin_lock(lock)
        granted = env.now
        cpu.charge(holds[cpu.id])
        yield from cpu.spin_unlock(lock)
        log.append((cpu.id, granted, env.now))

    for i in arrivals:
        env.process(user(cpus[i]))
    env.run()

    order = [0, 2, 28, 1]
    expected_grant = {0: 0.0}
    release = holds[0]
    for k, (prev, nxt) in enumerate(zip(order, order[1:], strict=False)):
        waiting_after = len(order) - 2 - k  # waiters left once the next one is dequeued
        cores = waiting_after + 2  # the releaser, the next holder and those still waiting
        cost = line(prev, nxt) if kind == "qspinlock" else line(prev, nxt) * cores / 2
        expected_grant[nxt] = release + cost
        release = expected_grant[nxt] + holds[nxt]

    assert [who for who, _, _ in log] == order
    for who, granted, released in log:
        assert granted == expected_grant[who], who
        assert released == granted + holds[who], who
    if kind == "qspinlock":  # one line transfer whatever the queue length
        assert expected_grant[2] - holds[0] == C.cacheline_same_socket_ns
        assert expected_grant[28] - expected_grant[2] - holds[2] == C.cacheline_cross_socket_ns
    else:  # ticket: c * k / 2 with k = 4, 3, 2 cores holding or waiting
        assert expected_grant[2] - holds[0] == C.cacheline_same_socket_ns * 4 / 2
        assert (expected_grant[28] - expected_grant[2] - holds[2]
                == C.cacheline_cross_socket_ns * 3 / 2)
        assert (expected_grant[1] - expected_grant[28] - holds[28]
                == C.cacheline_cross_socket_ns * 2 / 2)

    waits = [expected_grant[i] - arrivals[i] for i in order[1:]]
    s = lock.stat
    assert s.acquisitions == 4
    assert s.contentions == 3
    assert s.wait_total == sum(waits)
    assert s.wait_max == max(waits)
    assert s.hold_total == sum(holds.values())
    assert s.hold_max == max(holds.values())
    assert s.wait_min == min(waits)
    assert s.hold_min == min(holds.values())
    # CPUs 2, 28, 1 contend while CPU 0 (the boot CPU, the lock's first lock->cpu) holds it,
    # and each takes it after another CPU: three contention and three acquisition bounces
    assert (s.con_bounces, s.acq_bounces) == (3, 3)
    assert lock.holder is None and not lock.waiters


def test_trylock_fails_while_held_and_during_handover() -> None:
    env, machine, cpus = bare_cpus(3)
    lock = SpinLock(env, "l", spinlock_handoff("qspinlock", machine))
    hold0, hold1 = 1000.0, 200.0
    handover_at = hold0 + line(0, 1)
    tries: list[tuple[float, bool]] = []

    def holder():
        yield from cpus[0].spin_lock(lock)
        cpus[0].charge(hold0)
        yield from cpus[0].spin_unlock(lock)

    def waiter():
        cpus[1].charge(10.0)
        yield from cpus[1].spin_lock(lock)
        cpus[1].charge(hold1)
        yield from cpus[1].spin_unlock(lock)

    def trier():
        cpu = cpus[2]
        for at in (500.0, hold0 + 10.0, handover_at + hold1 + 50.0):
            yield from cpu.wait_until(at)
            if at == hold0 + 10.0:  # between the release and the grant to CPU 1
                assert lock.holder is cpus[1]
                assert lock.granted_at == handover_at > env.now
            got = yield from cpu.spin_trylock(lock)
            tries.append((env.now, got))
        lock.release(cpu)

    for proc in (holder(), waiter(), trier()):
        env.process(proc)
    env.run()
    assert tries == [(500.0, False), (hold0 + 10.0, False), (handover_at + hold1 + 50.0, True)]
    assert lock.stat.acquisitions == 3  # failed trylocks are not acquisitions
    assert lock.stat.contentions == 1
    assert lock.stat.wait_total == handover_at - 10.0


# --- IPIs stealing time from a lock holder --------------------------------------------------

HOLD = 10_000.0
SEND_AT = 2_000.0
WAITER_AT = 1_000.0


@pytest.mark.parametrize("with_ipi", [False, True])
def test_ipi_stretches_the_lock_holder(with_ipi: bool) -> None:
    """CPU 1 holds purge_lock for HOLD ns of charged work; CPU 2 spins for it; CPU 0 sends a
    flush_tlb_all in the middle of the hold. The holder's release moves by the handler plus
    the TLB refill, the waiter's grant with it; the sender finishes at the last ack plus its
    own flush and refill."""
    sim = make_sim(cpus=3)
    env, lock = sim.env, sim.vm.purge_lock.lock
    c0, c1, c2 = sim.cpus
    offsets = ipi_offsets(0, 3)
    assert 0 < SEND_AT + offsets[1] < HOLD  # the IPI lands inside the critical section
    t: dict[str, float] = {}

    def holder():
        yield from hold(c1, lock, HOLD, t)

    def waiter():
        c2.charge(WAITER_AT)
        yield from c2.spin_lock(lock)
        t["grant"] = env.now
        lock.release(c2)

    def sender():
        c0.charge(SEND_AT)
        yield from sim.flusher.flush_tlb_all(c0)
        t["acked"] = env.now
        yield from c0.settle()
        t["done"] = env.now

    env.process(holder())
    env.process(waiter())
    if with_ipi:
        env.process(sender())
    env.run()

    stretch = FULL_HANDLER + C.tlb_refill_ns if with_ipi else 0.0
    assert t["release"] == HOLD + stretch
    assert t["grant"] == HOLD + stretch + line(1, 2)
    assert lock.stat.hold_max == HOLD + stretch
    assert lock.stat.wait_total == t["grant"] - WAITER_AT
    if with_ipi:
        last_ack = max(SEND_AT + off + FULL_HANDLER for off in offsets.values())
        assert t["acked"] == last_ack + C.flush_full_ns  # returns once flushed locally too
        assert t["done"] == last_ack + C.flush_full_ns + C.tlb_refill_ns
        assert sim.metrics.tlb_flush_full == 1
        assert sim.metrics.ipis == 2
        for cpu, off in offsets.items():
            assert sim.irq.busy_until[cpu] == SEND_AT + off + FULL_HANDLER


def test_handlers_on_one_cpu_run_one_after_another() -> None:
    """IrqState.deliver: a handler starts at its IPI's arrival or when the target's previous
    handler ends, whichever is later; each is queued on its target with its leftover work."""
    irq = IrqState(3)
    targets = np.array([1, 2])
    first = irq.deliver(targets, np.array([100.0, 170.0]), FULL_HANDLER, C.tlb_refill_ns)
    np.testing.assert_array_equal(first, [100.0 + FULL_HANDLER, 170.0 + FULL_HANDLER])
    # a second broadcast arriving at CPU 1 while its first handler runs, at CPU 2 after it
    late = 170.0 + FULL_HANDLER + 5.0
    second = irq.deliver(targets, np.array([200.0, late]), C.ipi_handler_ns, 0.0)
    np.testing.assert_array_equal(second, [100.0 + FULL_HANDLER + C.ipi_handler_ns,
                                           late + C.ipi_handler_ns])
    np.testing.assert_array_equal(irq.busy_until, [0.0, *second])
    assert list(irq.handlers[0]) == []
    assert list(irq.handlers[1]) == [(100.0, first[0], C.tlb_refill_ns),
                                     (first[0], second[0], 0.0)]
    assert list(irq.handlers[2]) == [(170.0, first[1], C.tlb_refill_ns),
                                     (late, second[1], 0.0)]


def test_two_flushes_during_one_hold_stretch_it_twice() -> None:
    """CPU 0 issues two flush_tlb_all back to back while CPU 1 holds purge_lock: the second
    starts after the first's acks and local flush, and the holder pays for both."""
    sim = make_sim(cpus=2)
    env, lock = sim.env, sim.vm.purge_lock.lock
    c0, c1 = sim.cpus
    off = ipi_offsets(0, 2)[1]
    t: dict[str, float] = {}

    def holder():
        yield from hold(c1, lock, HOLD, t)

    def sender():
        c0.charge(SEND_AT)
        yield from sim.flusher.flush_tlb_all(c0)
        t["acked1"] = env.now
        yield from sim.flusher.flush_tlb_all(c0)
        t["acked2"] = env.now

    env.process(holder())
    env.process(sender())
    env.run()
    assert t["acked1"] == SEND_AT + off + FULL_HANDLER + C.flush_full_ns  # acks + local flush
    second_send = t["acked1"] + C.tlb_refill_ns
    assert second_send + off < HOLD  # both IPIs land inside the critical section
    assert t["acked2"] == second_send + off + FULL_HANDLER + C.flush_full_ns
    assert t["release"] == HOLD + 2 * (FULL_HANDLER + C.tlb_refill_ns)
    assert (sim.metrics.tlb_flush_full, sim.metrics.ipis) == (2, 2)


@pytest.mark.parametrize("sender_id", [0, 30])
def test_fanout_order_across_sockets(sender_id: int) -> None:
    """On 112 CPUs the sender's own socket's other 55 CPUs come first, then the other 56."""
    sim = make_sim(cpus=112)
    env = sim.env
    offsets = ipi_offsets(sender_id, 112)
    t: dict[str, float] = {}

    def sender():
        yield from sim.flusher.flush_tlb_all(sim.cpus[sender_id])
        t["acked"] = env.now

    env.process(sender())
    env.run()
    expected = np.array([0.0 if c == sender_id else offsets[c] + FULL_HANDLER
                         for c in range(112)])
    np.testing.assert_array_equal(sim.irq.busy_until, expected)
    last = C.ipi_delivery_ns + 55 * C.ipi_send_same_socket_ns + 55 * C.ipi_send_cross_socket_ns
    assert max(offsets.values()) == last
    first_remote, last_remote = (28, 111) if sender_id == 0 else (0, 83)
    assert offsets[last_remote] == last
    assert offsets[first_remote] == C.ipi_delivery_ns + 55 * C.ipi_send_same_socket_ns
    assert t["acked"] == last + FULL_HANDLER + C.flush_full_ns  # last ack, then local flush
    assert sim.metrics.ipis == 111


# --- the flush ceiling ----------------------------------------------------------------------

@pytest.mark.parametrize("case", ["33 pages", "34 pages", "empty"])
def test_flush_ceiling(case: str) -> None:
    sim = make_sim(cpus=3)
    env, c0 = sim.env, sim.cpus[0]
    assert PROFILE.tlb_single_page_flush_ceiling == 33
    start = 1000
    if case == "33 pages":
        end = start + 33
    elif case == "34 pages":
        end = start + 34
    else:  # ULONG_MAX..0: in unsigned arithmetic a one-byte range, flushing no page at all
        start, end = sim.vm.vend, sim.vm.vstart
    t: dict[str, float] = {}

    def sender():
        c0.charge(SEND_AT)
        yield from sim.flusher.flush_tlb_kernel_range(c0, start, end)
        t["acked"] = env.now
        yield from c0.settle()
        t["done"] = env.now

    env.process(sender())
    env.run()

    m = sim.metrics
    if case != "34 pages":
        local, refill = (33 if case == "33 pages" else 0) * C.invlpg_ns, 0.0
        assert (m.tlb_flush_range, m.tlb_flush_full) == (1, 0)
    else:
        local, refill = C.flush_full_ns, C.tlb_refill_ns
        assert (m.tlb_flush_range, m.tlb_flush_full) == (0, 1)
    handler = C.ipi_handler_ns + local
    offsets = ipi_offsets(0, 3)
    assert t["acked"] == SEND_AT + max(offsets.values()) + handler + local
    assert t["done"] == t["acked"] + refill
    assert m.ipis == 2
    for cpu, off in offsets.items():  # idle targets: one handler queued, refill left behind
        assert sim.irq.busy_until[cpu] == SEND_AT + off + handler
        assert list(sim.irq.handlers[cpu]) == [(SEND_AT + off, SEND_AT + off + handler, refill)]


# --- purge_lock: sync callers spin, the lazy path trylocks -----------------------------------

def test_vm_unmap_aliases_waits_for_purge_lock_and_trylock_gives_up() -> None:
    sim = make_sim("linux-4.7", cpus=2)
    env, vm, m = sim.env, sim.vm, sim.metrics
    c0, c1 = sim.cpus
    assert sim.config.workload.vmap_block_dirty  # so vm_unmap_aliases flushes when idle
    hold, try_at, call_at = 5_000.0, 1_000.0, 2_000.0
    t: dict[str, float] = {}

    def holder():
        yield from c0.spin_lock(vm.purge_lock.lock)
        c0.charge(hold)
        yield from c0.spin_unlock(vm.purge_lock.lock)

    def caller():
        yield from c1.wait_until(try_at)
        yield from vm.try_purge_vmap_area_lazy(c1)
        t["try_returned"] = env.now
        t["try_failures"] = m.purge_trylock_failures
        yield from c1.wait_until(call_at)
        yield from vm.vm_unmap_aliases(c1)
        t["returned"] = env.now

    env.process(holder())
    env.process(caller())
    env.run()

    assert t["try_returned"] == try_at  # no spin, no work
    assert t["try_failures"] == 1
    ncpus = sim.machine.ncpus
    arrived = call_at + ncpus * C.vb_queue_check_ns  # vm_unmap_aliases' own vmap_block scan
    granted = hold + line(0, 1)
    # under purge_lock: lock, purge_fragmented_blocks_allcpus, llist_del_all of nothing
    before_flush = C.lock_acquire_ns + ncpus * C.vb_queue_check_ns + C.atomic_ns
    flush = ipi_offsets(1, 2)[0] + FULL_HANDLER + C.flush_full_ns + C.tlb_refill_ns
    purge = before_flush + flush + C.lock_acquire_ns
    assert t["returned"] == granted + purge
    stat = vm.purge_lock.lock.stat
    assert (stat.acquisitions, stat.contentions) == (2, 1)
    assert stat.wait_total == granted - arrived
    assert (m.purge.n, m.purge.total, m.purge_areas) == (1, purge, 0)
    assert (m.tlb_flush_full, m.tlb_flush_range, m.purge_trylock_failures) == (1, 0, 1)
    assert vm.vmap_area_lock.stat.acquisitions == 0  # nothing to free


def test_vm_unmap_aliases_waits_for_a_lazy_purge_in_progress() -> None:
    """CPU 0 purges one lazy area through the trylock path; CPU 1's vm_unmap_aliases spins on
    purge_lock meanwhile (taking CPU 0's flush IPI while it spins), is granted at CPU 0's release
    plus the handoff, finds nothing lazy and still flushes everything."""
    sim = make_sim("linux-4.7", cpus=2)
    env, vm, m = sim.env, sim.vm, sim.metrics
    c0, c1 = sim.cpus
    t0 = 10_000.0
    t: dict[str, float] = {}

    def purger():
        va = yield from vm.vmalloc(c0, 1)
        yield from vm.vfree(c0, va)
        yield from c0.wait_until(t0)
        assert env.now == t0
        yield from vm.try_purge_vmap_area_lazy(c0)
        t["released"] = env.now

    def caller():
        yield env.timeout(t0 - 50.0)
        yield from vm.vm_unmap_aliases(c1)  # reaches purge_lock at t0 + 50
        t["returned"] = env.now

    env.process(purger())
    env.process(caller())
    env.run()

    range_handler = C.ipi_handler_ns + 2 * C.invlpg_ns  # one page + guard page
    lazy_purge = (C.lock_acquire_ns + C.atomic_ns + C.l2_ns  # llist_del_all, walk own area
                  + C.atomic_ns  # atomic_sub(nr, &vmap_lazy_nr)
                  + ipi_offsets(0, 2)[1] + range_handler + 2 * C.invlpg_ns
                  + C.lock_acquire_ns + math.log2(1 + 2) * C.rbtree_level_ns + C.kmalloc_ns
                  + C.lock_acquire_ns)
    assert t["released"] == near(t0 + lazy_purge)
    granted = t["released"] + line(0, 1)
    forced = (C.lock_acquire_ns + sim.machine.ncpus * C.vb_queue_check_ns + C.atomic_ns
              + line(0, 1)  # llist_del_all takes the list head from CPU 0's cache
              + ipi_offsets(1, 2)[0] + FULL_HANDLER + C.flush_full_ns + C.tlb_refill_ns
              + C.lock_acquire_ns)
    assert t["returned"] == near(granted + forced)
    assert vm.purge_lock.lock.stat.wait_total == near(granted - (t0 + 50.0))
    assert (m.purge.n, m.purge_areas, m.purge_trylock_failures) == (2, 1, 0)
    assert (m.tlb_flush_range, m.tlb_flush_full) == (1, 1)
    assert vm.vmap_lazy_nr == 0 and vm.busy.count == 0


# --- lazy free and purge of one area -------------------------------------------------------

def busy_walk_per_area(ncpus: int) -> float:
    """A 4.5 purge walk on CPU 0 over a busy list every online CPU is taken to have filled
    alike (all within CPU 0's L2): 1/n of the lines from its own L2, the rest from the other
    CPUs' caches."""
    others = sum(line(w, 0) for w in range(1, ncpus))
    return (C.l2_ns + others) / ncpus


def purge_cost(variant: str, busy_before: int, lazy: list[int], ncpus: int) -> float:
    """__purge_vmap_area_lazy(sync) of ``lazy`` areas (sizes in pages) on CPU 0, uncontended,
    the last vmap_lazy_nr writer being CPU 0 and the purged range a range flush."""
    pages = max(lazy)  # the tests purge one area: the flushed range is that area
    walk = (busy_before * busy_walk_per_area(ncpus) if variant == "linux-4.5"
            else C.atomic_ns + len(lazy) * C.l2_ns)  # llist_del_all, walk of its own areas
    flush_ipis = (max(ipi_offsets(0, ncpus).values()) + C.ipi_handler_ns
                  + pages * C.invlpg_ns) if ncpus > 1 else 0.0
    return (C.lock_acquire_ns + ncpus * C.vb_queue_check_ns + walk + C.atomic_ns
            + flush_ipis + pages * C.invlpg_ns
            + C.lock_acquire_ns  # the free loop: rbtree depth of the tree it erases from
            + len(lazy) * (math.log2(busy_before + 2) * C.rbtree_level_ns + C.kmalloc_ns)
            + C.lock_acquire_ns)


def vmalloc_vfree_purge(sim: Simulation, snapshot: dict) -> None:
    vm, c0 = sim.vm, sim.cpus[0]

    def proc():
        va = yield from vm.vmalloc(c0, 1)
        snapshot["va"] = va
        yield from vm.vfree(c0, va)
        snapshot["busy_after_free"] = vm.busy.count
        snapshot["lazy_nr_after_free"] = vm.vmap_lazy_nr
        snapshot["pending_after_free"] = vm.lazy.pending()
        snapshot["flags_after_free"] = va.flags
        snapshot["still_in_busy_tree"] = vm.busy.first_ending_at_or_after(va.va_start) \
            == vm.busy.position(va.va_start)
        snapshot["findable"] = va.va_start in vm.areas  # find_vmap_area: live areas only
        snapshot["flushes_after_free"] = sim.metrics.tlb_flush_range + sim.metrics.tlb_flush_full
        vm.busy.position(va.va_start)  # KeyError if it had left the busy tree
        yield from vm.purge_vmap_area_lazy(c0)

    sim.env.process(proc())
    sim.env.run()


@pytest.mark.parametrize("variant", ["linux-4.5", "linux-4.7"])
def test_vfree_is_lazy_until_a_purge(variant: str) -> None:
    sim = make_sim(variant, cpus=2)
    vm, m = sim.vm, sim.metrics
    s: dict = {}
    vmalloc_vfree_purge(sim, s)
    va = s["va"]
    assert (va.va_start, va.va_end, va.size, va.nr_pages) == (0, 2, 2, 1)
    assert s["busy_after_free"] == 1 and s["still_in_busy_tree"] and not s["findable"]
    assert s["lazy_nr_after_free"] == va.size == 2
    assert s["pending_after_free"] == 1
    assert s["flushes_after_free"] == 0
    assert not s["flags_after_free"] & VM_VM_AREA
    if variant == "linux-4.5":
        assert s["flags_after_free"] & VM_LAZY_FREE
        assert va.flags & VM_LAZY_FREEING and not va.flags & VM_LAZY_FREE
    # after the purge
    assert vm.busy.count == 0 and va.va_start not in vm.areas
    with pytest.raises(KeyError):
        vm.busy.position(va.va_start)
    assert vm.vmap_lazy_nr == 0 and vm.lazy.pending() == 0
    assert (m.tlb_flush_range, m.tlb_flush_full, m.ipis) == (1, 0, 1)
    assert (m.purge.n, m.purge_areas) == (1, 1)
    assert m.lazy_pages_peak == 2
    assert m.purge.total == near(purge_cost(variant, 1, [2], 2))


def test_purge_walk_full_list_in_4_5_lazy_list_only_in_4_7() -> None:
    """With 1000 long-lived areas, the 4.5 purge walks all 1001 busy areas, the 4.7 purge only
    the llist of one: the purge durations differ by exactly that walk."""
    count = 1000
    purge = {}
    for variant in ("linux-4.5", "linux-4.7"):
        sim = make_sim(variant, cpus=2)
        place_background(sim.vm, Background(count=count, size=4), np.random.default_rng(0))
        assert sim.vm.busy.count == count
        s: dict = {}
        vmalloc_vfree_purge(sim, s)
        assert s["va"].va_start == count * 5  # first fit right after the packed areas
        assert s["busy_after_free"] == count + 1
        assert sim.vm.busy.count == count
        assert sim.metrics.purge.n == 1
        purge[variant] = sim.metrics.purge.total
        assert purge[variant] == near(purge_cost(variant, count + 1, [2], 2))
    walk_45 = (count + 1) * busy_walk_per_area(2)
    walk_47 = C.atomic_ns + 1 * C.l2_ns
    assert purge["linux-4.5"] - purge["linux-4.7"] == near(walk_45 - walk_47)


# --- IPIs take time from the step running when they arrive, not when they are sent ----------
# Regression scenarios: a handler pauses only work that overlaps it, a CPU that spun through a
# handler still pays the TLB refill it leaves behind, and a handler arriving after a wait ends
# costs only its own duration.


def test_ipi_arriving_after_a_step_does_not_stretch_it() -> None:
    """CPU 1's critical section ends at HOLD; CPU 0's IPI is sent 100 ns earlier but arrives
    ipi_delivery_ns - 100 = 150 ns after the release. The release stays at HOLD: the handler
    runs afterwards."""
    sim = make_sim(cpus=2)
    env, lock = sim.env, sim.vm.purge_lock.lock
    c0, c1 = sim.cpus
    send = HOLD - 100.0
    arrival = send + ipi_offsets(0, 2)[1]
    assert arrival > HOLD
    t: dict[str, float] = {}

    def holder():
        yield from hold(c1, lock, HOLD, t)

    def sender():
        c0.charge(send)
        yield from sim.flusher.flush_tlb_all(c0)

    env.process(holder())
    env.process(sender())
    env.run()
    assert sim.irq.busy_until[1] == arrival + FULL_HANDLER  # the handler itself is right
    assert t["release"] == HOLD


def spinning_target(send: float, flush_pages: int | None) -> tuple[float, float, float]:
    """CPU 1 holds purge_lock for HOLD; CPU 2 spins from 100 ns, then holds it 5000 ns; CPU 0
    flushes (all, or ``flush_pages`` pages) at ``send``. Returns CPU 2's grant, its release
    and the time its IPI arrived."""
    sim = make_sim(cpus=3)
    env, lock = sim.env, sim.vm.purge_lock.lock
    c0, c1, c2 = sim.cpus
    t: dict[str, float] = {}

    def holder():
        yield from hold(c1, lock, HOLD)

    def waiter():
        c2.charge(100.0)
        yield from c2.spin_lock(lock)
        t["grant"] = env.now
        c2.charge(5000.0)
        yield from c2.spin_unlock(lock)
        t["release"] = env.now

    def sender():
        c0.charge(send)
        if flush_pages is None:
            yield from sim.flusher.flush_tlb_all(c0)
        else:
            yield from sim.flusher.flush_tlb_kernel_range(c0, 0, flush_pages)

    for proc in (holder(), waiter(), sender()):
        env.process(proc)
    env.run()
    return t["grant"], t["release"], send + ipi_offsets(0, 3)[2]


def test_spinning_target_still_pays_the_tlb_refill() -> None:
    """CPU 2 takes a full-flush IPI while spinning (handler done long before its grant). The
    refill 'charged to the target after the ack' (sim/mm/tlb.py) should lengthen its next
    critical section; Cpu.waited() discards it (the sender, by contrast, pays its own)."""
    grant, release, arrival = spinning_target(SEND_AT, None)
    assert arrival + FULL_HANDLER < grant
    assert release == grant + 5000.0 + C.tlb_refill_ns


def test_ipi_arriving_after_a_grant_costs_only_its_handler() -> None:
    """CPU 0 sends a one-page range flush (no refill) during the handover to CPU 2, whose IPI
    arrives 280 ns after the grant, inside its critical section: that section should grow by
    the handler alone; the model also charges the 280 ns before the IPI arrived."""
    send = HOLD + 10.0  # CPU 1 released at HOLD; CPU 2 is granted at HOLD + one line
    grant, release, arrival = spinning_target(send, 1)
    assert grant == HOLD + line(1, 2) < arrival < grant + 5000.0
    assert release == grant + 5000.0 + C.ipi_handler_ns + C.invlpg_ns


def test_flushes_during_one_spin_leave_one_refill() -> None:
    """Three full-flush handlers run on a CPU while it spins: its TLB is refilled once after
    the wait, not three times (nothing used the TLB between the flushes)."""
    env, _, (cpu, other) = bare_cpus(2)
    irq = cpu.irq
    lock = SpinLock(env, "l")
    t: dict[str, float] = {}

    def holder():
        yield from other.spin_lock(lock)
        other.charge(10_000.0)
        yield from other.spin_unlock(lock)

    def spinner():
        yield from cpu.wait_until(100.0)
        yield from cpu.spin_lock(lock)
        t["grant"] = env.now
        cpu.charge(1_000.0)
        yield from cpu.spin_unlock(lock)
        t["release"] = env.now

    env.process(holder())
    env.process(spinner())
    for at in (1_000.0, 3_000.0, 5_000.0):
        irq.deliver(np.array([cpu.id]), np.array([at]), 500.0, C.tlb_refill_ns)
    env.run()
    assert t["release"] == t["grant"] + 1_000.0 + C.tlb_refill_ns


def test_back_to_back_handlers_in_a_step_leave_one_refill() -> None:
    """Two full-flush handlers, the second queued behind the first, interrupt one step: one
    refill; a third arriving after some of the CPU's own work has run costs another."""
    env, _, (cpu,) = bare_cpus(1)
    irq = cpu.irq
    refill = C.tlb_refill_ns
    for _ in range(2):  # the second waits for the first
        irq.deliver(np.array([0]), np.array([100.0]), 500.0, refill)
    irq.deliver(np.array([0]), np.array([100.0 + 1000.0 + refill + 300.0]), 500.0, refill)
    t: dict[str, float] = {}

    def step():
        cpu.charge(2_000.0)
        yield from cpu.settle()
        t["end"] = env.now

    env.run(until=env.process(step()))
    assert t["end"] == 2_000.0 + 3 * 500.0 + 2 * refill
