"""Fidelity of contention: coherence-aware costs, cache topology and placement.

Exact traces: a section that follows another CPU's pays for the lines that CPU dirtied, the
same section run twice by one CPU does not, and a transfer across LLC domains costs more than
within one. Laws: a contended global-lock pair grows with threads and with the transfer cost,
vmap nodes take most of that away, and spreading workers over a CCX machine's LLC domains is
slower under one lock than packing them into one.
"""

from __future__ import annotations

import pytest
import yaml

from sim.config.loader import catalog_dir
from sim.config.schema import MachineProfile, RunConfig
from sim.engine.coherence import SharedLines
from sim.engine.machine import Machine
from sim.mm.busy_tree import RB_LIST_WRITE_LINES
from sim.mm.variants import presets
from sim.simulation import Simulation
from tests.test_safety import at


def profile(name: str) -> dict:
    return yaml.safe_load((catalog_dir("cpus") / f"{name}.yaml").read_text())


TR = profile("threadripper-3970x")
TR_COSTS = TR["costs"]


def machine(name: str, cpus: int) -> Machine:
    return Machine(MachineProfile.model_validate(profile(name)), cpus)


# --- topology --------------------------------------------------------------------------------

def test_cpus_are_numbered_as_linux_numbers_them() -> None:
    """2 x 28 cores with SMT: 0-27 socket 0, 28-55 socket 1, 56-111 their siblings; the
    Threadripper's CCX are four cores each."""
    t = machine("xeon-2s-112", 112).topology
    assert [t.socket[c] for c in (0, 27, 28, 55, 56, 84, 111)] == [0, 0, 1, 1, 0, 1, 1]
    assert t.core[56] == t.core[0] and t.thread[56] == 1
    tr = machine("threadripper-3970x", 64).topology
    assert [tr.llc[c] for c in (0, 3, 4, 31, 32, 36)] == [0, 0, 1, 7, 0, 1]


def test_transfer_costs_by_the_closest_shared_level() -> None:
    m = machine("threadripper-3970x", 64)
    row = m.transfer[0]
    assert row[0] == 0.0
    assert row[32] == TR_COSTS["cacheline_same_core_ns"]  # SMT sibling
    assert row[1] == TR_COSTS["cacheline_same_llc_ns"]  # same CCX
    assert row[4] == TR_COSTS["cacheline_same_socket_ns"]  # other CCX
    # past the profile's CPUs, a second socket: its cores are 32-63, then all the siblings
    assert machine("threadripper-3970x", 128).transfer[0][32] == \
        TR_COSTS["cacheline_cross_socket_ns"]
    assert row[1] < row[4]


def test_placement_spreads_over_llc_domains_and_cores_before_siblings() -> None:
    m = machine("threadripper-3970x", 64)
    assert m.placement("spread")[:9] == [0, 4, 8, 12, 16, 20, 24, 28, 1]
    assert m.placement("spread")[32:34] == [32, 36]  # siblings last
    assert m.placement("compact")[:9] == [0, 32, 1, 33, 2, 34, 3, 35, 4]
    assert m.placement("pinned")[:3] == [0, 1, 2]
    for kind in ("spread", "compact", "pinned"):
        assert sorted(m.placement(kind)) == list(range(64))


def test_working_sets_cost_by_where_they_live() -> None:
    m = machine("xeon-2s-112", 2)
    c = profile("xeon-2s-112")["costs"]
    assert m.own_line_ns(1000) == c["l2_ns"]
    assert m.own_line_ns(100_000) == c["llc_ns"]
    assert m.own_line_ns(10_000_000) == c["dram_ns"]
    assert m.line_ns(1, 0, 1000) == c["cacheline_same_socket_ns"]
    assert m.line_ns(1, 0, 10_000_000) == c["dram_ns"]


def test_shared_lines_follow_their_writer() -> None:
    m = machine("threadripper-3970x", 8)
    lines = SharedLines(m)
    assert lines.write(0, 4) == 0.0  # never written: nothing to pull
    assert lines.write(0, 4) == 0.0  # its own lines
    assert lines.read(1) == 4 * TR_COSTS["cacheline_same_llc_ns"]
    assert lines.read(1) == 0.0  # now shared in CPU 1's cache
    assert lines.write(4, 2) == 4 * TR_COSTS["cacheline_same_socket_ns"]
    assert lines.read(0) == 2 * TR_COSTS["cacheline_same_socket_ns"]


