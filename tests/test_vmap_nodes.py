"""Linux 6.9's vmap nodes ("Mitigate a vmap lock contention" v3): per-node busy trees and
locks, ``addr_to_node_id``, and the contention they take off the busy-tree lock."""

from __future__ import annotations

import pydantic
import pytest
import simpy
import yaml

from sim.config import catalog_dir
from sim.locks import no_handoff
from sim.mm.variants import presets
from sim.mm.vmap_node import VmapNodes
from sim.run import Simulation
from sim.schema import RunConfig, Variant

MACHINE = yaml.safe_load((catalog_dir("cpus") / "xeon-2s-112.yaml").read_text())
FIX_SIZE = yaml.safe_load((catalog_dir("workloads") / "test_vmalloc-fix_size.yaml").read_text())


@pytest.mark.parametrize("cpus,nodes", [(1, 1), (4, 4), (112, 112), (128, 128), (256, 128)])
def test_one_node_per_cpu_at_most_128(cpus: int, nodes: int) -> None:
    assert len(VmapNodes(simpy.Environment(), cpus, no_handoff).nodes) == nodes


def test_addr_to_node_id_is_16_page_zones_round_robin() -> None:
    """addr_to_node_id(addr) = (addr / vmap_zone_size) % nr_vmap_nodes, 16-page zones."""
    vn = VmapNodes(simpy.Environment(), 4, no_handoff)
    ids = [vn.addr_to_node(addr).id for addr in (0, 15, 16, 31, 32, 48, 63, 64, 16 * 9 + 3)]
    assert ids == [0, 0, 1, 1, 2, 3, 3, 0, 1]
    assert len({id(node.lock.stat) for node in vn.nodes}) == 1  # one lock class


def test_vmap_nodes_need_the_augmented_free_tree() -> None:
    with pytest.raises(pydantic.ValidationError, match="vmap_nodes needs"):
        Variant.model_validate({**presets()["linux-5.4"], "name": "x", "vmap_nodes": True,
                                "allocator": "first_fit_cache"})


def busy_lock_contentions_per_cpu(variant: str, cpus: int) -> float:
    """test_vmalloc fix_size on every CPU: contentions of the busy-tree lock class per CPU
    (vmap_area_lock before 6.9, the nodes' busy.lock in 6.9)."""
    workload = {**FIX_SIZE, "live_per_cpu": 4}
    config = RunConfig.model_validate({"machine": MACHINE, "workload": workload,
                                       "variant": presets()[variant], "cpus": cpus,
                                       "duration": "1ms", "warmup": "100us"})
    sim = Simulation(config, (7, cpus))
    assert sim.run()["safety_violations"] == 0
    stats = sim.lock_stats()
    lock = "vmap_node.busy.lock" if sim.vm.nodes is not None else "vmap_area_lock"
    return stats[lock]["contentions"] / cpus


def test_per_node_lock_contention_per_cpu_falls_as_nodes_spread_the_load() -> None:
    """linux-6.9's vmap_area_lock (per-node lock) contention per CPU falls as nodes spread the
    load, and stays below linux-5.18's global vmap_area_lock at every CPU count."""
    new = [busy_lock_contentions_per_cpu("linux-6.9", cpus) for cpus in (2, 8, 32)]
    old = [busy_lock_contentions_per_cpu("linux-5.18", cpus) for cpus in (2, 8, 32)]
    assert new[0] > new[1] >= new[2]
    assert all(n < o for n, o in zip(new, old))
