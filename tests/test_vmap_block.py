"""The per-CPU vmap_block allocator (``vm_map_ram``/``vm_unmap_ram``, Linux 4.1+): exact
addresses, block life cycle, ``purge_fragmented_blocks``, the dirty-range walk of
``vm_unmap_aliases()`` with and without Thomas Gleixner's 6.5 fixes, and the safety checker's
view of ranges unmapped by ``vb_free``. Costs come from ``cpus/xeon-2s-112.yaml``."""

from __future__ import annotations

import pytest
import yaml

from sim.config.loader import catalog_dir
from sim.mm.variants import presets
from sim.mm.vmap_block import (
    VMAP_BBMAP_BITS,
    VMAP_BLOCK_SIZE,
    VMAP_MAX_ALLOC,
    VmapRam,
    get_order,
    vmap_bbmap_bits,
)
from sim.simulation import Simulation
from tests.test_safety import at, build, counts, variant

C = yaml.safe_load((catalog_dir("cpus") / "xeon-2s-112.yaml").read_text())["costs"]
OLD = variant("linux-4.7")
RESET = variant("linux-4.7", vb_dirty_reset=True)
WALK_ALL = variant("linux-4.7", vb_walk_all=True)


def run(sim: Simulation, cpu: int, gen_fn):
    """Run ``gen_fn(cpu)`` on CPU ``cpu`` from now to its end (clock settled); its result."""
    out = {}

    def go():
        c = sim.cpus[cpu]
        out["value"] = yield from gen_fn(c)
        yield from c.settle()
    sim.env.run(until=at(sim, sim.env.now, go))
    return out["value"]


def map_ram(sim: Simulation, cpu: int, count: int) -> VmapRam:
    return run(sim, cpu, lambda c: sim.vm.vm_map_ram(c, count))


def unmap_ram(sim: Simulation, cpu: int, ram: VmapRam) -> None:
    run(sim, cpu, lambda c: sim.vm.vm_unmap_ram(c, ram))


def unmap_aliases(sim: Simulation, cpu: int) -> None:
    run(sim, cpu, lambda c: sim.vm.vm_unmap_aliases(c))


def purge(sim: Simulation, cpu: int) -> None:
    """``purge_vmap_area_lazy()``: a sync purge on ``cpu``."""
    run(sim, cpu, lambda c: sim.vm.purge_vmap_area_lazy(c))


def spy_flushes(sim: Simulation) -> list[tuple[int, int]]:
    """Record the [start, end) of every ``flush_tlb_kernel_range``."""
    calls: list[tuple[int, int]] = []
    original = sim.flusher.flush_tlb_kernel_range

    def spy(cpu, start, end):
        calls.append((start, end))
        yield from original(cpu, start, end)
    sim.flusher.flush_tlb_kernel_range = spy
    return calls


# --- sizes ------------------------------------------------------------------------------------

def test_block_size_follows_the_kernel_formula() -> None:
    """min(1024, max(2 * VMAP_MAX_ALLOC, VMALLOC_PAGES / roundup_pow_of_two(NR_CPUS) / 16)),
    VMALLOC_SPACE guessed 128 GiB: 256 pages (1 MiB) for NR_CPUS = 8192."""
    pages = (128 << 30) >> 12
    assert VMAP_MAX_ALLOC == 64
    assert (VMAP_BBMAP_BITS, VMAP_BLOCK_SIZE) == (256, 256)
    assert vmap_bbmap_bits(8192, pages) == 256
    assert vmap_bbmap_bits(5000, pages) == 256  # rounded up to 8192
    assert vmap_bbmap_bits(1, pages) == 1024  # the cap
    assert vmap_bbmap_bits(1 << 20, pages) == 128  # the floor: 2 * VMAP_MAX_ALLOC


@pytest.mark.parametrize("count,order", [(1, 0), (2, 1), (3, 2), (4, 2), (5, 3), (33, 6),
                                         (64, 6)])
