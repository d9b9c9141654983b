"""The schema of machine profiles, workloads, variants and resolved runs (pydantic models).

Each model forbids unknown keys, so a misspelt key is an error rather than a silently ignored
setting. Every default lives here and nowhere else; a result file records the resolved model,
so it describes its run completely.
"""

from __future__ import annotations

import math
import os
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from sim.config.fields import Cost, Name, Pages, PositiveTimeNs, TimeNs
from sim.config.lib_test_vmalloc_params import (
    NAMES,
    fix_size_request,
    parse_test_mask,
    selected_tests,
)

MAX_CPUS = 4096
"""Largest CPU count accepted (the kernel's NR_CPUS for x86_64 distribution configs is 8192;
4096 keeps runs tractable)."""


class Strict(BaseModel):
    """Base of every schema model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- machine profiles -----------------------------------------------------------------------

class Costs(Strict):
    """Costed latencies in nanoseconds. Each profile cites the source of every value."""

    cacheline_same_socket_ns: Cost
    """A cache-line transfer between two CPUs of one socket in different last-level cache
    domains (with one LLC per socket: any two cores of the socket)."""
    cacheline_cross_socket_ns: Cost
    cacheline_same_llc_ns: Cost | None = None
    """Between two cores sharing a last-level cache (a Zen CCX); default: same socket's."""
    cacheline_same_core_ns: Cost | None = None
    """Between SMT siblings (shared L1/L2); default: same LLC's."""
    l2_ns: Cost | None = None
    """A load that hits this CPU's own L2 (its working set fits ``l2_kib``); default:
    ``rbtree_level_ns``, a hot line."""
    llc_ns: Cost | None = None
    """A load that hits the last-level cache (working set within ``llc_kib``); default:
    ``l2_ns``."""
    dram_ns: Cost | None = None
    """A load from local memory (working set beyond the caches); default:
    ``list_walk_per_node_ns``."""
    atomic_ns: Cost
    lock_acquire_ns: Annotated[float, Field(gt=0)]
    kmalloc_ns: Cost
    rbtree_level_ns: Cost
    list_walk_per_node_ns: Cost
    vmalloc_fixed_ns: Cost
    page_alloc_ns: Cost
    page_free_ns: Cost
    map_page_ns: Cost
    unmap_page_ns: Cost
    invlpg_ns: Cost
    flush_full_ns: Cost
    tlb_refill_ns: Cost
    ipi_delivery_ns: Cost
    ipi_send_same_socket_ns: Cost
    ipi_send_cross_socket_ns: Cost
    ipi_handler_ns: Cost
    vb_queue_check_ns: Cost
    mutex_wake_ns: Cost
    cpa_ns: Cost
    clflush_page_ns: Cost
    clear_page_ns: Cost


class MachineProfile(Strict):
    """A machine: CPUs, sockets, the vmalloc address space and the cost table."""

    name: Name
    description: str = ""
    cpus: int = Field(ge=1, le=MAX_CPUS)
    cpus_per_socket: int = Field(ge=1, le=MAX_CPUS)
    cpus_per_llc: int | None = Field(None, ge=1, le=MAX_CPUS)
    """Logical CPUs sharing one last-level cache (a Zen CCX of 4 or 8 cores with SMT: 8 or
    16); default: one LLC per socket."""
    threads_per_core: int = Field(1, ge=1, le=8)
    """SMT threads per core. CPUs are numbered as Linux numbers them on x86: the first thread
    of every core (socket by socket, LLC by LLC) first, then the second threads, and so on."""
    l2_kib: float | None = Field(None, gt=0)
    """Per-core L2 size; default: unbounded (working sets always fit)."""
    llc_kib: float | None = Field(None, gt=0)
    """Size of one last-level cache domain; default: unbounded."""
    vmalloc_space: Pages = Field(description="VMALLOC_END - VMALLOC_START")
    tlb_single_page_flush_ceiling: int = Field(ge=0)
    preemption: Literal["none", "voluntary", "full"] = Field(
        default="full",
        description="the kernel's preemption model: where a woken task (a kworker, the "
                    "rt_probe) can take a CPU from its task. full (CONFIG_PREEMPT): wherever "
                    "preempt_count falls to zero; voluntary (CONFIG_PREEMPT_VOLUNTARY): also at "
                    "might_sleep() points; none (CONFIG_PREEMPT_NONE): only at cond_resched(), "
                    "cond_resched_lock() breaks, blocking and return to user space")
    costs: Costs

    @model_validator(mode="after")
    def _topology_divides(self) -> MachineProfile:
        llc = self.cpus_per_llc or self.cpus_per_socket
        if self.cpus_per_socket % llc:
            raise ValueError(f"cpus_per_llc ({llc}) must divide cpus_per_socket "
                             f"({self.cpus_per_socket})")
        if llc % self.threads_per_core:
            raise ValueError(f"threads_per_core ({self.threads_per_core}) must divide "
                             f"cpus_per_llc ({llc})")
        return self


