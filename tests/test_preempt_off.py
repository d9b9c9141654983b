"""Sections run with preemption off (``preempt_count`` above zero: a spinlock held or spun on,
an IPI wait): an exact trace, and the law a spin-locked purge follows.

``preempt_off_max_ns`` and ``preempt_off_p99_ns`` are the first step of the latency a
real-time task would see: nothing can take a CPU inside such a section.
"""

from __future__ import annotations

import sim
from tests.test_drain_logic import build
from tests.test_kworker_preemption import HOLD, hold_then_work


def test_a_spinlock_section_is_recorded_whole() -> None:
    """A 50 us ``cpa_lock`` hold, nested in nothing, is one section of exactly 50 us."""
    model = build("linux-4.7")
    times: dict[str, float] = {}
    model.env.run(until=hold_then_work(model, times))
    assert model.metrics.preempt_off.n == 1
    assert model.metrics.preempt_off.max == HOLD == times["unlocked"] - times["locked"]


def test_nested_sections_are_one() -> None:
    """preempt_disable() inside a spinlock section ends no section: only the outermost
    enable does."""
    model = build("linux-4.7")
    cpu = model.cpus[0]
    cpu.preempt_disable()
    cpu.charge(1000.0)
    cpu.preempt_disable()
    cpu.preempt_enable()
    assert model.metrics.preempt_off.n == 0
    cpu.preempt_enable()
    assert model.metrics.preempt_off.n == 1


def longest(variant: str, lazy_max_pages: int) -> float:
    exp = sim.load_experiment("seed", [
        "sweep.cpus=[2]", "sweep.workload.background.count=[100]", "replications=1",
        "duration=4ms", "warmup=0", "workload.set_memory_rate=0",
        f"lazy_max_pages={lazy_max_pages}", f"variants=[{variant}]"])
    return sim.run(exp.specs()[0])["metrics"]["preempt_off_max_ns"]


def test_a_spin_locked_purge_grows_the_longest_section_with_the_lazy_set() -> None:
    """4.7 frees the whole lazy set under ``purge_lock``, a spinlock: 32 times the lazy
    pages, a longest section several times longer (about 9 us -> 90 us here); 4.10's mutex
    and ``cond_resched_lock`` breaks keep it short whatever the lazy set."""
    small, large = longest("linux-4.7", 128), longest("linux-4.7", 4096)
    assert large > 5 * small
    assert longest("linux-4.10", 4096) < large / 5
