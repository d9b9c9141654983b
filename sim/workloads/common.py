"""What every workload kind shares: operation streams and size draws, the background areas
placed at boot, the control its processes share, and device-interrupt noise."""

from __future__ import annotations

from collections.abc import Generator

import numpy as np
import simpy

from sim.config.schema import Background, ChoiceDist, FixedDist, IrqNoise, UniformDist
from sim.engine.cpu import Cpu, IrqState
from sim.mm.vmalloc import VmallocModel

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
        if cpu.preempt_count or cpu.preemption != "full":  # interrupt return: no preemption
            switched_out = 0.0
        irq.deliver_one(cpu.id, env.now, lengths.next(), switched_out)
