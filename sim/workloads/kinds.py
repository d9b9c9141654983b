"""The registry of workload kinds: for each ``kind`` of sim/config/schema.py, the SimPy process
one CPU runs, the metrics the kind adds to a run's own, and what it adds to the result file."""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import simpy

from sim.workloads.churn import object_churn
from sim.workloads.common import Control
from sim.workloads.lib_test_vmalloc import module_metrics, module_report, vmalloc_test_process
from sim.workloads.replay import replay_metrics, trace_replay
from sim.workloads.vmalloc_loop import vmalloc_loop


def _no_metrics(control: Control) -> dict[str, float]:
    return {}


@dataclass(frozen=True)
class Kind:
    """One workload kind."""

    process: Callable[..., Generator[simpy.Event, Any, Any]]
    """The SimPy process of one CPU, called as ``process(env, cpu, vm, workload, rng,
    control)`` with the CPU's own random stream."""
    metrics: Callable[[Control], dict[str, float]] = _no_metrics
    """Metrics the kind adds to a run's own, from the ``control`` its processes share."""
    report: Callable[[Control], dict[str, Any]] | None = None
    """What the kind adds to a run's result file, under the kind's name; None: nothing."""


KINDS: dict[str, Kind] = {
    "vmalloc_loop": Kind(vmalloc_loop),
    "trace": Kind(trace_replay, metrics=replay_metrics),
    "object_churn": Kind(object_churn),
    "test_vmalloc": Kind(vmalloc_test_process, metrics=module_metrics, report=module_report),
}
"""Every workload kind, by its ``kind`` name."""