# --- workloads ------------------------------------------------------------------------------

class FixedDist(Strict):
    dist: Literal["fixed"]
    value: Pages


class UniformDist(Strict):
    dist: Literal["uniform"]
    min: Pages
    max: Pages

    @model_validator(mode="after")
    def _ordered(self) -> UniformDist:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) must be at least min ({self.min})")
        return self


class ChoiceDist(Strict):
    dist: Literal["choice"]
    values: list[Pages] = Field(min_length=1)
    weights: list[Annotated[float, Field(gt=0)]] | None = None

    @field_validator("weights")
    @classmethod
    def _finite_sum(cls, weights: list[float] | None) -> list[float] | None:
        """Weights are relative; their sum must be a finite number to divide by."""
        if weights is not None and not math.isfinite(sum(weights)):
            raise ValueError("expected weights with a finite sum (they are relative: "
                             "[2, 1] means two to one), found a sum beyond 1e308")
        return weights

    @model_validator(mode="after")
    def _same_length(self) -> ChoiceDist:
        if self.weights is not None and len(self.weights) != len(self.values):
            raise ValueError(f"weights has {len(self.weights)} entries but values has "
                             f"{len(self.values)}")
        return self


def _shorthand_fixed(value: Any) -> Any:
    """A bare size (``4`` or ``"16KiB"``) means a fixed distribution."""
    return value if isinstance(value, dict) else {"dist": "fixed", "value": value}


SizeDist = Annotated[FixedDist | UniformDist | ChoiceDist,
                     BeforeValidator(_shorthand_fixed), Field(discriminator="dist")]


class Background(Strict):
    """Long-lived areas (module data, stacks, ...) placed at start, packed from VMALLOC_START."""

    count: int = Field(default=1000, ge=0, le=10_000_000)
    size: SizeDist = Field(default_factory=lambda: FixedDist(dist="fixed", value=4))


class IrqNoise(Strict):
    """Device interrupts: Poisson arrivals per CPU, exponential handler durations, and (on a
    preemptible kernel) an exponential time the interrupted task then stays switched out."""

    rate: float = Field(default=0.0, ge=0, description="interrupts/s per CPU")
    mean: PositiveTimeNs = 2000.0
    preempt_mean: TimeNs = Field(default=0.0, description="0: CONFIG_PREEMPT_NONE")


class RtProbe(Strict):
    """A cyclictest-like probe (rt-tests' cyclictest: clock_nanosleep to an absolute time,
    latency = wake-up - expiry): on each chosen CPU a SCHED_FIFO thread whose timer expires
    every ``interval``; its latency is from the expiry to the thread running."""

    interval: PositiveTimeNs = Field(default=1e6, description="cyclictest -i (default 1000 us)")
    cpus: Literal["all"] | list[Annotated[int, Field(ge=0)]] = "all"
    work: TimeNs = Field(default=1000.0, description="what the thread does once woken")


class WorkloadBase(Strict):
    """What every workload kind shares: its name, the machine-wide state it starts from and
    the noise it runs under. A kind adds what each CPU issues."""

    name: Name
    description: str = ""
    vmap_block_dirty: bool = Field(
        default=True,
        description="dirty blocks of vm_map_ram users outside the simulated workload: their "
                    "dirty ranges are taken to span the vmalloc space, so every "
                    "vm_unmap_aliases() flushes it all even when nothing is lazy (the blocks of "
                    "the workload's own vm_map_ram calls are modelled apart)")
    background: Background = Field(default_factory=Background)
    irq_noise: IrqNoise = Field(default_factory=IrqNoise)
    rt_probe: RtProbe | None = Field(
        default=None, description="a cyclictest-like periodic high-priority task per CPU "
                                  "whose wake-up latency is measured (none: no probe)")

    def largest_request(self) -> int:
        """The largest single request in pages (checked against the vmalloc space)."""
        raise NotImplementedError

    def check_run(self, cpus: int, vmalloc_space: int) -> None:
        """Refuse a run of ``cpus`` CPUs and ``vmalloc_space`` pages this workload cannot
        drive (a kind with more to check than its largest request overrides it)."""


