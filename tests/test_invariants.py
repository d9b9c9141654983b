"""Model invariants on every preset, checked while the simulation runs: the busy/reserved space
holds exactly the background, live and lazily freed areas (give or take one area per CPU in the
middle of a vfree); vmap_lazy_nr counts the lazily freed pages not yet purged (give or take the
frees in flight) and never goes negative on a safe preset; a drained run ends with none left.

With vmap nodes (6.9) a range in a node's pool is free yet not in the free tree: it stays
reserved in ``vm.space`` until decayed back, so the pooled ranges are not counted as reserved
by live or lazy areas."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.config.loader import catalog_dir
from sim.config.schema import RunConfig
from sim.mm.variants import presets
from sim.simulation import Simulation

MACHINE = yaml.safe_load((catalog_dir("cpus") / "xeon-2s-112.yaml").read_text())
SEED = yaml.safe_load((catalog_dir("workloads") / "seed-i915.yaml").read_text())
UNSAFE = {"wilson-2016-v1", "pen-2016-no-purge-lock", "fernandes-2016-refcount"}
MAX_SIZE = 16 + 1  # largest seed-i915 area, guard page included


def check_invariants(sim: Simulation, background: int) -> None:
    vm, safety, ncpus = sim.vm, sim.safety, len(sim.cpus)
    live = len(vm.areas)
    lazy = list(safety._lazy.values())
    pooled = vm.nodes.pooled() if vm.nodes is not None else 0
    reserved = vm.space.count - background - pooled
    assert live + len(lazy) <= reserved <= live + len(lazy) + ncpus
    unsubtracted = sum(va.size for va in lazy if not va.subtracted)
    assert abs(vm.vmap_lazy_nr - unsubtracted) <= ncpus * MAX_SIZE
    if sim.config.variant.name not in UNSAFE:
        assert vm.vmap_lazy_nr >= 0


@pytest.mark.parametrize("name", list(presets()))
def test_invariants_hold_throughout(name: str) -> None:
    background = 300
    workload = {**SEED, "set_memory_rate": 3000, "background": {**SEED["background"],
                                                                 "count": background}}
    config = RunConfig.model_validate({"machine": MACHINE, "workload": workload,
                                       "variant": presets()[name], "cpus": 4,
                                       "lazy_max_pages": 64, "duration": "400us"})
    sim = Simulation(config, (9,))
    sim.start_workload()
    steps = 0
    while sim.env.peek() < config.duration:
        sim.env.step()
        steps += 1
        if steps % 97 == 0:
            check_invariants(sim, background)
    assert (sim.metrics.purge.n > 0) == (config.variant.lazy_list != "none")
    sim.drain()
    check_invariants(sim, background)
    assert not sim.safety._lazy and sim.vm.vmap_lazy_nr == 0
    if name not in UNSAFE:
        assert sim.safety.metrics()["safety_violations"] == 0


@settings(max_examples=10, deadline=None)
@given(name=st.sampled_from(sorted(set(presets()) - UNSAFE)), cpus=st.integers(1, 6),
       seed=st.integers(0, 10_000), lazy_max=st.sampled_from([8, 32, 256]))
def test_drained_runs_end_clean(name: str, cpus: int, seed: int, lazy_max: int) -> None:
    config = RunConfig.model_validate({
        "machine": MACHINE, "workload": {**SEED, "background": {"count": 100}},
        "variant": presets()[name], "cpus": cpus, "lazy_max_pages": lazy_max,
        "duration": "200us"})
    sim = Simulation(config, (seed,))
    metrics = sim.run()
    assert metrics["safety_violations"] == 0
    check_invariants(sim, 100)
    assert not sim.safety._lazy and sim.vm.vmap_lazy_nr == 0