def test_get_order(count: int, order: int) -> None:
    assert get_order(count) == order


# --- vb_alloc ---------------------------------------------------------------------------------

def test_requests_are_rounded_to_a_power_of_two_and_bumped_sequentially() -> None:
    """One block at address 0: 1, 3 (-> 4), 4 and 64 pages land at 0, 1, 5, 9; a mapping
    into an existing block costs vb->lock and the PTEs, nothing else."""
    sim = build(OLD)
    rams = [map_ram(sim, 0, n) for n in (1, 3, 4)]
    before = sim.env.now
    rams.append(map_ram(sim, 0, 64))
    assert sim.env.now - before == C["lock_acquire_ns"] + 64 * C["map_page_ns"]
    assert [(r.addr, r.count) for r in rams] == [(0, 1), (1, 3), (5, 4), (9, 64)]
    vb = sim.vm.vb.tree[0]
    assert (vb.free, vb.dirty) == (VMAP_BBMAP_BITS - 73, 0)
    assert sim.vm.vb.blocks_allocated == 1
    assert (vb.va.va_start, vb.va.va_end) == (0, VMAP_BLOCK_SIZE)  # a normal vmap_area
    assert sim.vm.areas[0] is vb.va


def test_new_block_at_the_tail_when_nothing_fits() -> None:
    """Block 0 keeps 63 free pages: a 64-page request opens block 1 (VMAP_BLOCK_SIZE-aligned,
    at the queue's tail); the next 1-page request still goes to block 0, the list head. A
    block with no free page left leaves the free list."""
    sim = build(OLD)
    for _ in range(3):
        map_ram(sim, 0, 64)
    assert map_ram(sim, 0, 1).addr == 192
    assert map_ram(sim, 0, 64).addr == VMAP_BLOCK_SIZE
    vbq = sim.vm.vb.queues[0]
    assert [vb.va.va_start for vb in vbq.free] == [0, VMAP_BLOCK_SIZE]
    assert map_ram(sim, 0, 1).addr == 193
    for _ in range(62):
        map_ram(sim, 0, 1)
    assert [vb.va.va_start for vb in vbq.free] == [VMAP_BLOCK_SIZE]  # block 0 is full
    assert len(vbq.blocks) == 2 and sim.vm.vb.blocks_allocated == 2
    assert map_ram(sim, 1, 1).addr == 2 * VMAP_BLOCK_SIZE  # CPU 1 has its own queue


def test_more_than_vmap_max_alloc_takes_the_normal_path() -> None:
    """65 pages: alloc_vmap_area(65 pages, no guard page), no block, no vmap_block lock; the
    unmap is a lazy free of the area."""
    sim = build(OLD)
    names = [lock.name for lock in sim.vm.locks]
    ram = map_ram(sim, 0, VMAP_MAX_ALLOC + 1)
    assert (ram.addr, ram.va.size) == (0, 65)
    assert sim.vm.areas[0] is ram.va
    assert sim.vm.vb is None and [lock.name for lock in sim.vm.locks] == names
    unmap_ram(sim, 0, ram)
    assert sim.vm.vmap_lazy_nr == 65 and 0 not in sim.vm.areas
    assert ram.va.ident in sim.safety._lazy
    assert (sim.vm.vm_map_ram_calls, sim.vm.vm_unmap_ram_calls) == (1, 1)
    assert sim.metrics.ops == 2


def test_block_locks_appear_only_once_a_block_exists() -> None:
    sim = build(OLD)
    before = set(sim.lock_stats())
    map_ram(sim, 0, 1)
    assert set(sim.lock_stats()) - before == {"vmap_block_tree_lock", "vmap_block_queue.lock",
                                              "vmap_block.lock"}


# --- vb_free ----------------------------------------------------------------------------------

