"""Scaling laws the model must show, and the kernel formulas it must reproduce."""

from __future__ import annotations

import pytest
import yaml
from scipy import stats

from sim.config.loader import catalog_dir
from sim.config.schema import RunConfig
from sim.mm.variants import presets
from sim.mm.vmalloc import lazy_max_pages_formula
from sim.simulation import Simulation

MACHINE = yaml.safe_load((catalog_dir("cpus") / "xeon-2s-112.yaml").read_text())
FIX_SIZE = yaml.safe_load((catalog_dir("workloads") / "test_vmalloc-fix_size.yaml").read_text())
WALK_NS = MACHINE["costs"]["list_walk_per_node_ns"]
BACKGROUND = [1000, 5000, 14000]
"""Busy-list sizes whose walk fits the profile's L2 (1 MiB: 16384 lines of one area each)."""
L2_NS = MACHINE["costs"]["l2_ns"]
LLC_NS = MACHINE["costs"]["llc_ns"]


def simulate(variant: str, cpus: int = 1, rep: int = 0, **workload) -> Simulation:
    config = RunConfig.model_validate({
        "machine": MACHINE, "workload": {**FIX_SIZE, **workload},
        "variant": presets()[variant], "cpus": cpus, "duration": "15ms", "warmup": "1ms"})
    sim = Simulation(config, (11, cpus, rep))
    sim.run()
    return sim


def purge_durations_at(variant: str, count: int, rep: int) -> float:
    """Mean purge duration of one replication with ``count`` background areas, one CPU."""
    sim = simulate(variant, rep=rep, think_time="5us", set_memory_rate=4000,
                   background={**FIX_SIZE["background"], "count": count})
    assert sim.metrics.purge.n >= 3
    return sim.metrics.purge.mean()


def purge_durations(variant: str) -> tuple[list[int], list[float]]:
    """Mean purge duration per replication at each background size, one CPU."""
    xs, ys = [], []
    for count in BACKGROUND:
        for rep in range(2):
            xs.append(count)
            ys.append(purge_durations_at(variant, count, rep))
    return xs, ys


def test_full_walk_purge_grows_linearly_with_areas() -> None:
    """linux-4.5: every purge walks all of vmap_area_list, one line per area, on one CPU
    from its own cache: while the list fits the L2 the slope is the L2 hit; past it, every
    area of the walk costs an LLC hit."""
    xs, ys = purge_durations("linux-4.5")
    fit = stats.linregress(xs, ys)
    assert fit.slope == pytest.approx(L2_NS, rel=0.10)
    assert fit.rvalue > 0.999
    big = [purge_durations_at("linux-4.5", 50_000, rep) for rep in range(2)]
    assert sum(big) / 2 / 50_000 == pytest.approx(LLC_NS, rel=0.10)


def test_llist_purge_is_flat_in_areas() -> None:
    """linux-4.7: a purge walks only the lazy llist, whatever the number of live areas."""
    xs, ys = purge_durations("linux-4.7")
    fit = stats.linregress(xs, ys)
    assert abs(fit.slope) < 0.02 * WALK_NS
    assert max(ys) < 1.5 * min(ys)


@pytest.mark.parametrize("cpus", range(1, 257))
def test_lazy_max_pages_formula(cpus: int) -> None:
    """lazy_max_pages() = fls(num_online_cpus()) * (32 MiB / PAGE_SIZE)."""
    expected = cpus.bit_length() * (32 * 1024 * 1024 // 4096)
    assert lazy_max_pages_formula(cpus) == expected


@pytest.mark.parametrize("cpus,pages", [(1, 8192), (4, 24576), (8, 32768), (16, 40960),
                                        (56, 49152), (112, 57344), (256, 73728)])
def test_lazy_max_pages_table(cpus: int, pages: int) -> None:
    """The published values (Rezki: 24576 on 4 CPUs; NVIDIA: 32 MB on 1, 96 MB on 4)."""
    assert lazy_max_pages_formula(cpus) == pages


def test_model_uses_the_formula_and_the_override() -> None:
    sim = simulate("linux-4.7", cpus=4)
    assert sim.vm.lazy_max_pages == 24576
    config = sim.config.model_copy(update={"lazy_max_pages": 100})
    assert Simulation(config, (1,)).vm.lazy_max_pages == 100


def test_lazy_threshold_triggers_purges() -> None:
    """Without set_memory_*(), purges happen only when vmap_lazy_nr exceeds the threshold,
    and the lazy pages never exceed it by more than what the CPUs free meanwhile."""
    config = RunConfig.model_validate({
        "machine": MACHINE, "workload": FIX_SIZE, "variant": presets()["linux-4.7"],
        "cpus": 2, "lazy_max_pages": 64, "duration": "2ms"})
    sim = Simulation(config, (3,))
    sim.run()
    m = sim.metrics
    assert m.purge.n > 10
    assert m.purge_areas >= m.purge.n * 64 // 2  # each purge frees > 64 pages of 2-page areas
    assert 64 < m.lazy_pages_peak <= 64 + 2 * 2 * 2  # threshold + in-flight frees
    assert m.tlb_flush_full + m.tlb_flush_range == m.purge.n


def test_overflow_purges_once_retries_then_counts_a_failure() -> None:
    """A vmalloc space too small for the live areas: alloc_vmap_area purges synchronously,
    retries once, and a failure is counted, never a crash."""
    machine = {**MACHINE, "vmalloc_space": 64}
    workload = {**FIX_SIZE, "live_per_cpu": 40, "background": {"count": 0}}
    config = RunConfig.model_validate({
        "machine": machine, "workload": workload, "variant": presets()["linux-4.7"],
        "cpus": 2, "duration": "200us"})
    sim = Simulation(config, (5,))
    sim.run()
    m = sim.metrics
    assert m.alloc_failures > 0
    assert m.purge.n >= m.alloc_failures  # one sync purge before each failure
    assert sim.vm.busy.count <= 64 // 2  # never more 2-page areas than the space holds


def test_augmented_tree_allocation_is_flat_where_first_fit_grows() -> None:
    """Mixed sizes make the pre-5.2 first fit drop its cache and walk from VMALLOC_START over
    every busy area; linux-5.2's augmented free tree descends in O(log n)."""
    seed = yaml.safe_load((catalog_dir("workloads") / "seed-i915.yaml").read_text())
    means: dict[str, list[float]] = {}
    for variant in ("linux-4.5", "linux-5.2"):
        for count in (1000, 10000, 50000):
            workload = {**seed, "set_memory_rate": 0,
                        "background": {**seed["background"], "count": count}}
            config = RunConfig.model_validate({
                "machine": MACHINE, "workload": workload, "variant": presets()[variant],
                "cpus": 1, "lazy_max_pages": 256, "duration": "20ms"})
            sim = Simulation(config, (2, count))
            sim.run()
            means.setdefault(variant, []).append(sim.metrics.vmalloc.mean())
    old, new = means["linux-4.5"], means["linux-5.2"]
    assert old[2] > 3 * old[1] > 4 * old[0]  # grows with the busy list (past L2 at 50000)
    assert new[2] < 1.3 * new[0]         # log2 depth only
    assert new[2] < old[2] / 4
