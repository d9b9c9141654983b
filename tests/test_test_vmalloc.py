"""The ``test_vmalloc`` workload kind (sim/workloads/lib_test_vmalloc.py) against
lib/test_vmalloc.c.

The operation stream of each case is checked against the module's definition on a stand-in
vmalloc layer that records every call and answers at once (so a test of 20,000 draws costs
milliseconds); parameter handling, the Summary lines and the run's end go through the real
model and the CLI.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import simpy
import yaml
from scipy import stats

from sim.cli import main
from sim.config.lib_test_vmalloc_params import NAMES, TESTS, parse_test_mask, workers_of
from sim.config.loader import catalog_dir
from sim.config.schema import MachineProfile, RunConfig, VmallocTestModule
from sim.engine.cpu import Cpu, IrqState
from sim.engine.locks import spinlock_handoff
from sim.engine.machine import Machine
from sim.mm.variants import presets
from sim.mm.vmalloc import fls
from sim.mm.vmap_area import VmapArea
from sim.simulation import Simulation
from sim.workloads.common import Control
from sim.workloads.lib_test_vmalloc import (
    ModuleRun,
    PercpuAllocator,
    Worker,
    array_pages,
    module_run,
    random_size_align_request,
    shuffle_array,
)

DESKTOP = yaml.safe_load((catalog_dir("cpus") / "desktop-8c16t.yaml").read_text())
KERNEL_SUMMARY = "Summary: %s passed: %d failed: %d repeat: %d loops: %d avg: %llu usec"
KERNEL_CYCLES = "All test took worker%d=%lu cycles"
"""The module's pr_info() formats (lib/test_vmalloc.c, Linux 6.3-6.13)."""


def printk_regex(fmt: str) -> re.Pattern[str]:
    """A regex matching what printk prints for ``fmt``."""
    out = re.escape(fmt)
    for spec, pattern in (("%llu", r"(\d+)"), ("%lu", r"(\d+)"), ("%d", r"(-?\d+)"),
                          ("%s", r"(\S+)")):
        out = out.replace(re.escape(spec), pattern)
    return re.compile(f"^{out}$")


# --- a stand-in vmalloc layer -----------------------------------------------------------------

class FakeVm:
    """Records vmalloc/vfree/vm_map_ram calls; each costs 100 ns and never contends. An
    alignment larger than the space fails, as no aligned address fits."""

    def __init__(self, env: simpy.Environment, ncpus: int) -> None:
        self.env = env
        self.machine = Machine(MachineProfile.model_validate(DESKTOP), ncpus)
        self.costs = self.machine.costs
        self.spin_handoff = spinlock_handoff("qspinlock", self.machine)
        self.flushes: list[tuple[int, int]] = []
        self.flusher = SimpleNamespace(irq=IrqState(ncpus), flush_tlb_kernel_range=self._flush)
        self.vmallocs: list[tuple[int, int, bool]] = []
        self.vfrees: list[tuple[float, int]] = []
        self.maps: list[int] = []
        self.next = 0
        self.other_locks: list = []

    def now(self, cpu: Cpu) -> float:
        return self.env.now + cpu.pending

    def _flush(self, cpu: Cpu, start: int, end: int):
        self.flushes.append((start, end))
        yield from cpu.settle()

    def vmalloc(self, cpu: Cpu, pages: int, align: int = 1, zero: bool = False):
        self.vmallocs.append((pages, align, zero))
        cpu.charge(100)
        yield from cpu.settle()
        if align > self.machine.profile.vmalloc_space // 2:
            return None
        self.next += pages + 1
        return VmapArea(self.next - pages - 1, self.next, cpu.id, len(self.vmallocs))

    def vfree(self, cpu: Cpu, va: VmapArea):
        self.vfrees.append((self.env.now, va.nr_pages))
        cpu.charge(100)
        yield from cpu.settle()

    def vm_map_ram(self, cpu: Cpu, count: int):
        self.maps.append(count)
        cpu.charge(50)
        yield from cpu.settle()
        return count

    def vm_unmap_ram(self, cpu: Cpu, ram: int):
        cpu.charge(50)
        yield from cpu.settle()


def workload(**params) -> VmallocTestModule:
    return VmallocTestModule.model_validate({"name": "t", "kind": "test_vmalloc", **params})


def run_case(name: str, ncpus: int = 1, **params) -> tuple[FakeVm, Worker]:
    """One worker running one case on the stand-in layer, to its end."""
    env = simpy.Environment()
    vm = FakeVm(env, ncpus)
    run = ModuleRun(env, vm, workload(run_test_mask=[name], sequential_test_order=True,
                                      **params))
    cpu = Cpu(env, 0, 0, vm.flusher.irq)
    worker = Worker(run, 0, cpu, np.random.default_rng(7), Control())
    env.run(until=env.process(worker.main()))
    return vm, worker


