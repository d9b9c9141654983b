"""Trace replay: the ``trace`` workload kind replays a recorded stream of vmalloc-layer calls.

The trace file, its format and its checks are sim/config/trace_csv.py. Each CPU replays its
own records in order (``cpu_map: fold`` folds trace CPU ``c`` onto ``c % cpus``). Open loop:
an operation starts at its recorded offset from the trace's first record (divided by
``speed``), or when the CPU's previous operation returns if that is later (the lateness is
counted). Closed loop: back to back. A free of a handle allocated on another CPU waits until
that allocation has returned in simulated time. With ``loop: true`` the trace starts again
when it ends (each pass maps its own areas), until the run ends.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy

from sim.config.trace_csv import OPS, SET_MEMORY, VFREE, VM_MAP_RAM, VMALLOC, Trace, load_trace

if TYPE_CHECKING:
    from sim.config.schema import TraceReplay
    from sim.engine.cpu import Cpu
    from sim.mm.vmalloc import VmallocModel
    from sim.workloads.common import Control


# --- replay --------------------------------------------------------------------------------

class ReplayState:
    """What the CPUs replaying one trace in one run share: mapped handles, the frees waiting
    for another CPU's allocation, and the replay statistics."""

    def __init__(self, env: simpy.Environment, vm: VmallocModel, trace: Trace,
                 workload: TraceReplay) -> None:
        ncpus = vm.machine.ncpus
        self.env = env
        self.vm = vm
        self.trace = trace
        fold = workload.cpu_map == "fold"
        self.schedule = trace.schedule(ncpus, fold, workload.speed)
        owner = trace.replay_cpu(ncpus, fold)
        self.owner = owner.tolist()
        frees = np.flatnonzero(trace.ref >= 0)
        allocs = trace.ref[frees]
        self.cross = set(allocs[owner[allocs] != owner[frees]].tolist())
        """Allocations freed on another CPU: published only once their CPU's clock is there."""
        self.period = trace.period_ns() / workload.speed
        self.mapped: dict[tuple[int, int], Any] = {}
        """(pass, allocating record) -> what the allocation returned (None: it failed)."""
        self.waiting: dict[tuple[int, int], simpy.Event] = {}
        self.finished = [False] * ncpus
        self.ended: list[float | None] = [None if records else 0.0 for records in self.schedule]
        """When each CPU returned from its last record (0: it has none; None: not yet)."""
        self.counts = [[0] * len(OPS) for _ in range(ncpus)]
        """Operations issued per CPU and op over the whole run (warm-up included)."""
        self.issued = 0
        self.window = -1.0
        self.reset_window()

    def reset_window(self) -> None:
        """Window statistics start again (at the end of the warm-up)."""
        self.window = self.vm.metrics.window_start
        self.ops = 0
        self.late_ops = 0
        self.late_total = 0.0
        self.late_max = 0.0
        self.failed = 0
        self.skipped = 0

    def sync_window(self) -> None:
        if self.window != self.vm.metrics.window_start:
            self.reset_window()

    def started(self, late_ns: float) -> None:
        """An operation started ``late_ns`` after its recorded offset (open loop)."""
        self.sync_window()
        if late_ns > 0:
            self.late_ops += 1
            self.late_total += late_ns
            self.late_max = max(self.late_max, late_ns)

    def wait_for(self, cpu: Cpu, key: tuple[int, int]) -> Generator[simpy.Event, None, None]:
        """Wait until the allocation ``key`` has returned, or its CPU has stopped."""
        if key in self.mapped or self.finished[self.owner[key[1]]]:
            return
        event = self.waiting.get(key)
        if event is None:
            event = self.waiting[key] = self.env.event()
        yield from cpu.settle()
        yield event  # idle: handlers taken meanwhile leave their work to the free (see _idle)

    def allocated(self, key: tuple[int, int], result: Any) -> None:
        self.mapped[key] = result
        if result is None:
            self.sync_window()
            self.failed += 1
        event = self.waiting.pop(key, None)
        if event is not None:
            event.succeed()

    def take(self, key: tuple[int, int]) -> Any:
        """What the allocation ``key`` mapped, now freed; None if there is nothing to free."""
        result = self.mapped.pop(key, None)
        if result is None:
            self.sync_window()
            self.skipped += 1
        return result

    def stopped(self, cpu_id: int) -> None:
        """CPU ``cpu_id`` issues no more operations: frees waiting for it give up."""
        self.finished[cpu_id] = True
        for key in [k for k in self.waiting if self.owner[k[1]] == cpu_id]:
            self.waiting.pop(key).succeed()

    def issue(self, cpu: Cpu, op: int, pages: int, key: tuple[int, int], ref_key: tuple[int, int]
              ) -> Generator[simpy.Event, None, None]:
        """One recorded operation on the vmalloc model."""
        vm = self.vm
        if op in (VMALLOC, VM_MAP_RAM):
            mapped = yield from (vm.vmalloc(cpu, pages) if op == VMALLOC
                                 else vm.vm_map_ram(cpu, pages))
            if key[1] in self.cross:
                yield from cpu.settle()  # the other CPU sees it when this CPU returns
            self.allocated(key, mapped)
        elif op == SET_MEMORY:
            yield from vm.set_memory(cpu, pages)
        else:
            area = self.take(ref_key)
            if area is not None and op == VFREE:
                yield from vm.vfree(cpu, area)
            elif area is not None:
                yield from vm.vm_unmap_ram(cpu, area)
        self.counts[cpu.id][op] += 1
        self.issued += 1
        self.sync_window()
        self.ops += 1

    def metrics(self) -> dict[str, float]:
        """The replay's metrics over the measurement window."""
        self.sync_window()
        return {
            "replay_ops": self.ops,
            "replay_late_ops": self.late_ops,
            "replay_late_mean_ns": self.late_total / self.ops if self.ops else 0.0,
            "replay_late_max_ns": self.late_max,
            "replay_failed_allocs": self.failed,
            "replay_skipped_frees": self.skipped,
            "replay_progress": self.issued / self.trace.records,
            "replay_end_ns": math.nan if None in self.ended else max(self.ended),
        }

    def op_counts(self) -> dict[int, dict[str, int]]:
        """Operations issued per CPU and op, over the whole run (as :meth:`Trace.counts`)."""
        return {cpu: {OPS[op]: n for op, n in enumerate(ops) if n}
                for cpu, ops in enumerate(self.counts) if any(ops)}