class VmallocLoop(WorkloadBase):
    """``vmalloc_loop``: each CPU keeps up to ``live_per_cpu`` areas, freeing the oldest before
    the next vmalloc, and calls set_memory_*() at a Poisson rate."""

    kind: Literal["vmalloc_loop"] = "vmalloc_loop"
    size: SizeDist
    live_per_cpu: int = Field(default=1, ge=1, le=1_000_000)
    think_time: TimeNs = 0.0
    set_memory_rate: float = Field(default=0.0, ge=0, description="calls/s per CPU")
    set_memory_pages: int = Field(default=1, ge=1, le=1 << 30,
                                  description="pages per set_memory_*() call")

    def largest_request(self) -> int:
        return largest_pages(self.size)


class TraceReplay(WorkloadBase):
    """``trace``: each CPU replays its records of a recorded CSV trace (sim/workloads/replay.py)."""

    kind: Literal["trace"]
    trace: str = Field(description="the CSV trace; a relative path resolves against the "
                                   "directory of the YAML file that names it")
    trace_sha256: str | None = Field(
        default=None, validate_default=True,
        description="the trace's SHA-256, filled in when the trace is read (a run refuses a "
                    "trace whose content changed since); give it to pin the content")
    mode: Literal["open_loop", "closed_loop"] = Field(
        default="open_loop", description="open_loop: each operation at its recorded offset "
                                         "(or late); closed_loop: back to back")
    loop: bool = Field(default=False, description="start the trace again when it ends, "
                                                  "until the run ends")
    cpu_map: Literal["strict", "fold"] = Field(
        default="strict", description="strict: a trace CPU the run does not have is an error; "
                                      "fold: trace CPU c runs on CPU c % cpus")
    speed: float = Field(default=1.0, gt=0, le=1e9,
                         description="open loop: recorded offsets are divided by this")

    @field_validator("trace")
    @classmethod
    def _readable(cls, path: str) -> str:
        from sim.config.trace_csv import load_trace

        path = os.path.abspath(os.path.expanduser(path))
        if not os.path.lexists(path):
            raise ValueError(f"expected a CSV trace file, found {path!r} (no such file)")
        load_trace(path)
        return path

    @field_validator("trace_sha256")
    @classmethod
    def _same_content(cls, digest: str | None, info: ValidationInfo) -> str | None:
        from sim.config.trace_csv import load_trace

        path = info.data.get("trace")
        if path is None:
            return digest
        found = load_trace(path).sha256
        if digest is not None and digest != found:
            raise ValueError(f"expected the trace {path} with SHA-256 {digest} (its content "
                             f"changed since it was configured), found {found}")
        return found

    @property
    def finishes(self) -> bool:
        """Without ``loop`` the run ends when every CPU has replayed its records (``duration``
        is then a cap)."""
        return not self.loop

    def largest_request(self) -> int:
        from sim.config.trace_csv import load_trace

        return load_trace(self.trace).largest_request()[0]

    def check_run(self, cpus: int, vmalloc_space: int) -> None:
        from sim.config.trace_csv import check_fits, load_trace

        check_fits(load_trace(self.trace), cpus, self.cpu_map == "fold", vmalloc_space)


def _default_kind(value: Any) -> Any:
    """A workload without ``kind`` is a ``vmalloc_loop``."""
    if isinstance(value, dict) and "kind" not in value:
        return {"kind": "vmalloc_loop", **value}
    return value


def _one_name_is_a_list(value: Any) -> Any:
    """``run_test_mask: fix_size`` means ``[fix_size]``."""
    return [value] if isinstance(value, str) else value