def data_of(worker: Worker, name: str):
    return worker.record.tests[NAMES.index(name)]


# --- the operation stream of each case ----------------------------------------------------------

def test_fix_size_allocates_nr_pages_per_loop() -> None:
    vm, worker = run_case("fix_size", test_loop_count=300, nr_pages=3)
    assert vm.vmallocs == [(3, 1, False)] * 300 and len(vm.vfrees) == 300
    assert data_of(worker, "fix_size_alloc_test").passed == 1
    vm, _ = run_case("fix_size", test_loop_count=5, nr_pages=600, use_huge=True)
    assert vm.vmallocs == [(1024, 512, False)] * 5  # vmalloc_huge: whole PMDs, PMD-aligned
    vm, _ = run_case("fix_size", test_loop_count=5, nr_pages=0)
    assert vm.vmallocs == [(1, 1, False)] * 5  # nr_pages > 0 ? nr_pages : 1


@pytest.mark.parametrize("ncpus", [1, 3])
def test_full_fit_makes_junk_length_holes_then_loops(ncpus: int) -> None:
    loops = 50
    vm, worker = run_case("full_fit", ncpus, test_loop_count=loops)
    junk = fls(ncpus) * 8192  # the lazy_max_pages formula
    arrays = [(array_pages(junk), 1, False)] * 2
    assert vm.vmallocs == arrays + [(1, 1, False)] * (2 * junk + loops)
    # the junk half first, then the loop's, then ptr[] and the two arrays
    assert len(vm.vfrees) == junk + loops + junk + 2
    assert data_of(worker, "full_fit_alloc_test").passed == 1


def test_long_busy_list_fills_15000_areas_first() -> None:
    loops = 40
    vm, _ = run_case("long_busy_list", test_loop_count=loops)
    assert vm.vmallocs[0] == (array_pages(15000), 1, False)
    assert vm.vmallocs[1:15001] == [(1, 1, False)] * 15000
    assert vm.vmallocs[15001:] == [(100, 1, False), (1, 1, False)] * loops
    assert [pages for _, pages in vm.vfrees[:2 * loops]] == [100, 1] * loops
    assert len(vm.vfrees) == 2 * loops + 15000 + 1


def test_random_size_is_uniform_on_1_to_100_pages() -> None:
    vm, _ = run_case("random_size", test_loop_count=20000)
    sizes = Counter(pages for pages, _, _ in vm.vmallocs)
    assert set(sizes) == set(range(1, 101))
    assert stats.chisquare([sizes[n] for n in range(1, 101)]).pvalue > 1e-3
    assert {(align, zero) for _, align, zero in vm.vmallocs} == {(1, False)}


def test_fix_align_is_5_zeroed_pages_at_thread_align_times_2() -> None:
    vm, _ = run_case("fix_align", test_loop_count=100)
    assert vm.vmallocs == [(5, 8, True)] * 100  # THREAD_ALIGN << 1 = 32 KiB on x86_64


def test_random_size_align_follows_one_random_byte() -> None:
    loops = 25600
    vm, _ = run_case("random_size_align", test_loop_count=loops)
    expected = Counter(random_size_align_request(rnd) for rnd in range(256))
    found = Counter((pages, align) for pages, align, _ in vm.vmallocs)
    assert set(found) <= set(expected)
    keys = sorted(expected)
    assert stats.chisquare([found[k] for k in keys],
                           [expected[k] * loops / 256 for k in keys]).pvalue > 1e-3
    assert max(align for _, align, _ in vm.vmallocs) == 1024  # 1 << 22 bytes
    assert all(zero for _, _, zero in vm.vmallocs)


def test_align_shift_doubles_the_alignment_until_it_fails() -> None:
    vm, worker = run_case("align_shift", test_repeat_count=2)
    aligns = [align for _, align, _ in vm.vmallocs[:64]]
    assert aligns[:13] == [1] * 13  # 1 B .. 4 KiB: page alignment
    assert aligns[13:20] == [2, 4, 8, 16, 32, 64, 128]
    data = data_of(worker, "align_shift_alloc_test")
    assert (data.passed, data.failed) == (0, 2)  # "supposed to be failed", every repeat