def test_vb_free_widens_the_dirty_range_by_the_rounded_size() -> None:
    sim = build(OLD)
    rams = [map_ram(sim, 0, n) for n in (1, 3, 4, 2)]  # at 0, 1 (4 pages), 5, 9 (2 pages)
    vb = sim.vm.vb.tree[0]
    unmap_ram(sim, 0, rams[1])
    assert (vb.dirty_min, vb.dirty_max, vb.dirty) == (1, 5, 4)
    unmap_ram(sim, 0, rams[3])
    assert (vb.dirty_min, vb.dirty_max, vb.dirty) == (1, 11, 6)
    unmap_ram(sim, 0, rams[0])
    assert (vb.dirty_min, vb.dirty_max, vb.dirty) == (0, 11, 7)
    assert sim.vm.vmap_lazy_nr == 0  # nothing lazy: the block still lives


def test_a_fully_dirty_block_goes_down_the_lazy_path() -> None:
    """Four 64-page mappings fill block 0; once all are unmapped the block's area is lazily
    freed (free_vmap_area_noflush), then a purge flushes and frees it, and its range can be
    handed out again without a violation."""
    sim = build(OLD, vmap_block_dirty=False)
    rams = [map_ram(sim, 0, 64) for _ in range(4)]
    block = sim.vm.vb.tree[0].va
    for ram in rams:
        unmap_ram(sim, 1, ram)  # another CPU may unmap
    assert sim.vm.vb.tree == {} and sim.vm.vb.blocks_freed == 1
    assert sim.vm.vmap_lazy_nr == VMAP_BLOCK_SIZE
    assert block.ident in sim.safety._lazy and 0 not in sim.vm.areas
    flushes = spy_flushes(sim)
    purge(sim, 0)
    assert flushes == [(0, VMAP_BLOCK_SIZE)]
    assert sim.vm.vmap_lazy_nr == 0 and not sim.safety._lazy
    assert map_ram(sim, 0, 1).addr == 0
    assert counts(sim) == {}


def test_purge_fragmented_blocks_frees_exactly_the_fragmented_ones() -> None:
    """A: no live mapping, some space never used (fragmented); B: one live mapping; C (CPU 1):
    unmapped, fragmented. A sync purge frees A and C (their areas purged at once), keeps B."""
    sim = build(OLD)
    a = [map_ram(sim, 0, 64) for _ in range(3)] + [map_ram(sim, 0, 32)]  # A keeps 32 free
    b = map_ram(sim, 0, 64)  # does not fit A: block B at VMAP_BLOCK_SIZE
    c = map_ram(sim, 1, 1)
    assert (b.addr, c.addr) == (VMAP_BLOCK_SIZE, 2 * VMAP_BLOCK_SIZE)
    for ram in a:
        unmap_ram(sim, 0, ram)
    unmap_ram(sim, 1, c)
    vb = sim.vm.vb
    assert [blk.fragmented() for blk in vb.tree.values()] == [True, False, True]
    purge(sim, 0)
    assert list(vb.tree) == [1]  # B only
    assert vb.fragmented_purged == 2 and vb.blocks_freed == 2
    assert sim.metrics.purge_areas == 2 and sim.vm.vmap_lazy_nr == 0
    assert [blk.va.va_start for blk in vb.queues[0].free] == [VMAP_BLOCK_SIZE]
    assert vb.queues[1].free == [] and counts(sim) == {}


def test_without_blocks_the_block_walks_cost_only_the_queue_checks() -> None:
    """Once every block is gone, vm_unmap_aliases() costs what it costs with none ever made:
    ncpus * vb_queue_check_ns for its walk and as much for purge_fragmented_blocks_allcpus."""
    durations = []
    for make_blocks in (False, True):
        sim = build(OLD, vmap_block_dirty=False)
        if make_blocks:
            unmap_ram(sim, 0, map_ram(sim, 0, 1))
            purge(sim, 0)  # frees the block
            assert sim.vm.vb is not None and sim.vm.vb.tree == {}
        began = sim.env.now
        unmap_aliases(sim, 0)
        durations.append(sim.env.now - began)
    assert durations[0] == durations[1]
    assert durations[0] == 2 * 2 * C["vb_queue_check_ns"] + 2 * C["lock_acquire_ns"] \
        + C["atomic_ns"]