_states: weakref.WeakKeyDictionary[Control, ReplayState] = weakref.WeakKeyDictionary()


def replay_state(control: Control) -> ReplayState | None:
    """The replay state of the run whose workload processes share ``control``."""
    return _states.get(control)


def replay_metrics(control: Control) -> dict[str, float]:
    """The replay metrics of a run (none if its workload replays no trace)."""
    state = _states.get(control)
    return state.metrics() if state is not None else {}


def trace_replay(env: simpy.Environment, cpu: Cpu, vm: VmallocModel, workload: TraceReplay,
                 rng: np.random.Generator, control: Control
                 ) -> Generator[simpy.Event, None, None]:
    """The SimPy process of one CPU replaying its records of a ``trace`` workload (``rng``
    is unused: a replay draws nothing)."""
    state = _states.get(control)
    if state is None:
        trace = load_trace(workload.trace)
        if trace.sha256 != workload.trace_sha256:
            raise RuntimeError(f"{workload.trace} changed since the run was configured")
        state = _states[control] = ReplayState(env, vm, trace, workload)
    try:
        done = yield from _replay(cpu, state, workload.mode == "open_loop", workload.loop,
                                  control)
        yield from cpu.settle()
        if done:
            state.ended[cpu.id] = cpu.env.now
    finally:
        state.stopped(cpu.id)


def _idle_until(cpu: Cpu, target: float) -> Generator[simpy.Event, None, None]:
    """The CPU idles until ``target``. Interrupt handlers taken meanwhile stay queued, so the
    work they leave behind (a TLB refill after a full flush) is paid inside the next
    operation, which starts on time."""
    yield from cpu.settle()
    if target > cpu.env.now:
        yield cpu.env.timeout(target - cpu.env.now)


def _replay(cpu: Cpu, state: ReplayState, open_loop: bool, loop: bool, control: Control
            ) -> Generator[simpy.Event, None, bool]:
    """Issue the CPU's records (pass after pass with ``loop``); True once all are issued."""
    records = state.schedule[cpu.id]
    vm = state.vm
    passes = 0
    while records and not control.stop:
        base = passes * state.period
        for offset, op, pages, index, ref in records:
            target = base + offset
            if open_loop and vm.now(cpu) < target:
                yield from _idle_until(cpu, target)
            if ref >= 0:
                yield from state.wait_for(cpu, (passes, ref))
            if control.stop:
                return False
            if open_loop:
                state.started(vm.now(cpu) - target)
            yield from state.issue(cpu, op, pages, (passes, index), (passes, ref))
        if not loop:
            return True
        passes += 1
    return not records