def test_pcpu_alloc_draws_35000_objects_and_frees_every_chunk_but_one(monkeypatch) -> None:
    seen: list[tuple[int, int]] = []
    original = PercpuAllocator.alloc

    def recording(self, cpu, size, align):
        seen.append((size, align))
        return (yield from original(self, cpu, size, align))

    monkeypatch.setattr(PercpuAllocator, "alloc", recording)
    vm, worker = run_case("pcpu_alloc", ncpus=2)
    assert len(seen) == 35000
    sizes = np.array([s for s, _ in seen])
    assert sizes.min() >= 1 and sizes.max() <= 1024 and abs(sizes.mean() - 512.5) < 8
    aligns = Counter(a for _, a in seen)
    assert sorted(aligns) == [1 << k for k in range(1, 12)]
    assert stats.chisquare(list(aligns.values())).pvalue > 1e-3
    pcpu = worker.run.pcpu
    chunks = [v for v in vm.vmallocs if v[0] == 2 * 64]  # cpus * pcpu_unit_size
    assert len(chunks) == pcpu.created > 60  # ~23 MB of objects in 256 KiB units
    assert pcpu.created - pcpu.destroyed == 1 and len(vm.flushes) == pcpu.destroyed
    assert data_of(worker, "pcpu_alloc_test").passed == 1
    assert [lock.name for lock in vm.other_locks] == ["pcpu_alloc_mutex", "pcpu_lock"]
    assert vm.other_locks[1].stat.acquisitions >= 2 * 35000  # alloc and free of each


@pytest.mark.parametrize("name", ["kvfree_rcu_1_arg", "kvfree_rcu_2_arg"])
def test_kvfree_rcu_frees_in_batches_after_a_grace_period(name: str) -> None:
    vm, worker = run_case(name, test_loop_count=2000, rcu_grace_period="50us",
                          kfree_drain_delay="100us")
    assert vm.vmallocs == [(1, 1, False)] * 2000
    assert len(vm.vfrees) == 2000  # every object freed before the worker ends
    # none before the monitor (100 us) and the grace period (50 us) after the first kvfree_rcu
    assert min(t for t, _ in vm.vfrees) >= 150e3
    assert worker.run.krc(0).batches >= 2  # 2000 loops span more than one drain period


def test_vm_map_ram_maps_nr_pages_each_loop() -> None:
    vm, worker = run_case("vm_map_ram", test_loop_count=30, nr_pages=4)
    assert vm.maps == [4] * 30 and vm.vmallocs == []
    assert data_of(worker, "vm_map_ram_test").passed == 1


# --- parameters ----------------------------------------------------------------------------

def test_run_test_mask_takes_names_or_bits() -> None:
    assert parse_test_mask(2**31 - 1) == 2**31 - 1
    assert parse_test_mask(["fix_size", "long_busy_list_alloc_test"]) == 0b101
    assert parse_test_mask(["vm_map_ram"]) == 1 << 10
    assert [short for _, short in TESTS][7:9] == ["pcpu_alloc", "kvfree_rcu_1_arg"]
    with pytest.raises(ValueError, match=r"unknown 'fix_sise'; did you mean 'fix_size'"):
        parse_test_mask(["fix_sise"])
    with pytest.raises(ValueError, match="bits 0-10"):
        parse_test_mask(1 << 20)
    assert workload(run_test_mask="random_size").run_test_mask == ["random_size"]


def test_nr_threads_is_clamped_to_one_worker_and_maps_workers_round_robin() -> None:
    assert workers_of(0) == 1 and workers_of(70000) == 65535
    sim = simulate(["fix_size", "random_size"], cpus=2, nr_threads=3, test_loop_count=50,
                   test_repeat_count=2)
    report = module_run(sim.control).report()
    assert [(w["worker"], w["cpu"]) for w in report["workers"]] == [(0, 0), (1, 1), (2, 0)]
    for w in report["workers"]:
        assert {name: (d["passed"], d["failed"]) for name, d in w["tests"].items()} == {
            "fix_size_alloc_test": (2, 0), "random_size_alloc_test": (2, 0)}
    assert len(report["summary"]) == 3 * 3


def test_order_is_sequential_or_shuffled_per_worker() -> None:
    everything = list(range(len(TESTS)))
    sim = simulate(["vm_map_ram", "fix_size"], cpus=2, nr_threads=2, test_loop_count=1,
                   sequential_test_order=True)
    orders = [w["order"] for w in module_run(sim.control).report()["workers"]]
    assert orders == [["fix_size_alloc_test", "vm_map_ram_test"]] * 2
    shuffled = []
    for seed in range(4):
        order = everything.copy()
        shuffle_array(order, np.random.default_rng(seed))
        assert sorted(order) == everything and order[-1] != len(TESTS) - 1  # j < i: no self-swap
        shuffled.append(order)
    assert len({tuple(o) for o in shuffled}) == 4
    sim = simulate(["fix_size", "random_size", "fix_align", "vm_map_ram"], cpus=2,
                   nr_threads=2, test_loop_count=1)
    orders = [w["order"] for w in module_run(sim.control).report()["workers"]]
    assert orders[0] != orders[1] and sorted(orders[0]) == sorted(orders[1])