# --- vm_unmap_aliases -------------------------------------------------------------------------

def dirty_two_pages(var: dict, **workload) -> Simulation:
    """Block 0 with [0, 2) unmapped (dirty) and a live mapping at 2 (not fragmented)."""
    sim = build(var, **workload)
    first, second, _live = (map_ram(sim, 0, 1) for _ in range(3))
    unmap_ram(sim, 0, first)
    unmap_ram(sim, 0, second)
    return sim


def test_vm_unmap_aliases_flushes_the_dirty_range() -> None:
    """[0, 2) is a range flush of two pages; a second dirty range at 100 widens the flush to
    [0, 101), past the ceiling of 33 pages: a full flush."""
    sim = dirty_two_pages(OLD, vmap_block_dirty=False)
    flushes = spy_flushes(sim)
    unmap_aliases(sim, 1)
    assert flushes == [(0, 2)]
    assert (sim.metrics.tlb_flush_range, sim.metrics.tlb_flush_full) == (1, 0)
    rams = [map_ram(sim, 0, 1) for _ in range(98)]  # 3 .. 100
    unmap_ram(sim, 0, rams[-1])
    unmap_aliases(sim, 1)
    assert flushes[1] == (0, 101)
    assert (sim.metrics.tlb_flush_range, sim.metrics.tlb_flush_full) == (1, 1)
    assert sim.vm.vb.dirty_flushes == 2 and counts(sim) == {}


def test_the_stand_in_still_forces_the_whole_space_flush() -> None:
    """vmap_block_dirty (other vm_map_ram users) widens the real dirty range to the whole
    vmalloc space: a full flush."""
    sim = dirty_two_pages(OLD, vmap_block_dirty=True)
    flushes = spy_flushes(sim)
    unmap_aliases(sim, 1)
    assert flushes == [(sim.vm.vstart, sim.vm.vend)]
    assert (sim.metrics.tlb_flush_range, sim.metrics.tlb_flush_full) == (0, 1)


@pytest.mark.parametrize("var,again", [(OLD, True), (RESET, False),
                                       (presets()["linux-6.9"], False)])
def test_dirty_range_flushed_again_before_6_5_only(var: dict, again: bool) -> None:
    """Before 6.5 every vm_unmap_aliases() flushes the same dirty range again; with
    a09fad96ffb1 (linux-6.9) the range is reset once flushed and the next call, finding
    nothing dirty nor lazy, does not flush."""
    sim = dirty_two_pages(var, vmap_block_dirty=False)
    flushes = spy_flushes(sim)
    unmap_aliases(sim, 1)
    unmap_aliases(sim, 1)
    assert flushes == ([(0, 2), (0, 2)] if again else [(0, 2)])
    vb = sim.vm.vb.tree[0]
    assert (vb.dirty_min, vb.dirty_max) == ((0, 2) if again else (VMAP_BBMAP_BITS, 0))
    assert vb.dirty == 2  # the count is not reset: the block is freed when all is dirty
    assert counts(sim) == {}


# --- safety -----------------------------------------------------------------------------------

def full_block_one_range_unmapped(var: dict, **workload) -> tuple[Simulation, VmapRam]:
    """Block 0 filled by four 64-page mappings (so off the free list), the second unmapped."""
    sim = build(var, **workload)
    rams = [map_ram(sim, 0, 64) for _ in range(4)]
    unmap_ram(sim, 0, rams[1])
    return sim, rams[1]


@pytest.mark.parametrize("var,unsafe", [(OLD, True), (RESET, True), (WALK_ALL, False),
                                        (presets()["linux-6.9"], False)])
