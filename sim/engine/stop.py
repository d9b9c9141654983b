"""Stop conditions of a run beyond simulated time: a count of completed operations.

With ``ops: N`` the measured window ends at the simulated instant at which its ``N``-th
operation (vmalloc, vfree or set_memory_*()) completes; ``duration`` still caps the window.
The end is a SimPy event, so a run stops at the same event, bit for bit, in any process.
"""

from __future__ import annotations

import simpy

from sim.engine.metrics import Metrics


class RunAborted(Exception):
    """Raised by an observer of a run (not the model) to end it: passed on, never taken for
    a fault of the model."""


class OpsLimitedMetrics(Metrics):
    """:class:`Metrics` whose operation counter succeeds :attr:`done` when the measured window
    (the time after ``warmup``) reaches ``limit`` operations."""

    def __init__(self, env: simpy.Environment, limit: int, warmup: float) -> None:
        self.done = env.event()
        self.limit = limit
        self.warmup = warmup
        super().__init__()

    def count_op(self) -> None:
        self.ops += 1
        # window_start reaches warmup when the warm-up ends (Metrics.reset)
        if self.ops == self.limit and self.window_start >= self.warmup \
                and not self.done.triggered:
            self.done.succeed()