# --- runs through the real model ------------------------------------------------------------

def simulate(tests: list[str], cpus: int = 1, duration: str = "10s", **params) -> Simulation:
    config = RunConfig.model_validate({
        "machine": DESKTOP, "variant": presets()["linux-5.4"], "cpus": cpus,
        "duration": duration, "workload": {"name": "t", "kind": "test_vmalloc",
                                           "run_test_mask": tests, **params}})
    sim = Simulation(config, (1, 2, 3))
    sim.metrics_of_run = sim.run()
    return sim


def test_summary_lines_match_the_kernels_printk_and_the_run_ends_with_its_workers() -> None:
    sim = simulate(["fix_size", "align_shift", "fix_align"], test_loop_count=200)
    report = module_run(sim.control).report()
    lines = report["summary"]
    summary, cycles = printk_regex(KERNEL_SUMMARY), printk_regex(KERNEL_CYCLES)
    parsed = [summary.match(line).groups() for line in lines[:-1]]
    assert [p[0] for p in parsed] == ["fix_size_alloc_test", "fix_align_alloc_test",
                                      "align_shift_alloc_test"]  # test_case_array order
    assert [p[1:5] for p in parsed] == [("1", "0", "1", "200"), ("1", "0", "1", "200"),
                                        ("0", "1", "1", "200")]
    worker, took = cycles.match(lines[-1]).groups()
    record = report["workers"][0]
    assert worker == "0" and int(took) == int((record["stop_ns"] - record["start_ns"]) * 3)
    assert sim.env.now < 1e9  # ended with its worker, long before the 10 s cap
    metrics = sim.metrics_of_run
    assert metrics["fix_size_alloc_test_avg_usec"] == int(parsed[0][5])
    assert metrics["align_shift_alloc_test_failed"] == 1
    assert metrics["test_vmalloc_workers_cut"] == 0 and metrics["safety_violations"] == 0


def test_the_duration_cap_stops_a_test_and_says_so() -> None:
    sim = simulate(["fix_size"], duration="100us", test_loop_count=100000)
    report = module_run(sim.control).report()
    assert sim.metrics_of_run["test_vmalloc_workers_cut"] == 1
    assert report["notes"] == ["worker 0: the duration cap stopped fix_size_alloc_test"]
    assert report["workers"][0]["tests"]["fix_size_alloc_test"]["cut"]


def test_cli_writes_the_log_and_keeps_it_in_each_result(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    exp = tmp_path / "tv.yaml"
    exp.write_text(yaml.safe_dump({
        "name": "tv", "machine": "desktop-8c16t", "variants": ["linux-5.4", "linux-4.7"],
        "workload": {"name": "tv", "kind": "test_vmalloc", "test_loop_count": 100,
                     "run_test_mask": ["fix_size", "random_size"]},
        "duration": "1s", "replications": 2, "seed": 3, "sweep": {"cpus": [1, 2]}}))
    out = tmp_path / "out"
    assert main(["run", str(exp), "-o", str(out), "-j", "1", "-q", "--no-report"]) == 0
    log = (out / "test_vmalloc.log").read_text().splitlines()
    headers = [line for line in log if line.startswith("#")]
    assert [h.split(" run=")[0] for h in headers] == [
        f"# {v} cpus={c} replication={r}" for c in (1, 2) for v in ("linux-5.4", "linux-4.7")
        for r in (0, 1)]
    assert sum(line.startswith("Summary: ") for line in log) == 8 * 2
    rows = (out / "summary.csv").read_text()
    assert "fix_size_alloc_test_avg_usec" in rows and "random_size_alloc_test_failed" in rows
    result = json.loads(next((out / "runs").glob("*.json")).read_text())
    assert len(result["test_vmalloc"]["summary"]) == 3


def test_an_unknown_test_name_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    code = main(["check", "test_vmalloc-smoke", "--set",
                 "workload.run_test_mask=[fix_size, long_busy]"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "workload.run_test_mask: expected test names (fix_size, full_fit" in err
    assert "found unknown 'long_busy'; did you mean 'long_busy_list'?" in err
