"""The kernel's vmalloc test module, lib/test_vmalloc.c, as the ``test_vmalloc`` workload kind.

Models the module as of Linux 6.3-6.13 (torvalds/linux @ 0791faebfe75, "B" in the reference
notes): ``nr_threads`` kthreads ("vmalloc_test/%d"; 0 is clamped to 1, as
``init_test_configurtion`` does) each run the test cases ``run_test_mask`` selects, in the
order of ``test_case_array`` with ``sequential_test_order``, otherwise shuffled by each worker
with its own random stream (``shuffle_array``). Each selected case runs ``test_repeat_count``
times; its time is the ``ktime_us_delta`` over all repeats divided by the repeat count, in
integer microseconds; a repeat that returns non-zero counts as failed. The module's kthreads are
not pinned; the model puts worker ``i`` on the ``i % cpus``-th CPU of the workload's
``placement`` order (``Machine.placement``: by default spread over LLC domains and cores before
SMT siblings, as the scheduler spreads busy tasks); workers sharing a CPU take turns after each
loop iteration (the kernel's scheduler would time-slice them).

Output: per worker the module's ``Summary: <test> passed: N failed: N repeat: R loops: L avg: T
usec`` lines, in ``test_case_array`` order, then ``All test took worker<i>=<c> cycles`` with
``c`` the worker's simulated time at :data:`NOMINAL_TSC_HZ` (``get_cycles()`` reads the TSC).

The cases, each a generator returning True (passed), False (failed) or None (the run's
``duration`` cap stopped it):

``fix_size_alloc_test``
    ``vmalloc(nr_pages)`` (``vmalloc_huge`` with ``use_huge``: from 512 pages up, PMD-aligned
    and rounded up to 2 MiB; the pages are still costed as 4 KiB pages), write, ``vfree``.
``full_fit_alloc_test``
    ``junk_length = fls(num_online_cpus()) * 32 MiB / PAGE_SIZE`` pairs of 1-page vmallocs,
    the junk half freed (holes), then the loop of 1-page vmalloc + vfree, then the rest freed.
``long_busy_list_alloc_test``
    15000 1-page areas first; loop: vmalloc(100 pages) + vmalloc(1 page), both freed.
``random_size_alloc_test``
    loop: vmalloc of ``get_random_u32_inclusive(1, 100)`` pages, vfree.
``fix_align_alloc_test``
    loop: ``__vmalloc_node(5 pages, THREAD_ALIGN << 1, __GFP_ZERO)``, vfree (x86_64
    ``THREAD_SIZE`` 16 KiB without KASAN: 8-page alignment).
``random_size_align_alloc_test``
    loop: ``rnd = get_random_u8()``; ``align = 1 << (rnd % 23)`` bytes, ``rnd % 10 + 1``
    pages, zeroed.
``align_shift_alloc_test``
    one page, zeroed, at alignment ``1 << i`` bytes for i = 0..63; fails at the first
    alignment the space cannot meet ("This test case is supposed to be failed"). The model's
    space starts at page 0, so the first failure is at 2^45 bytes (x86_64's
    ``VMALLOC_START`` puts it at 2^46): 45 allocations before it instead of 46.
``pcpu_alloc_test``
    35000 ``__alloc_percpu(1..PAGE_SIZE/4 bytes, align 2^(1..11))``, then all freed:
    :class:`PercpuAllocator`.
``kvfree_rcu_1_arg_vmalloc_test``, ``kvfree_rcu_2_arg_vmalloc_test``
    loop: vmalloc(1 page), ``kvfree_rcu``: :class:`KfreeRcuCpu`. Both forms go through the
    per-CPU bulk array; the fallbacks taken when no bulk page can be had (the 1-argument form's
    inline ``synchronize_rcu()``, the 2-argument form's ``rcu_head`` list) are not modelled, as
    page allocation never fails in the model.
``vm_map_ram_test``
    ``nr_pages`` pages bulk-allocated once; loop: ``vm_map_ram``, write, ``vm_unmap_ram``
    (``VmallocModel.vm_map_ram`` / ``vm_unmap_ram``, sim/mm/vmap_block.py).

A case's setup (its pointer arrays, the junk and busy areas) is timed with it, as in the module.
Besides the module's figures each test records the time of its loop alone (``loop_ns``, summed
over repeats): over 1,000,000 loops setup is at most ~2% of a test, so the loop time per
iteration is what the module's average per loop measures, without running a million loops.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy

from sim.config.lib_test_vmalloc_params import (
    NAMES,
    TESTS,
    fix_size_request,
    parse_test_mask,
    selected_tests,
    workers_of,
)
from sim.engine.cpu import Cpu
from sim.engine.fastpath import LeanProcess
from sim.mm.kvfree_rcu import KfreeRcuCpu
from sim.mm.percpu import PercpuAllocator, PercpuChunk
from sim.mm.vmalloc import PAGES_PER_32MIB, VmallocModel, fls
from sim.mm.vmap_area import VmapArea
from sim.workloads.common import Control, Stream

if TYPE_CHECKING:
    from sim.config.schema import VmallocTestModule

Gen = Generator[simpy.Event, None, None]
Outcome = Generator[simpy.Event, None, bool | None]

PAGE_SIZE = 4096
PAGE_SHIFT = 12
BITS_PER_LONG = 64
THREAD_ALIGN_PAGES = 4
"""x86_64 ``THREAD_SIZE`` (16 KiB, ``THREAD_SIZE_ORDER`` 2 without KASAN) = ``THREAD_ALIGN``."""
LONG_BUSY_AREAS = 15000
PCPU_OBJECTS = 35000
NOMINAL_TSC_HZ = 3.0e9
"""The TSC rate at which simulated time becomes ``get_cycles()`` cycles: a nominal 3 GHz
(the profiles carry no clock rate)."""


# --- parameters ---------------------------------------------------------------------------


def align_pages(align_bytes: int) -> int:
    """A byte alignment as pages (anything below a page is page alignment)."""
    return max(1, align_bytes >> PAGE_SHIFT)


def array_pages(entries: int) -> int:
    """Pages of ``vmalloc(sizeof(void *) * entries)``."""
    return -(-8 * entries // PAGE_SIZE)


def shuffle_array(order: list[int], rng: np.random.Generator) -> None:
    """The module's ``shuffle_array``: for i from n-1 down to 1, swap with
    ``j = get_random_u32_below(i)`` (so never with itself)."""
    for i in range(len(order) - 1, 0, -1):
        j = int(rng.integers(0, i))
        order[i], order[j] = order[j], order[i]


# --- one run of the module ----------------------------------------------------------------

@dataclass
class TestData:
    """``struct test_case_data`` of one worker and test, plus the loop time."""

    passed: int = 0
    failed: int = 0
    avg_usec: int = 0
    loop_ns: float = 0.0
    ran: bool = False
    cut: bool = False


@dataclass
class WorkerRecord:
    """What one worker reports."""

    worker: int
    cpu: int
    order: list[str] = field(default_factory=list)
    start_ns: float = 0.0
    stop_ns: float = 0.0
    tests: dict[int, TestData] = field(default_factory=dict)

    @property
    def cycles(self) -> int:
        return int((self.stop_ns - self.start_ns) * NOMINAL_TSC_HZ / 1e9)


class ModuleRun:
    """State the workers of one run share: parameters, the percpu allocator, the per-CPU
    kvfree_rcu batches and the CPUs' run queues, and the workers' records."""

    def __init__(self, env: simpy.Environment, vm: VmallocModel,
                 workload: VmallocTestModule) -> None:
        self.env = env
        self.vm = vm
        self.workload = workload
        self.mask = parse_test_mask(workload.run_test_mask)
        self.tests = selected_tests(self.mask)
        self.nr_threads = workers_of(workload.nr_threads)
        order = vm.machine.placement(workload.placement)
        self.slot_of = {cpu: i for i, cpu in enumerate(order)}
        """CPU id -> its position in the placement order (worker i runs at position
        i % cpus)."""
        self.records: list[WorkerRecord] = []
        self.notes: list[str] = []
        self._pcpu: PercpuAllocator | None = None
        self._krc: dict[int, KfreeRcuCpu] = {}
        self.runqueues: dict[int, simpy.Resource] = {}

    @property
    def pcpu(self) -> PercpuAllocator:
        if self._pcpu is None:
            self._pcpu = PercpuAllocator(self.env, self.vm, self.workload.pcpu_unit_size)
        return self._pcpu

    def krc(self, cpu_id: int) -> KfreeRcuCpu:
        if cpu_id not in self._krc:
            self._krc[cpu_id] = KfreeRcuCpu(self.env, self.vm, cpu_id,
                                            self.workload.rcu_grace_period,
                                            self.workload.kfree_drain_delay)
        return self._krc[cpu_id]

    def quiesce(self, cpu: Cpu) -> Gen:
        """Wait for the deferred frees the workers started (kvfree_rcu batches of this CPU,
        percpu chunk destruction), so that the run ends with them done."""
        if cpu.id in self._krc:
            yield from self._krc[cpu.id].barrier()
        if self._pcpu is not None:
            yield from self._pcpu.quiesce()

    def report(self) -> dict[str, Any]:
        """The run's result: Summary lines, per-worker records, notes."""
        records = sorted(self.records, key=lambda r: r.worker)
        return {
            "summary": summary_lines(records, self.tests, self.workload),
            "workers": [{"worker": r.worker, "cpu": r.cpu, "order": r.order,
                         "start_ns": r.start_ns, "stop_ns": r.stop_ns, "cycles": r.cycles,
                         "tests": {NAMES[i]: vars(d) for i, d in sorted(r.tests.items())}}
                        for r in records],
            "notes": list(self.notes),
            "nominal_tsc_hz": NOMINAL_TSC_HZ,
        }