# --- exact traces in the model ----------------------------------------------------------------

def one_vmalloc_each(cpus: list[int], name: str = "linux-5.2") -> list[float]:
    """vmalloc(1 page) on each CPU in turn, uncontended; each one's latency."""
    work = {"name": "one", "kind": "vmalloc_loop", "size": 1, "background": {"count": 0}}
    config = RunConfig.model_validate({"machine": TR, "workload": work,
                                       "variant": presets()[name], "cpus": 8,
                                       "duration": 1e6})
    sim = Simulation(config, (0,))
    latencies = []
    for cpu in cpus:
        before = sim.metrics.vmalloc.total

        def go(cpu=cpu):
            yield from sim.vm.vmalloc(sim.cpus[cpu], 1)
            yield from sim.cpus[cpu].settle()
        sim.env.run(until=at(sim, sim.env.now, go))
        latencies.append(sim.metrics.vmalloc.total - before)
    return latencies


def test_a_section_after_another_cpus_pays_for_its_lines() -> None:
    """linux-5.2: the second vmalloc pays, for the busy tree's dirty lines and the free tree's
    path, one transfer each from the CPU that ran the first; run by the same CPU it pays
    nothing more; from another CCX it pays more than from the same one."""
    _, same = one_vmalloc_each([0, 0])
    _, near = one_vmalloc_each([0, 1])
    _, far = one_vmalloc_each([0, 4])
    extra_near, extra_far = near - same, far - same
    assert extra_near > 0 and extra_far > extra_near
    assert extra_far / extra_near == pytest.approx(
        TR_COSTS["cacheline_same_socket_ns"] / TR_COSTS["cacheline_same_llc_ns"], rel=1e-9)
    assert extra_near >= RB_LIST_WRITE_LINES * TR_COSTS["cacheline_same_llc_ns"]


# --- laws --------------------------------------------------------------------------------------

def pair_us(variant: str, threads: int, placement: str, machine_yaml: dict = TR) -> float:
    """test_vmalloc fix_size: mean us per vmalloc+vfree pair over the workers (1500 loops;
    a small ``lazy_max_pages`` so that purges run, and fill 6.9's pools, within them)."""
    work = {"name": "t", "kind": "test_vmalloc", "nr_threads": threads, "placement": placement,
            "run_test_mask": ["fix_size_alloc_test"], "test_loop_count": 1500}
    config = RunConfig.model_validate({"machine": machine_yaml, "workload": work,
                                       "variant": presets()[variant], "cpus": 64,
                                       "duration": "50ms", "lazy_max_pages": 2048})
    sim = Simulation(config, (3, threads))
    metrics = sim.run()
    assert metrics["safety_violations"] == 0 and sim.metrics.purge.n >= 2
    return metrics["fix_size_alloc_test_avg_usec"] / 1500


@pytest.mark.parametrize("variant", ["linux-5.18"])
def test_contended_global_lock_pair_grows_with_threads_and_transfer_cost(variant: str) -> None:
    pairs = [pair_us(variant, n, "compact") for n in (1, 4, 8)]
    assert pairs[0] < pairs[1] < pairs[2]
    slow = {**TR, "costs": {**TR_COSTS, "cacheline_same_llc_ns": 2 * TR_COSTS[
        "cacheline_same_llc_ns"], "cacheline_same_core_ns": 2 * TR_COSTS[
        "cacheline_same_core_ns"]}}
    assert pair_us(variant, 8, "compact", slow) > pairs[2]


def test_vmap_nodes_take_most_of_the_growth_away() -> None:
    old = [pair_us("linux-5.18", n, "spread") for n in (1, 8)]
    new = [pair_us("linux-6.9", n, "spread") for n in (1, 8)]
    assert (new[1] - new[0]) < (old[1] - old[0]) / 3


def test_spread_is_slower_than_compact_under_one_lock() -> None:
    """8 workers under linux-5.18's global lock on the Threadripper: spread over eight CCX
    every handoff crosses CCX (92 ns); packed into one CCX (both threads of four cores) it
    stays inside (6-24 ns)."""
    assert pair_us("linux-5.18", 8, "spread") > 1.2 * pair_us("linux-5.18", 8, "compact")