class VmallocTestModule(WorkloadBase):
    """``test_vmalloc``: the kernel's lib/test_vmalloc.c (Linux 6.3-6.13) as a workload, with the
    module's parameters and defaults: ``nr_threads`` workers each run the test cases
    ``run_test_mask`` selects, ``test_repeat_count`` times each
    (sim/workloads/lib_test_vmalloc.py)."""

    kind: Literal["test_vmalloc"]
    finishes: ClassVar[bool] = True
    """The run ends when every worker is done (``duration`` is then a cap)."""
    nr_threads: int = Field(default=0, ge=0, le=65535,
                            description="workers; 0 is clamped to 1 as the module does")
    placement: Literal["spread", "compact", "pinned"] = Field(
        default="spread",
        description="where the (unpinned) workers run: spread as Linux's scheduler spreads "
                    "busy tasks over idle CPUs (LLC domains and cores before SMT siblings), "
                    "compact (fill one LLC domain, siblings together, then the next), pinned "
                    "(worker i on CPU i); worker i takes the i-th CPU of that order, modulo "
                    "cpus")
    test_loop_count: int = Field(default=1_000_000, ge=1, le=2**31 - 1)
    test_repeat_count: int = Field(default=1, ge=1, le=1_000_000)
    nr_pages: int = Field(default=1, ge=0, le=1 << 20,
                          description="pages of fix_size and vm_map_ram; 0 means 1")
    use_huge: bool = Field(default=False, description="vmalloc_huge() in fix_size")
    sequential_test_order: bool = False
    run_test_mask: Annotated[int | list[str], BeforeValidator(_one_name_is_a_list)] = Field(
        default=2**31 - 1, description="a bit mask as the module takes it (INT_MAX: all), or "
                                       "a list of test names")
    rcu_grace_period: PositiveTimeNs = Field(
        default=3e6, description="one RCU grace period as seen by kvfree_rcu()")
    kfree_drain_delay: PositiveTimeNs = Field(
        default=20e6, description="KFREE_DRAIN_JIFFIES: kvfree_rcu() batches wait this long")
    pcpu_unit_size: Pages = Field(default=64, description="bytes per CPU of a percpu chunk")

    @field_validator("run_test_mask")
    @classmethod
    def _known_tests(cls, mask: int | list[str]) -> int | list[str]:
        parse_test_mask(mask)
        return mask

    def largest_request(self) -> int:
        """Pages of the largest single vmalloc the selected cases make (guard page
        excluded)."""
        chosen = {NAMES[i] for i in selected_tests(parse_test_mask(self.run_test_mask))}
        sizes = [100 if chosen & {"long_busy_list_alloc_test", "random_size_alloc_test"} else 1]
        if chosen & {"fix_size_alloc_test", "vm_map_ram_test"}:
            sizes.append(fix_size_request(self.nr_pages, self.use_huge)[0])
        return max(sizes)


SetMemoryCall = Literal["all", "each"] | Annotated[int, Field(ge=1)]
"""set_memory_*() calls on an object: ``all`` its pages in one call, ``each`` page in its own
call, or a number of pages in one call."""


class ChurnObject(Strict):
    """One object type of an ``object_churn`` workload (sim/workloads/churn.py)."""

    name: Name
    rate: float = Field(gt=0, le=1e9, description="creations/s per CPU (Poisson)")
    size: SizeDist
    lifetime: PositiveTimeNs = Field(description="mean of an exponential lifetime")
    on_alloc: list[SetMemoryCall] = Field(
        default_factory=list, description="set_memory_*() calls after allocation "
                                          "(e.g. set_memory_ro, set_memory_x)")
    on_free: list[SetMemoryCall] = Field(
        default_factory=list, description="set_memory_*() calls before the free "
                                          "(e.g. set_memory_rw, set_pages_wb)")
    free: Literal["vfree", "deferred", "cached"] = Field(
        default="vfree", description="vfree: synchronous; deferred: vfree_atomic() to a "
                                     "per-CPU kworker; cached: a per-CPU cache of freed "
                                     "stacks first (CONFIG_VMAP_STACK), else deferred")
    cache: int = Field(default=2, ge=1, le=64, description="NR_CACHED_STACKS (free: cached)")


class ObjectChurn(WorkloadBase):
    """``object_churn``: object types created on every CPU at Poisson rates, protected with
    set_memory_*(), living an exponential time, then freed (sim/workloads/churn.py)."""

    kind: Literal["object_churn"]
    objects: list[ChurnObject] = Field(min_length=1)

    def largest_request(self) -> int:
        return max(largest_pages(obj.size) for obj in self.objects)