def summary_lines(records: list[WorkerRecord], tests: list[int],
                  workload: VmallocTestModule) -> list[str]:
    """The module's printk lines, worker by worker, tests in ``test_case_array`` order."""
    lines = []
    for record in records:
        for i in tests:
            d = record.tests.get(i, TestData())
            lines.append(f"Summary: {NAMES[i]} passed: {d.passed} failed: {d.failed} repeat: "
                         f"{workload.test_repeat_count} loops: {workload.test_loop_count} "
                         f"avg: {d.avg_usec} usec")
        lines.append(f"All test took worker{record.worker}={record.cycles} cycles")
    return lines


class Worker:
    """One ``vmalloc_test/<i>`` kthread: ``test_func``."""

    def __init__(self, run: ModuleRun, index: int, cpu: Cpu, rng: np.random.Generator,
                 control: Control) -> None:
        self.run = run
        self.vm = run.vm
        self.env = run.env
        self.cpu = cpu
        self.rng = rng
        self.control = control
        self.params = run.workload
        self.record = WorkerRecord(index, cpu.id)
        self.runq = run.runqueues.get(cpu.id)
        self.turn: simpy.Request | None = None
        self.data = TestData()
        self._loop_began = 0.0

    def now(self) -> float:
        return self.vm.now(self.cpu)

    def main(self) -> Gen:
        order = list(range(len(TESTS)))
        if not self.params.sequential_test_order:
            shuffle_array(order, self.rng)
        if self.runq is not None:
            self.turn = self.runq.request()
            yield self.turn
        self.record.start_ns = self.now()
        for index in order:
            if not self.run.mask >> index & 1:
                continue
            self.record.order.append(NAMES[index])
            if not (yield from self.run_test(index)):
                break
        self.record.stop_ns = self.now()
        self.run.records.append(self.record)
        if self.runq is not None:
            yield from self.cpu.settle()
            self.runq.release(self.turn)
        yield from self.run.quiesce(self.cpu)
        yield from self.cpu.settle()

    def run_test(self, index: int) -> Generator[simpy.Event, None, bool]:
        """``test_repeat_count`` runs of one case, timed as the module does; False if the run's
        duration cap stopped it."""
        self.data = self.record.tests[index] = TestData(ran=True)
        kt = self.now()
        for _ in range(self.params.test_repeat_count):
            outcome = yield from CASES[index](self)
            if outcome is None:
                self.data.cut = True
                self.run.notes.append(f"worker {self.record.worker}: the duration cap stopped "
                                      f"{NAMES[index]}")
                return False
            if outcome:
                self.data.passed += 1
            else:
                self.data.failed += 1
        delta_us = int((self.now() - kt) // 1000)  # ktime_us_delta()
        self.data.avg_usec = delta_us // self.params.test_repeat_count
        return True

    # --- helpers of the cases -------------------------------------------------------------

    def tick(self) -> Generator[simpy.Event, None, bool]:
        """Between loop iterations: False once the run is stopping; a CPU shared by several
        workers goes to the next one."""
        if self.control.stop:
            return False
        if self.runq is not None and len(self.runq.queue):
            yield from self.cpu.settle()
            self.runq.release(self.turn)
            self.turn = self.runq.request()
            yield self.turn
        return True

    def loop_began(self) -> None:
        self._loop_began = self.now()

    def loop_ended(self) -> None:
        self.data.loop_ns += self.now() - self._loop_began

    def vmalloc(self, pages: int, align: int = 1, zero: bool = False
                ) -> Generator[simpy.Event, None, VmapArea | None]:
        return (yield from self.vm.vmalloc(self.cpu, pages, align=align, zero=zero))

    def vfree(self, va: VmapArea | None) -> Gen:
        if va is not None:  # vfree(NULL) does nothing
            yield from self.vm.vfree(self.cpu, va)

    def loop(self, body: Callable[[], Outcome]) -> Outcome:
        """``for (i = 0; i < test_loop_count; i++) body``: None if stopped, False at the first
        failing iteration."""
        self.loop_began()
        for _ in range(self.params.test_loop_count):
            if not (yield from self.tick()):
                return None
            if not (yield from body()):
                self.loop_ended()
                return False
        self.loop_ended()
        return True


# --- the cases ------------------------------------------------------------------------------

def fix_size_alloc_test(w: Worker) -> Outcome:
    pages, align = fix_size_request(w.params.nr_pages, w.params.use_huge)

    def body() -> Outcome:
        va = yield from w.vmalloc(pages, align)
        if va is None:
            return False
        yield from w.vfree(va)
        return True

    return (yield from w.loop(body))


def one_page_loop(w: Worker) -> Outcome:
    """``tmp = vmalloc(1 * PAGE_SIZE); *tmp = 1; vfree(tmp);`` in a loop."""
    def body() -> Outcome:
        va = yield from w.vmalloc(1)
        if va is None:
            return False
        yield from w.vfree(va)
        return True

    return (yield from w.loop(body))


def full_fit_alloc_test(w: Worker) -> Outcome:
    junk_length = fls(w.vm.machine.ncpus) * PAGES_PER_32MIB
    ptr_array = yield from w.vmalloc(array_pages(junk_length))
    if ptr_array is None:
        return False
    junk_array = yield from w.vmalloc(array_pages(junk_length))
    if junk_array is None:
        yield from w.vfree(ptr_array)
        return False
    ptr: list[VmapArea | None] = []
    junk: list[VmapArea | None] = []
    for _ in range(junk_length):
        if w.control.stop:
            return None
        ptr.append((yield from w.vmalloc(1)))
        junk.append((yield from w.vmalloc(1)))
    for va in junk:
        yield from w.vfree(va)
    outcome = yield from one_page_loop(w)
    if outcome is None:
        return None
    for va in ptr:
        yield from w.vfree(va)
    yield from w.vfree(ptr_array)
    yield from w.vfree(junk_array)
    return outcome


def long_busy_list_alloc_test(w: Worker) -> Outcome:
    ptr_array = yield from w.vmalloc(array_pages(LONG_BUSY_AREAS))
    if ptr_array is None:
        return False
    busy: list[VmapArea | None] = []
    for _ in range(LONG_BUSY_AREAS):
        if w.control.stop:
            return None
        busy.append((yield from w.vmalloc(1)))

    def body() -> Outcome:
        ptr_1 = yield from w.vmalloc(100)
        if ptr_1 is None:
            return False
        ptr_2 = yield from w.vmalloc(1)
        if ptr_2 is None:
            yield from w.vfree(ptr_1)
            return False
        yield from w.vfree(ptr_1)
        yield from w.vfree(ptr_2)
        return True

    outcome = yield from w.loop(body)
    if outcome is None:
        return None
    for va in busy:
        yield from w.vfree(va)
    yield from w.vfree(ptr_array)
    return outcome


def random_size_alloc_test(w: Worker) -> Outcome:
    sizes = Stream(lambda n: w.rng.integers(1, 101, n))  # get_random_u32_inclusive(1, 100)

    def body() -> Outcome:
        va = yield from w.vmalloc(sizes.next())
        if va is None:
            return False
        yield from w.vfree(va)
        return True

    return (yield from w.loop(body))


def fix_align_alloc_test(w: Worker) -> Outcome:
    def body() -> Outcome:
        va = yield from w.vmalloc(5, THREAD_ALIGN_PAGES << 1, zero=True)
        if va is None:
            return False
        yield from w.vfree(va)
        return True

    return (yield from w.loop(body))


def random_size_align_request(rnd: int) -> tuple[int, int]:
    """Pages and alignment (pages) for ``rnd = get_random_u8()``."""
    return rnd % 10 + 1, align_pages(1 << (rnd % 23))


def random_size_align_alloc_test(w: Worker) -> Outcome:
    rnds = Stream(lambda n: w.rng.integers(0, 256, n))

    def body() -> Outcome:
        pages, align = random_size_align_request(rnds.next())
        va = yield from w.vmalloc(pages, align, zero=True)
        if va is None:
            return False
        yield from w.vfree(va)
        return True

    return (yield from w.loop(body))


def align_shift_alloc_test(w: Worker) -> Outcome:
    for i in range(BITS_PER_LONG):
        if w.control.stop:
            return None
        va = yield from w.vmalloc(1, align_pages(1 << i), zero=True)
        if va is None:
            return False
        yield from w.vfree(va)
    return True


def pcpu_alloc_test(w: Worker) -> Outcome:
    pcpu = w.run.pcpu
    array = yield from w.vmalloc(array_pages(PCPU_OBJECTS))
    if array is None:
        return False
    sizes = Stream(lambda n: w.rng.integers(1, PAGE_SIZE // 4 + 1, n))
    shifts = Stream(lambda n: w.rng.integers(1, PAGE_SHIFT, n))  # 1 << (1..11)
    objects: list[PercpuChunk | None] = []
    for _ in range(PCPU_OBJECTS):
        if w.control.stop:
            return None
        objects.append((yield from pcpu.alloc(w.cpu, sizes.next(), 1 << shifts.next())))
    for chunk in objects:
        if chunk is not None:
            yield from pcpu.free(w.cpu, chunk)
    yield from w.vfree(array)
    return all(chunk is not None for chunk in objects)


def kvfree_rcu_vmalloc_test(w: Worker) -> Outcome:
    krc = w.run.krc(w.cpu.id)

    def body() -> Outcome:
        va = yield from w.vmalloc(1)
        if va is None:
            return False
        krc.kvfree_rcu(w.cpu, va)
        return True

    return (yield from w.loop(body))


def vm_map_ram_test(w: Worker) -> Outcome:
    c = w.vm.costs
    count = w.params.nr_pages or 1
    w.cpu.charge(c.kmalloc_ns + count * c.page_alloc_ns)  # kcalloc + alloc_pages_bulk_array

    def body() -> Outcome:
        ram = yield from w.vm.vm_map_ram(w.cpu, count)
        if ram is None:
            return False
        yield from w.vm.vm_unmap_ram(w.cpu, ram)
        return True

    outcome = yield from w.loop(body)
    w.cpu.charge(count * c.page_free_ns + c.kmalloc_ns)  # __free_page() each, kfree(pages)
    return outcome


CASES: list[Callable[[Worker], Outcome]] = [
    fix_size_alloc_test, full_fit_alloc_test, long_busy_list_alloc_test,
    random_size_alloc_test, fix_align_alloc_test, random_size_align_alloc_test,
    align_shift_alloc_test, pcpu_alloc_test, kvfree_rcu_vmalloc_test, kvfree_rcu_vmalloc_test,
    vm_map_ram_test,
]
"""The case of each ``test_case_array`` entry."""


# --- the workload kind --------------------------------------------------------------------

_runs: weakref.WeakKeyDictionary[Control, ModuleRun] = weakref.WeakKeyDictionary()


def module_run(control: Control) -> ModuleRun | None:
    """The module run whose workers share ``control``."""
    return _runs.get(control)


def vmalloc_test_process(env: simpy.Environment, cpu: Cpu, vm: VmallocModel,
                 workload: VmallocTestModule, rng: np.random.Generator, control: Control
                 ) -> Gen:
    """The SimPy process of one CPU: the workers placed on it (``Machine.placement``), each
    with a random stream spawned from the CPU's."""
    run = _runs.get(control)
    if run is None:
        run = _runs[control] = ModuleRun(env, vm, workload)
    ncpus = vm.machine.ncpus
    slot = run.slot_of[cpu.id]
    mine = list(range(slot, run.nr_threads, ncpus))
    if len(mine) > 1:
        run.runqueues[cpu.id] = simpy.Resource(env, 1)
    streams = rng.spawn(len(mine)) if mine else []
    workers = [LeanProcess(env, Worker(run, i, cpu, s, control).main())
               for i, s in zip(mine, streams)]
    if workers:
        yield env.all_of(workers)


def module_metrics(control: Control) -> dict[str, float]:
    """Per selected test, the mean ``avg`` (us) of the workers that finished it and their
    failures; the workers the duration cap stopped (taken when the window ends)."""
    run = _runs.get(control)
    if run is None:
        return {}
    metrics: dict[str, float] = {}
    for i in run.tests:
        done = [r.tests[i] for r in run.records if i in r.tests and not r.tests[i].cut]
        metrics[f"{NAMES[i]}_avg_usec"] = (sum(d.avg_usec for d in done) / len(done)
                                           if done else math.nan)
        metrics[f"{NAMES[i]}_failed"] = sum(d.failed for d in done)
    metrics["test_vmalloc_workers_cut"] = run.nr_threads - len(run.records)
    return metrics


def module_report(control: Control) -> dict[str, Any]:
    """What the run's result file keeps under ``test_vmalloc``."""
    run = _runs.get(control)
    return run.report() if run is not None else {}
