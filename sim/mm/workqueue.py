"""Deferred kernel work: ``schedule_work`` on the system workqueue and the kworker that runs it.

Used by the ``purge_context: workqueue`` mechanism (Linux 5.18, Uladzislau Rezki, "mm/vmalloc:
Move draining areas out of caller context", v3 31 Jan 2022): ``free_vmap_area_noflush`` queues
``drain_vmap_work`` instead of purging in the caller's context.

The model of kernel/workqueue.c, reduced to what one work item needs:

* ``schedule_work`` sets the item's PENDING bit (``test_and_set_bit``); if it was already set
  the call is a no-op. Otherwise the item is inserted into the worklist of the queuing CPU's
  worker pool (``system_wq`` is per-CPU bound, so ``WORK_CPU_UNBOUND`` means the local CPU) under
  ``pool->lock``, and an idle kworker is woken. If the item is still running elsewhere it is
  queued where it runs (workqueue non-reentrancy), so it runs again there when it finishes.
* The worker clears PENDING before it calls the function (``process_one_work``).
* The kworker is a separate execution context with the identity of the CPU it runs on (its
  socket, its cache lines, its own TLB: a flush it sends does not IPI that CPU, it flushes
  locally). It starts ``mutex_wake_ns`` after being woken (wake-up and context switch, the
  cost the model already uses for a woken mutex waiter), and takes the CPU at the first point
  where the CPU's task can be preempted (``sim/engine/cpu.py`` ``RunQueue``: never inside the
  task's spinlock sections or IPI waits). From then until it gives the CPU back (its work
  done, or asleep on a mutex or a completion) the task makes no progress past its next
  scheduling point, and every stretch of work the kworker computes is stolen from the task
  exactly like an interrupt handler's time (a task in the middle of a step is paused for
  it). Its spinning on locks and its wait for IPI acknowledgements are not stolen, and IPIs to
  that CPU are taken by the task's context, not the kworker's: an approximation that keeps
  the CPU's own flushes exact.
"""

from __future__ import annotations

from collections.abc import Callable, Generator

import numpy as np
import simpy

from sim.engine.cpu import Cpu, IrqState, RunQueue

Gen = Generator[simpy.Event, None, None]


class Kworker(Cpu):
    """A kworker thread on CPU ``cpu_id``: its computed work is stolen from that CPU's task."""

    __slots__ = ("shared", "cpu_runqueue")

    def __init__(self, env: simpy.Environment, cpu_id: int, socket: int, shared: IrqState
                 ) -> None:
        super().__init__(env, cpu_id, socket, IrqState(cpu_id + 1))  # its own handler queue
        self.shared = shared
        """The machine's interrupt state: where the stolen time is put on the CPU."""
        task = shared.tasks.get(cpu_id)
        if task is not None and task.runqueue is None:
            task.runqueue = RunQueue(task)
        self.cpu_runqueue = task.runqueue if task is not None else None
        """The run queue of the CPU's task (None: no task there to preempt)."""
        machine_task = task if task is not None else next(iter(shared.tasks.values()), None)
        if machine_task is not None:  # the machine's preemption model and the run's metrics
            self.metrics = machine_task.metrics
            self.preemption = machine_task.preemption

    def __repr__(self) -> str:
        return f"kworker/{self.id}"

    def _step_end(self) -> float:
        """Every settle (``settle``, ``spin_lock``, ...) starts here: the charged work is
        stolen from the CPU's task, then the kworker's own clock advances over it."""
        if self.pending > 0:
            self.steal(self.env.now, self.pending)
        return super()._step_end()

    def switch_in(self) -> Gen:
        """Take the CPU: at once if its task can be preempted, else at its next preemption
        point (``preempt_enable()`` reaching zero)."""
        rq = self.cpu_runqueue
        if rq is not None:
            event = rq.switch_in()
            if event is not None:
                yield event

    def switch_out(self) -> None:
        """Give the CPU back to its task."""
        if self.cpu_runqueue is not None:
            self.cpu_runqueue.switch_out()

    def run(self, body: Gen) -> Gen:
        """``worker_thread`` running ``body`` once woken: take the CPU, run, settle, give the
        CPU back."""
        yield from self.switch_in()
        yield from body
        yield from self.settle()
        self.switch_out()

    def sleep_on(self, event: simpy.Event) -> Gen:
        """Asleep (a mutex wait, ``wait_for_completion``) the kworker gives its CPU back and
        takes it again, like any woken kworker, once ``event`` has fired."""
        self.switch_out()
        yield from self._wait(event)
        yield from self.switch_in()

    def steal(self, start: float, ns: float) -> None:
        """Pause the CPU's task for [start, start + ns), as a handler does (IPIs are still
        taken: the queue's busy time is not extended)."""
        handlers = self.shared.handlers[self.id]
        i = len(handlers)
        while i and handlers[i - 1][0] > start:
            i -= 1
        handlers.insert(i, (start, start + ns, 0.0))
        if self.shared.tracer is not None:
            self.shared.tracer.handlers(f"kworker/{self.id}", np.array([self.id]),
                                        np.array([start]), np.array([start + ns]))


class Work:
    """A ``struct work_struct`` on ``system_wq``: at most one instance pending."""

    def __init__(self, env: simpy.Environment, func: Callable[[Cpu], Gen],
                 kworker: Callable[[int], Kworker], lock_ns: float, atomic_ns: float,
                 wake_ns: float) -> None:
        self.env = env
        self.func = func
        self.kworker = kworker
        self.lock_ns = lock_ns
        self.atomic_ns = atomic_ns
        self.wake_ns = wake_ns
        self.pending = False
        """WORK_STRUCT_PENDING_BIT."""
        self.process: simpy.Process | None = None
        """The worker running (or about to run) the item; None: idle."""
        self.runs = 0

    def schedule_work(self, cpu: Cpu) -> bool:
        """``schedule_work(work)`` from ``cpu``: False if it was already pending."""
        cpu.charge(self.atomic_ns)  # test_and_set_bit(WORK_STRUCT_PENDING_BIT, ...)
        if self.pending:
            return False
        self.pending = True
        cpu.charge(self.lock_ns)  # insert_work() under pool->lock, wake_up_worker()
        if self.process is None:
            worker = self.kworker(cpu.id)
            self.process = self.env.process(self.worker(worker, self.env.now + cpu.pending))
        return True

    def worker(self, kworker: Kworker, woken: float) -> Gen:
        """``worker_thread``: wake up, then ``process_one_work`` while the item is pending."""
        yield self.env.timeout(max(0.0, woken - self.env.now) + self.wake_ns)
        yield from kworker.run(self.process_one_work(kworker))
        self.process = None

    def process_one_work(self, kworker: Kworker) -> Gen:
        """``process_one_work`` while the item is pending."""
        while self.pending:
            self.pending = False  # set_work_pool_and_clear_pending()
            self.runs += 1
            yield from self.func(kworker)

    def idle(self) -> bool:
        return self.process is None
