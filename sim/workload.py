"""Operation streams: what each simulated CPU asks of the vmalloc layer.

``vmalloc_loop`` (workloads ``seed-i915`` and ``test_vmalloc-fix_size``): each CPU keeps up to
``live_per_cpu`` areas mapped; when it has that many it vfree()s the oldest, otherwise it
vmalloc()s a new one of a size drawn from the workload's distribution; between operations it
thinks for an exponential time; independently, set_memory_*() calls on ``set_memory_pages``
pages come due as a Poisson process of ``set_memory_rate`` per second per CPU; a CPU that falls
behind (its calls take longer than the gaps) does not catch up with a burst: the next call is
due one gap after the later of the previous due time and the end of the previous call. Random
draws come in batches from the CPU's own stream, so CPUs do not perturb each other's draws.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator

import numpy as np
import simpy

from .cpu import Cpu, IrqState
from .mm.vmalloc import VmallocModel
from .schema import Background, ChoiceDist, FixedDist, IrqNoise, UniformDist, VmallocLoop

BATCH = 1024


def draw_sizes(dist: FixedDist | UniformDist | ChoiceDist, rng: np.random.Generator,
               n: int) -> np.ndarray:
    """``n`` sizes in pages from a size distribution."""
    if isinstance(dist, FixedDist):
        return np.full(n, dist.value, dtype=np.int64)
    if isinstance(dist, UniformDist):
        return rng.integers(dist.min, dist.max + 1, size=n)
    p = None
    if dist.weights is not None:
        p = np.asarray(dist.weights, dtype=float) / sum(dist.weights)
    return rng.choice(np.asarray(dist.values, dtype=np.int64), size=n, p=p)


class Stream:
    """A refillable batch of draws, consumed one at a time."""

    __slots__ = ("_draw", "_buf", "_i")

    def __init__(self, draw) -> None:
        self._draw = draw
        self._buf: list = []
        self._i = 0

    def next(self):
        if self._i == len(self._buf):
            self._buf = self._draw(BATCH).tolist()
            self._i = 0
        value = self._buf[self._i]
        self._i += 1
        return value


def place_background(vm: VmallocModel, background: Background, rng: np.random.Generator) -> None:
    """Long-lived areas allocated at boot, packed upward from VMALLOC_START."""
    if background.count == 0:
        return
    sizes = draw_sizes(background.size, rng, background.count) + 1  # guard page
    ends = vm.vstart + np.cumsum(sizes)
    if int(ends[-1]) > vm.vend:
        raise ValueError(f"{background.count} background areas need {int(ends[-1])} pages, "
                         f"more than the vmalloc space ({vm.vend} pages)")
    vm.place_background(ends - sizes, ends)


class Control:
    """Shared by the workload processes of a run: ``stop`` ends them after their current
    operation (the run is then drained)."""

    stop = False


def irq_noise(env: simpy.Environment, irq: IrqState, cpus: list[Cpu], noise: IrqNoise,
              rng: np.random.Generator, control: Control) -> Generator[simpy.Event, None, None]:
    """Device interrupts: Poisson arrivals at ``noise.rate`` per CPU, each running a handler
    of exponential duration (mean ``noise.mean``) on a uniformly chosen CPU. With
    ``preempt_mean``, an interrupted task that is preemptible (holds no spinlock, is not
    waiting for IPI acks) is then switched out for an exponential time: the CPU still takes
    IPIs meanwhile, but the task's own next step waits. Interrupts stop when the run drains."""
    gaps = Stream(lambda n: rng.exponential(1e9 / (noise.rate * len(cpus)), n))
    targets = Stream(lambda n: rng.integers(0, len(cpus), n))
    lengths = Stream(lambda n: rng.exponential(noise.mean, n))
    preempts = Stream(lambda n: rng.exponential(noise.preempt_mean, n)) \
        if noise.preempt_mean else None
    while not control.stop:
        yield env.timeout(gaps.next())
        cpu = cpus[targets.next()]
        switched_out = preempts.next() if preempts else 0.0
        if cpu.preempt_count:
            switched_out = 0.0
        irq.deliver(np.array([cpu.id]), np.array([env.now]), lengths.next(), switched_out)


def vmalloc_loop(env: simpy.Environment, cpu: Cpu, vm: VmallocModel, workload: VmallocLoop,
                 rng: np.random.Generator, control: Control
                 ) -> Generator[simpy.Event, None, None]:
    """The SimPy process of one CPU running a ``vmalloc_loop`` workload.

    Every operation takes a lock and so settles the CPU's clock: time always advances
    (``lock_acquire_ns`` is positive by schema).
    """
    sizes = Stream(lambda n: draw_sizes(workload.size, rng, n))
    think_mean = workload.think_time
    thinks = Stream(lambda n: rng.exponential(think_mean, n)) if think_mean else None
    rate = workload.set_memory_rate
    gaps = Stream(lambda n: rng.exponential(1e9 / rate, n)) if rate else None
    next_set_memory = gaps.next() if gaps else float("inf")
    live: deque = deque()
    live_per_cpu = workload.live_per_cpu
    vmalloc, vfree = vm.vmalloc, vm.vfree
    while not control.stop:
        if env._now + cpu.pending >= next_set_memory:  # env.now without the property call
            yield from vm.set_memory(cpu, workload.set_memory_pages)
            # a CPU that fell behind does not catch up with a burst of calls
            next_set_memory = max(next_set_memory, env._now + cpu.pending) + gaps.next()
        elif len(live) >= live_per_cpu:
            yield from vfree(cpu, live.popleft())
        else:
            va = yield from vmalloc(cpu, sizes.next())
            if va is not None:
                live.append(va)
        if thinks is not None:
            cpu.pending += thinks.next()  # cpu.charge(), inlined
    yield from cpu.settle()

