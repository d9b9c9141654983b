"""Calibration: single-CPU test_vmalloc averages against Uladzislau Rezki's published figures.

Rezki's "pc638" numbers (LKML, Re: "[PATCH] mm/vmalloc: Fix unlock order in s_stop()", 14 Dec
2020; cost model 5) were taken on a 5.10-era kernel, whose mechanisms are those of the
``linux-5.4`` preset (augmented free tree, lazy areas out of the busy tree, mutex purge lock,
an llist of lazy areas: the sorted purge tree came in 5.11). Each test runs alone on one CPU of
the ``desktop-8c16t`` profile with a small ``test_loop_count``; the per-iteration figure is the
time of the test's loop divided by its loops (its setup, under 2% of a 1,000,000-loop run,
left out), which the loop counts below make span at least one lazy purge.
"""

from __future__ import annotations

import pytest
import yaml

from sim.config.loader import catalog_dir
from sim.config.schema import RunConfig
from sim.mm.variants import presets
from sim.simulation import Simulation
from sim.workloads.lib_test_vmalloc import module_run

REFERENCE_US = {
    # test: (us per iteration on pc638, loops simulated)
    "fix_size_alloc_test": (0.430, 4500),
    "full_fit_alloc_test": (0.566, 4500),
    "fix_align_alloc_test": (1.370, 2000),
    "random_size_alloc_test": (3.853, 1000),
    "long_busy_list_alloc_test": (7.664, 1000),
}
BOUND = 0.30
PRESET = "linux-5.4"
PROFILE = "desktop-8c16t"


def per_iteration_us(test: str, loops: int) -> float:
    """Simulated loop time per iteration (us) of ``test`` alone on one CPU."""
    machine = yaml.safe_load((catalog_dir("cpus") / f"{PROFILE}.yaml").read_text())
    config = RunConfig.model_validate({
        "machine": machine, "variant": presets()[PRESET], "cpus": 1, "duration": "60s",
        "workload": {"name": "calibration", "kind": "test_vmalloc", "run_test_mask": [test],
                     "test_loop_count": loops}})
    sim = Simulation(config, (2020, 12, 14))
    metrics = sim.run()
    assert metrics["safety_violations"] == 0 and metrics["purges"] >= 1
    data = module_run(sim.control).report()["workers"][0]["tests"][test]
    assert data["passed"] == 1
    return data["loop_ns"] / loops / 1e3


@pytest.mark.parametrize("test", list(REFERENCE_US))
def test_single_cpu_average_within_30_percent_of_rezki_2020(test: str) -> None:
    reference, loops = REFERENCE_US[test]
    simulated = per_iteration_us(test, loops)
    assert simulated == pytest.approx(reference, rel=BOUND), \
        f"{test}: simulated {simulated:.3f} us per iteration, pc638 {reference:.3f} us"
