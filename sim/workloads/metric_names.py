"""The names of the metrics a run reports, known before it runs: ``rank.metric``, ``vmapsim
capacity --metric`` and the run-file check use them. Kept apart from the model (nothing here
imports numpy or SimPy), so that ``vmapsim check`` stays quick; a test checks that a run of
each kind reports exactly these names."""

from __future__ import annotations

from sim.config.lib_test_vmalloc_params import NAMES, parse_test_mask, selected_tests
from sim.config.schema import RunConfig, VmallocTestModule
from sim.mm.safety import KINDS as SAFETY_KINDS

RUN_METRICS = (
    "ops_per_sec", "vmalloc_p50_ns", "vmalloc_p99_ns", "vmalloc_mean_ns", "vmalloc_p999_ns",
    "vmalloc_max_ns", "vfree_p50_ns", "vfree_p99_ns", "vfree_p999_ns", "vfree_max_ns",
    "set_memory_p50_ns", "set_memory_p99_ns", "set_memory_p999_ns", "set_memory_max_ns",
    "rt_latency_p99_ns", "rt_latency_max_ns", "preempt_off_p99_ns", "preempt_off_max_ns",
    "purges", "purge_mean_ns",
    "purge_max_ns", "purged_areas", "purged_nodes", "tlb_flush_full", "tlb_flush_range", "ipis",
    "vmap_area_lock_wait_ns", "vmap_area_lock_hold_max_ns", "vmap_area_lock_contentions",
    "purge_lock_contentions", "purge_lock_wait_ns", "purge_trylock_failures", "alloc_walk_mean",
    "lazy_pages_peak", "alloc_failures", "busy_areas_end")
"""The metrics every run reports (``Simulation.collect`` in sim/simulation.py), besides its
kind's own and the safety counts."""
HISTOGRAMS = ("vmalloc", "vfree", "set_memory", "purge", "preempt_off", "rt_latency")
"""The latency histograms a run file keeps: ``<name>_p<q>_ns`` metrics are their percentiles
(``p999`` the 99.9th), which the summary takes from the replications' merged buckets."""
SAFETY_METRICS = (*(f"safety_{kind}" for kind in SAFETY_KINDS), "safety_violations")
"""The safety checker's counts (``SafetyChecker.metrics``)."""
REPLAY_METRICS = ("replay_ops", "replay_late_ops", "replay_late_mean_ns", "replay_late_max_ns",
                  "replay_failed_allocs", "replay_skipped_frees", "replay_progress",
                  "replay_end_ns")
"""The metrics a replay adds to its run's (``ReplayState.metrics`` in sim/workloads/replay.py)."""


def test_vmalloc_metrics(workload: VmallocTestModule) -> tuple[str, ...]:
    """What ``module_metrics`` (sim/workloads/lib_test_vmalloc.py) reports for the tests
    ``workload`` selects."""
    chosen = selected_tests(parse_test_mask(workload.run_test_mask))
    return (*(f"{NAMES[i]}_{what}" for i in chosen for what in ("avg_usec", "failed")),
            "test_vmalloc_workers_cut")


def metric_names(config: RunConfig) -> tuple[str, ...]:
    """Every metric a run of ``config`` can report."""
    workload = config.workload
    own: tuple[str, ...] = ()
    if workload.kind == "trace":
        own = REPLAY_METRICS
    elif isinstance(workload, VmallocTestModule):
        own = test_vmalloc_metrics(workload)
    return RUN_METRICS + SAFETY_METRICS + own
