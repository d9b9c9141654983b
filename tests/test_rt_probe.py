"""The rt_probe (a cyclictest-like thread per CPU) and the preemption models: exact traces of
where a woken probe gets its CPU, and the laws of its latency against a purge.

full (CONFIG_PREEMPT): wherever the task's preempt_count falls to zero; none
(CONFIG_PREEMPT_NONE): only at cond_resched() points, cond_resched_lock() breaks, blocking and
returns to user space; voluntary adds might_sleep() points.
"""

from __future__ import annotations

import pytest

import sim
from sim.config.schema import RtProbe, RunConfig
from sim.mm.variants import presets
from sim.simulation import Simulation
from sim.workloads.common import Control
from sim.workloads.rt_probe import rt_probe
from tests.test_drain_logic import COSTS, FIX_SIZE, MACHINE
from tests.test_safety import at

HOLD = 50_000.0
WAKE = COSTS["ipi_handler_ns"] + COSTS["mutex_wake_ns"]
"""From a timer's expiry to the probe thread asking for its CPU."""


def build(preemption: str) -> Simulation:
    config = RunConfig.model_validate({
        "machine": {**MACHINE, "preemption": preemption},
        "workload": {**FIX_SIZE, "background": {"count": 0}}, "variant": presets()["linux-4.7"],
        "cpus": 2, "duration": 1e6})
    model = Simulation(config, (0,))
    for cpu in model.cpus:
        cpu.preemption = preemption
    return model


EXPIRY = 100_000.0
"""The probe's first expiry on CPU 0 (its interval: CPU n's first is ``(1 + n / cpus)``
intervals), 10 us into the task's section."""
START = EXPIRY - 10_000.0


def probe_once(model: Simulation) -> None:
    """One probe thread on CPU 0 whose first timer expires at ``EXPIRY``."""
    model.env.process(rt_probe(model.env, model.cpus[0], model.vm, RtProbe(interval=EXPIRY),
                               model.metrics, Control()))


def task(model: Simulation, times: dict[str, float], locked: bool):
    """CPU 0's task: ``HOLD`` ns of work (under ``cpa_lock`` if ``locked``), then a
    ``cond_resched()``, then 1 us more."""
    cpu, lock = model.cpus[0], model.vm.cpa_lock

    def body():
        if locked:
            yield from cpu.spin_lock(lock)
        cpu.charge(HOLD)
        if locked:
            yield from cpu.spin_unlock(lock)
        else:
            yield from cpu.settle()
        times["section_end"] = model.env.now
        cpu.charge(200.0)
        yield from cpu.settle()
        times["resched"] = model.env.now
        yield from cpu.cond_resched()
        cpu.charge(1000.0)
        yield from cpu.settle()
    return at(model, START, body)


def probed(preemption: str, locked: bool) -> tuple[float, dict[str, float]]:
    """The probe's one latency beside the task's section, and the task's times."""
    model = build(preemption)
    times: dict[str, float] = {}
    probe_once(model)
    model.env.run(until=task(model, times, locked))
    assert model.metrics.rt_latency.n == 1
    return model.metrics.rt_latency.max, times


@pytest.mark.parametrize("preemption", ["full", "voluntary", "none"])
def test_a_probe_woken_in_a_spinlock_section_runs_at_its_end_under_full(preemption: str) -> None:
    latency, times = probed(preemption, locked=True)
    if preemption == "full":  # at the unlock: preempt_count back at zero
        assert latency == pytest.approx(times["section_end"] - EXPIRY)
    else:  # not at the unlock: at the cond_resched() after it
        assert latency == pytest.approx(times["resched"] - EXPIRY)
    assert latency > HOLD - (EXPIRY - START)


@pytest.mark.parametrize("preemption", ["full", "none"])
def test_a_probe_takes_a_preemptible_task_at_once_only_under_full(preemption: str) -> None:
    latency, times = probed(preemption, locked=False)
    if preemption == "full":
        assert latency == pytest.approx(WAKE)
    else:
        assert latency == pytest.approx(times["resched"] - EXPIRY)


def longest(variant: str, lazy_max_pages: int, preemption: str = "full") -> float:
    exp = sim.load_experiment("seed", [
        "sweep.cpus=[2]", "sweep.workload.background.count=[100]", "replications=1",
        "duration=4ms", "warmup=0", "workload.set_memory_rate=0",
        f"lazy_max_pages={lazy_max_pages}", f"variants=[{variant}]",
        "workload.rt_probe={interval: 50us}", f"machine.preemption={preemption}"])
    return sim.run(exp.specs()[0])["metrics"]["rt_latency_max_ns"]


def test_the_longest_wake_up_grows_with_a_spin_locked_purge_and_breaks_bound_it() -> None:
    """4.7 frees the lazy set under a spinlock: 32 times the lazy pages, several times the
    longest probe latency; 4.10's lock breaks (and its mutex) bound it under full
    preemption, whatever the lazy set."""
    small, large = longest("linux-4.7", 128), longest("linux-4.7", 4096)
    assert large > 4 * small
    bounded = longest("linux-4.10", 4096)
    assert bounded < large / 5 and bounded < 2 * longest("linux-4.10", 128)


def test_without_preemption_a_spinning_cpu_gets_no_break() -> None:
    """Under PREEMPT_NONE spin_needbreak() is 0: the purger breaks its free loop only for a
    task woken on its own CPU, so the other CPU, spinning on vmap_area_lock with preemption
    off, keeps its probe waiting longer than under full preemption."""
    assert longest("linux-4.10", 4096, "none") > 3 * longest("linux-4.10", 4096, "full")


def test_a_sleeping_task_lets_a_woken_kworker_run_in_every_model() -> None:
    """6.9 under none: tasks asleep on the purge mutex leave their CPUs to the purge helpers
    woken there (the run once hung in its drain, helpers waiting for an explicit point that
    a sleeping task never reached). The case of latency.yaml that found it."""
    exp = sim.load_experiment("latency", ["sweep.lazy_max_pages=[32768]",
                                          "sweep.machine.preemption=[none]",
                                          "variants=[linux-6.9]"])
    result = sim.run(exp.specs()[2])
    assert result["metrics"]["safety_violations"] == 0
    assert result["metrics"]["rt_latency_max_ns"] > 0


@pytest.mark.parametrize("preemption", ["full", "none"])
def test_a_kworker_runs_under_the_machines_preemption_model(preemption: str) -> None:
    """A purge run by a kworker (5.18's drain, 6.9's helpers) breaks its free loop by the
    machine's rules too: the kworker has the model of the tasks it shares the machine with."""
    from sim.mm.workqueue import Kworker

    model = build(preemption)
    kworker = Kworker(model.env, 1, 0, model.irq)
    assert kworker.preemption == preemption and kworker.metrics is model.metrics