Workload = Annotated[VmallocLoop | TraceReplay | VmallocTestModule | ObjectChurn,
                     BeforeValidator(_default_kind), Field(discriminator="kind")]
"""Every workload kind, told apart by ``kind`` (a kind's model and its per-CPU process in
sim/workloads/vmalloc_loop.py ``PROCESSES`` are added together)."""


# --- kernel variants ------------------------------------------------------------------------

class Variant(Strict):
    """A kernel version or proposal as a set of mechanism choices (see sim/mm/presets.yaml)."""

    name: Name
    base: str | None = None
    kernel: str = ""
    description: str = ""
    lazy_list: Literal["full_walk", "llist", "sorted_tree", "per_node", "none"]
    noflush_order: Literal["publish_then_read", "read_then_publish"]
    purge_lock: Literal["spin", "mutex", "none", "refcount"]
    free_lock_break: int = Field(ge=0, description="areas between cond_resched_lock(); 0: none")
    allocator: Literal["first_fit_cache", "augmented_tree", "first_fit_list"]
    lazy_in_busy_tree: bool
    spinlock: Literal["qspinlock", "ticket", "rwlock"] = "qspinlock"
    purge_context: Literal["caller", "workqueue"] = Field(
        default="caller", description="who purges past lazy_max_pages(): the freeing caller "
                                      "(try_purge_vmap_area_lazy) or drain_vmap_work (5.18)")
    vb_dirty_reset: bool = Field(
        default=False,
        description="vm_unmap_aliases() resets a vmap block's dirty range once it has taken it "
                    "for its flush (a09fad96ffb1 'mm/vmalloc: Prevent flushing dirty space over "
                    "and over', Thomas Gleixner, Linux 6.5); false: every call flushes the same "
                    "dirty ranges again until their block is freed")
    vb_walk_all: bool = Field(
        default=False,
        description="vm_unmap_aliases() walks every vmap block, not only the per-CPU free "
                    "lists, so the dirty range of a block with no free space left is flushed "
                    "too (fc1e0d980037 'mm/vmalloc: Prevent stale TLBs in fully utilized "
                    "blocks', Thomas Gleixner, Linux 6.5)")
    vmap_nodes: bool = Field(
        default=False, description="per-node busy trees and locks, min(cpus, 128) nodes, "
                                   "free_vmap_area_lock over the free tree only, and "
                                   "per-node pools of free ranges up to 256 pages (6.9)")

    split_free_lock: bool = Field(
        default=False, description="the allocator's free tree under its own "
                                   "free_vmap_area_lock, the busy tree and list under "
                                   "vmap_area_lock: an allocation takes one, then the other "
                                   "(e36176be1c39 'mm/vmalloc: rework vmap_area_lock', "
                                   "Uladzislau Rezki, Linux 5.5)")
    find_unlink: bool = Field(
        default=False, description="remove_vm_area finds and unlinks the area from the busy "
                                   "tree in one lock hold (find_unlink_vmap_area, 6.3)")
    purge_helpers: bool = Field(
        default=False, description="per-node lazy trees: a purge hands nodes to kworkers on "
                                   "their CPUs, one per lazy_max_pages() of backlog (6.9)")

    @model_validator(mode="after")
    def _per_node_parts_need_nodes(self) -> Variant:
        if self.lazy_list == "per_node" and not self.vmap_nodes:
            raise ValueError("lazy_list: per_node needs vmap_nodes: true (the lazy trees are "
                             "the nodes')")
        if self.find_unlink and self.lazy_in_busy_tree:
            raise ValueError("find_unlink needs lazy_in_busy_tree: false (it takes the area "
                             "out of the busy tree at free time)")
        if self.purge_helpers and self.lazy_list != "per_node":
            raise ValueError("purge_helpers needs lazy_list: per_node (helpers purge nodes' "
                             "lazy lists)")
        return self

    @model_validator(mode="after")
    def _no_lazy_freeing_is_the_old_vmlist(self) -> Variant:
        eager = self.lazy_list == "none"
        if eager != (self.allocator == "first_fit_list") or (
                eager and (self.purge_lock != "none" or self.purge_context != "caller")):
            raise ValueError("lazy_list: none and allocator: first_fit_list go together, with "
                             "purge_lock: none and purge_context: caller (Linux 2.6.27's "
                             "vmlist: no lazy freeing, nothing to purge)")
        return self

    @model_validator(mode="after")
    def _nodes_need_the_free_tree(self) -> Variant:
        if self.split_free_lock and (self.allocator != "augmented_tree"
                                     or self.lazy_in_busy_tree):
            raise ValueError("split_free_lock needs allocator: augmented_tree and "
                             "lazy_in_busy_tree: false (the purge merges areas into the free "
                             "tree only, under free_vmap_area_lock)")
        if self.vmap_nodes and (self.allocator != "augmented_tree" or self.lazy_in_busy_tree):
            raise ValueError("vmap_nodes needs allocator: augmented_tree and "
                             "lazy_in_busy_tree: false (the 6.9 nodes split a busy tree that "
                             "the allocator does not walk and that holds no lazy area)")
        return self


