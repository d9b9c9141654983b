"""What one run may cost, checked before anything runs (``vmapsim check`` and ``run``).

A configuration the schema accepts can still describe a run that never ends in practice: costs
so small that simulated time barely advances, an interrupt rate of 1e300, centuries of
simulated time, or background areas that cannot fit the vmalloc space. Each limit here is a
:class:`Breach` naming the key at fault; the experiment loader turns it into one line. The
estimate of a run's operations is an upper bound from the machine's per-operation cost floor
and the workload's rates; it never simulates anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.config.schema import (
    ObjectChurn,
    RunConfig,
    TraceReplay,
    VmallocLoop,
    VmallocTestModule,
    largest_pages,
)
from sim.config.units import format_ns

MAX_SIMULATED_NS = 3600e9
"""Longest ``duration`` or ``warmup``: one hour of simulated time (a minute of a 64-CPU
machine is already hours of this simulator's time)."""
MAX_RUN_EVENTS = 2e8
"""Most operations and interrupts one run may simulate (about a day of CPU at the 20-40 us a
contended operation costs to simulate)."""
DEFAULT_BUDGET = 200
"""Schedules per scenario and variant that ``vmapsim verify`` explores by default."""
MAX_BUDGET = 1_000_000
"""Most schedules per scenario ``--budget`` may ask for."""
LONG_BUSY_LIST_OPS = 30_000
"""The most operations a test_vmalloc case adds to its loop (long_busy_list_alloc_test maps
and unmaps 15,000 areas around it)."""
MIN_OP_NS = 1.0
"""Smallest cost floor of one vmalloc or vfree: below it simulated time barely advances."""


@dataclass(frozen=True)
class Breach:
    """A limit a run configuration exceeds: the key path at fault and what is wrong."""

    path: tuple
    message: str


def check_limits(config: RunConfig) -> Breach | None:
    """The first limit ``config`` breaks, or None."""
    return (_times(config) or _op_floor(config) or _background(config)
            or _events(config) or _trace_warmup(config))


def op_floor_ns(config: RunConfig) -> float:
    """A lower bound on the simulated time of one vmalloc or vfree of one page: a lock
    acquisition and half of a vmalloc+vfree pair's fixed and per-page costs."""
    c = config.machine.costs
    pair = (c.vmalloc_fixed_ns + c.page_alloc_ns + c.page_free_ns + c.map_page_ns
            + c.unmap_page_ns)
    return c.lock_acquire_ns + pair / 2


def _times(config: RunConfig) -> Breach | None:
    for key in ("duration", "warmup"):
        value = getattr(config, key)
        if value > MAX_SIMULATED_NS:
            return Breach((key,), f"expected at most {MAX_SIMULATED_NS / 1e9:.0f}s (an hour) "
                                  f"of simulated time, found {value / 1e9:.3g}s")
    return None


def _op_floor(config: RunConfig) -> Breach | None:
    floor = op_floor_ns(config)
    if floor < MIN_OP_NS:
        return Breach(("machine", "costs"), f"one vmalloc or vfree costs at least {floor:.3g} "
                      "ns in this profile (lock_acquire_ns plus half of vmalloc_fixed_ns and the "
                      f"page costs); expected at least {MIN_OP_NS:g} ns, or simulated time "
                      "barely advances")
    return None


def _background(config: RunConfig) -> Breach | None:
    """Background areas are placed back to back, each with its guard page."""
    bg = config.workload.background
    need = bg.count * (largest_pages(bg.size) + 1)
    space = config.machine.vmalloc_space
    if bg.count and need > space:
        return Breach(("workload", "background"),
                      f"{bg.count} background areas of up to {largest_pages(bg.size)} pages "
                      f"(plus guard pages) can need {need} pages, more than the vmalloc space "
                      f"({space} pages)")
    return None


def estimated_events(config: RunConfig) -> tuple[float, tuple]:
    """An upper bound on the operations and interrupts one run simulates, and the key that
    contributes most (the duration, or a rate)."""
    span = config.warmup + config.duration
    per_cpu = {("duration",): _ops_per_ns(config) * span,
               ("workload", "irq_noise", "rate"): config.workload.irq_noise.rate * span / 1e9}
    if isinstance(config.workload, VmallocLoop):
        per_cpu[("workload", "set_memory_rate")] = config.workload.set_memory_rate * span / 1e9
    total = config.cpus * sum(per_cpu.values())
    finite = _finite_total(config)
    if finite is not None and finite < total:
        return finite, ("duration",)
    worst = max(per_cpu, key=per_cpu.__getitem__)
    if worst == ("duration",) and config.warmup > config.duration:
        worst = ("warmup",)
    return total, worst


def _ops_per_ns(config: RunConfig) -> float:
    """Operations per simulated ns one CPU can issue at most."""
    floor = op_floor_ns(config)
    workload = config.workload
    if isinstance(workload, VmallocLoop):
        return 1.0 / (floor + workload.think_time)
    if isinstance(workload, ObjectChurn):
        calls = sum(obj.rate / 1e9 * (2 + len(obj.on_alloc) + len(obj.on_free))
                    for obj in workload.objects)
        return min(calls, 1.0 / floor)
    return 1.0 / floor


def _finite_total(config: RunConfig) -> float | None:
    """Operations of a workload that ends by itself (None: it runs for its duration)."""
    workload = config.workload
    if isinstance(workload, TraceReplay) and not workload.loop:
        from sim.config.trace_csv import load_trace

        return float(load_trace(workload.trace).records)
    if isinstance(workload, VmallocTestModule):
        from sim.config.lib_test_vmalloc_params import parse_test_mask, selected_tests

        cases = len(selected_tests(parse_test_mask(workload.run_test_mask)))
        per_case = 2.0 * workload.test_loop_count + LONG_BUSY_LIST_OPS
        return max(1, workload.nr_threads) * cases * workload.test_repeat_count * per_case
    return None


def _events(config: RunConfig) -> Breach | None:
    events, key = estimated_events(config)
    if events > MAX_RUN_EVENTS:
        return Breach(key, f"this run would simulate about {events:.2g} operations and "
                           f"interrupts, more than the {MAX_RUN_EVENTS:.0e} one run may "
                           "(shorten the duration, lower the rate, or use fewer CPUs)")
    return None


def _trace_warmup(config: RunConfig) -> Breach | None:
    """An open-loop replay that has ended before its warm-up has no measured window."""
    workload = config.workload
    if not isinstance(workload, TraceReplay) or workload.loop or workload.mode != "open_loop":
        return None
    from sim.config.trace_csv import load_trace

    span = load_trace(workload.trace).span_ns / workload.speed
    if config.warmup >= span:
        return Breach(("warmup",), f"expected a warm-up shorter than the trace it replays "
                                   f"({format_ns(span)} at speed {workload.speed:g}; or set "
                                   f"loop: true), found {format_ns(config.warmup)}")
    return None