def test_unmapped_range_of_a_full_block_left_unflushed(var: dict, unsafe: bool) -> None:
    """Before fc1e0d980037 (6.5) vm_unmap_aliases() walks only the free lists: a block with no
    free page left is not seen, and the range unmapped from it stays in the TLBs after the
    call returns. Walking every block flushes it (64 pages: a full flush)."""
    sim, ram = full_block_one_range_unmapped(var, vmap_block_dirty=False)
    unmap_aliases(sim, 1)
    assert counts(sim) == ({"unmap_aliases_unflushed": 1} if unsafe else {})
    assert sim.metrics.tlb_flush_full == (0 if unsafe else 1)
    if unsafe:
        example = sim.safety.examples["unmap_aliases_unflushed"]
        assert example["area"] == [ram.addr, ram.addr + 64]
        assert [step for _, _, step in example["steps"]] == ["vb_alloc", "vb_free"]


def test_the_stand_in_hides_the_full_block_range() -> None:
    """With other vm_map_ram users' blocks dirty, every call is a full flush anyway."""
    sim, _ = full_block_one_range_unmapped(OLD, vmap_block_dirty=True)
    unmap_aliases(sim, 1)
    assert counts(sim) == {}


def test_a_range_unmapped_after_the_call_began_is_not_its_business() -> None:
    """vm_unmap_aliases() answers for unmaps before the call: a range of a full block that
    CPU 2 unmaps while CPU 0's call waits on purge_lock (held by CPU 1) is not reported,
    though the old walk does not see it; the next call, which does not either, is."""
    sim = build(OLD, cpus=3, vmap_block_dirty=False)
    rams = [map_ram(sim, 0, 64) for _ in range(4)]
    t0 = sim.env.now + 1000
    hold = at(sim, t0, lambda: holder_on(sim, 1))
    aliases = at(sim, t0 + 100, lambda: sim.vm.vm_unmap_aliases(sim.cpus[0]))
    unmap = at(sim, t0 + 5000, lambda: sim.vm.vm_unmap_ram(sim.cpus[2], rams[1]))
    sim.env.run(until=aliases)
    assert hold.triggered and unmap.triggered
    assert counts(sim) == {}
    unmap_aliases(sim, 1)  # a later call must flush it, and cannot see it (old walk)
    assert counts(sim) == {"unmap_aliases_unflushed": 1}


def holder_on(sim: Simulation, cpu: int):
    """Hold purge_lock for 20 us on ``cpu``."""
    c = sim.cpus[cpu]
    yield from c.spin_lock(sim.vm.purge_lock.lock)
    c.charge(20_000)
    yield from c.spin_unlock(sim.vm.purge_lock.lock)


def test_block_range_reused_before_its_flush_is_reported() -> None:
    """A broken composition (linux-4.7 without keeping lazy areas in the busy tree) hands a
    fully dirty block's range out again before any flush: the unmapped ranges inside it are
    reported as reused before their flush."""
    sim = build(variant("linux-4.7", lazy_in_busy_tree=False), vmap_block_dirty=False)
    rams = [map_ram(sim, 0, 64) for _ in range(4)]
    for ram in rams:
        unmap_ram(sim, 0, ram)
    run(sim, 1, lambda c: sim.vm.vmalloc(c, 1))
    assert counts(sim) == {"reuse_before_flush": 1}


def test_a_traced_run_records_the_block_ops_and_locks() -> None:
    """Block locks made after the tracer was attached are traced too."""
    from sim.engine.tracer import Tracer

    sim = build(OLD)
    tracer = Tracer(0, 1e9)
    sim.attach(tracer)
    unmap_ram(sim, 0, map_ram(sim, 0, 2))
    names = {name for _, name, _, _, _, _ in tracer.events}
    assert {"vm_map_ram", "vm_unmap_ram", "vmap_block.lock", "vmap_block_queue.lock",
            "vmap_block_tree_lock"} <= names
