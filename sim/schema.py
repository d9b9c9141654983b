"""The schema of machine profiles, workloads, variants and resolved runs (pydantic models).

Each model forbids unknown keys, so a misspelt key is an error rather than a silently ignored
setting. Every default lives here and nowhere else; a result file records the resolved model,
so it describes its run completely.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from .units import parse_pages, parse_time

TimeNs = Annotated[float, BeforeValidator(parse_time), Field(ge=0)]
PositiveTimeNs = Annotated[float, BeforeValidator(parse_time), Field(gt=0)]
Pages = Annotated[int, BeforeValidator(parse_pages), Field(ge=1)]
Cost = Annotated[float, Field(ge=0)]
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
    cacheline_cross_socket_ns: Cost
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


class MachineProfile(Strict):
    """A machine: CPUs, sockets, the vmalloc address space and the cost table."""

    name: str
    description: str = ""
    cpus: int = Field(ge=1, le=MAX_CPUS)
    cpus_per_socket: int = Field(ge=1, le=MAX_CPUS)
    vmalloc_space: Pages = Field(description="VMALLOC_END - VMALLOC_START")
    tlb_single_page_flush_ceiling: int = Field(ge=0)
    costs: Costs


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


class WorkloadBase(Strict):
    """What every workload kind shares: its name, the machine-wide state it starts from and
    the noise it runs under. A kind adds what each CPU issues."""

    name: str
    description: str = ""
    vmap_block_dirty: bool = Field(
        default=True,
        description="per-CPU vmap blocks hold dirty ranges, so vm_unmap_aliases() flushes "
                    "even when nothing is lazy")
    background: Background = Field(default_factory=Background)
    irq_noise: IrqNoise = Field(default_factory=IrqNoise)

    def largest_request(self) -> int:
        """The largest single request in pages (checked against the vmalloc space)."""
        raise NotImplementedError


class VmallocLoop(WorkloadBase):
    """``vmalloc_loop``: each CPU keeps up to ``live_per_cpu`` areas, freeing the oldest before
    the next vmalloc, and calls set_memory_*() at a Poisson rate."""

    kind: Literal["vmalloc_loop"] = "vmalloc_loop"
    size: SizeDist
    live_per_cpu: int = Field(default=1, ge=1, le=1_000_000)
    think_time: TimeNs = 0.0
    set_memory_rate: float = Field(default=0.0, ge=0, description="calls/s per CPU")
    set_memory_pages: Pages = 1

    def largest_request(self) -> int:
        return _largest(self.size)


def _default_kind(value: Any) -> Any:
    """A workload without ``kind`` is a ``vmalloc_loop``."""
    if isinstance(value, dict) and "kind" not in value:
        return {"kind": "vmalloc_loop", **value}
    return value


Workload = Annotated[VmallocLoop, BeforeValidator(_default_kind), Field(discriminator="kind")]
"""Every workload kind, told apart by ``kind`` (a kind's model and its per-CPU process in
sim/workload.py ``PROCESSES`` are added together)."""


# --- kernel variants ------------------------------------------------------------------------

class Variant(Strict):
    """A kernel version or proposal as a set of mechanism choices (see sim/mm/presets.yaml)."""

    name: str
    base: str | None = None
    kernel: str = ""
    description: str = ""
    lazy_list: Literal["full_walk", "llist", "sorted_tree"]
    noflush_order: Literal["publish_then_read", "read_then_publish"]
    purge_lock: Literal["spin", "mutex", "none", "refcount"]
    free_lock_break: int = Field(ge=0, description="areas between cond_resched_lock(); 0: none")
    allocator: Literal["first_fit_cache", "augmented_tree"]
    lazy_in_busy_tree: bool
    spinlock: Literal["qspinlock", "ticket"] = "qspinlock"
    purge_context: Literal["caller", "workqueue"] = Field(
        default="caller", description="who purges past lazy_max_pages(): the freeing caller "
                                      "(try_purge_vmap_area_lazy) or drain_vmap_work (5.18)")
    vmap_nodes: bool = Field(
        default=False, description="per-node busy trees and locks, min(cpus, 128) nodes, "
                                   "free_vmap_area_lock over the free tree only, and "
                                   "per-node pools of free ranges up to 256 pages (6.9)")

    @model_validator(mode="after")
    def _nodes_need_the_free_tree(self) -> Variant:
        if self.vmap_nodes and (self.allocator != "augmented_tree" or self.lazy_in_busy_tree):
            raise ValueError("vmap_nodes needs allocator: augmented_tree and "
                             "lazy_in_busy_tree: false (the 6.9 nodes split a busy tree that "
                             "the allocator does not walk and that holds no lazy area)")
        return self


# --- a resolved run -------------------------------------------------------------------------

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
        biggest = self.workload.largest_request() + 1
        if biggest > self.machine.vmalloc_space:
            raise ValueError(f"workload size {biggest - 1} pages (plus guard page) is larger "
                             f"than the vmalloc space ({self.machine.vmalloc_space} pages)")
        return self


def _largest(dist: FixedDist | UniformDist | ChoiceDist) -> int:
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
        default_factory=dict, description="factors and zipped groups; checked by sim/sweep.py")
