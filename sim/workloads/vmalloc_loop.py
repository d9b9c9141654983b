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

from sim.config.schema import VmallocLoop
from sim.engine.cpu import Cpu
from sim.mm.vmalloc import VmallocModel
from sim.workloads.common import Control, Stream, draw_sizes


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
        if env.now + cpu.pending >= next_set_memory:
            yield from vm.set_memory(cpu, workload.set_memory_pages)
            # a CPU that fell behind does not catch up with a burst of calls
            next_set_memory = max(next_set_memory, env.now + cpu.pending) + gaps.next()
        elif len(live) >= live_per_cpu:
            yield from vfree(cpu, live.popleft())
        else:
            va = yield from vmalloc(cpu, sizes.next())
            if va is not None:
                live.append(va)
        if cpu.runqueue is not None and cpu.runqueue.woken:  # return to user: need_resched
            yield from cpu.cond_resched()
        if thinks is not None:
            cpu.pending += thinks.next()  # cpu.charge(), inlined
    yield from cpu.settle()