# --- a resolved run -------------------------------------------------------------------------

class Scenario(Strict):
    """A small adversarial run for ``vmapsim verify`` (workloads/scenarios/): a few CPUs and
    areas, and a ``lazy_max_pages`` small enough that purges race with everything else."""

    name: str = Field(min_length=1, max_length=64)
    description: str = ""
    races: list[str] = Field(default_factory=list,
                             description="the racing paths the scenario puts together")
    machine: str = "desktop-8c16t"
    cpus: int = Field(default=2, ge=2, le=8)
    lazy_max_pages: int = Field(default=4, ge=1, le=1 << 20)
    duration: PositiveTimeNs = Field(default=200e3, le=10e6,
                                     description="simulated time of one schedule (at most 10ms)")
    default: bool = Field(default=True, description="run without --scenario (false: only "
                                                    "when named)")
    workload: dict[str, Any]


class RunConfig(Strict):
    """Everything one simulation needs; a pure function of this plus the seed gives the result."""

    machine: MachineProfile
    workload: Workload
    variant: Variant
    cpus: int = Field(ge=1, le=MAX_CPUS)
    lazy_max_pages: Literal["auto"] | Annotated[int, Field(ge=1)] = "auto"
    duration: PositiveTimeNs
    warmup: TimeNs = 0.0
    ops: int | None = Field(
        default=None, ge=1,
        description="end the measured window at this many completed operations; duration "
                    "then caps the window")

    @model_validator(mode="after")
    def _fits(self) -> RunConfig:
        self.workload.check_run(self.cpus, self.machine.vmalloc_space)
        biggest = self.workload.largest_request() + 1
        if biggest > self.machine.vmalloc_space:
            raise ValueError(f"workload size {biggest - 1} pages (plus guard page) is larger "
                             f"than the vmalloc space ({self.machine.vmalloc_space} pages)")
        return self


def largest_pages(dist: FixedDist | UniformDist | ChoiceDist) -> int:
    """The largest size, in pages, ``dist`` can draw."""
    if isinstance(dist, FixedDist):
        return dist.value
    if isinstance(dist, UniformDist):
        return dist.max
    return max(dist.values)


class Rank(Strict):
    """Which metric decides which variant is best, and whether higher or lower wins."""

    metric: str = "ops_per_sec"
    goal: Literal["max", "min"] = "max"


class ExperimentFile(Strict):
    """The top level of an experiment file, before catalog names are resolved."""

    name: str
    description: str = ""
    machine: str | dict
    workload: str | dict
    variants: list[str | dict] = Field(min_length=1)
    cpus: int | None = Field(default=None, ge=1, le=MAX_CPUS)
    lazy_max_pages: Literal["auto"] | Annotated[int, Field(ge=1)] = "auto"
    duration: PositiveTimeNs
    warmup: TimeNs = 0.0
    replications: int = Field(default=3, ge=1, le=10_000)
    ops: int | None = Field(default=None, ge=1)
    seed: int = Field(default=0, ge=0)
    baseline: str | None = Field(
        default=None, description="a variant name: report paired differences against it")
    rank: Rank = Field(default_factory=lambda: Rank(),
                       description="the metric on which an uncertainty sweep ranks variants")
    sweep: dict[str, Any] = Field(
        default_factory=dict,
        description="factors and zipped groups; checked by sim/experiment/sweep.py")
    verify: bool | None = Field(
        default=None, description="vmapsim run also verifies every variant by schedule "
                                  "exploration (default: when a variant is a proposal mapping)")
