"""Simulated CPUs: costed execution, time stolen by interrupt handlers, and lock waits.

A CPU accumulates the cost of consecutive steps that touch no shared state (``charge``) and
turns them into one SimPy timeout when it next needs the clock to be right (``settle``), for
instance before taking a lock. Interrupt handlers (TLB-flush IPIs) run on a CPU from the moment
they arrive, whatever it is doing: they pause the current step, so a lock holder that takes an
IPI holds the lock longer. Handlers on one CPU run one after another. While a CPU spins on a lock
or waits for IPI acknowledgements, handler time overlaps the wait; only a handler still running
when the wait ends delays the CPU, and work a handler leaves behind (a TLB refill) is always paid,
once for a run of handlers with none of the CPU's own work between them.

A kworker woken on a CPU (:class:`RunQueue`) takes it from the CPU's task only at a point where
the task can be preempted (``preempt_count`` zero: no spinlock held or spun on, no wait for IPI
acknowledgements; ``CONFIG_PREEMPT``), and the task then waits at its next scheduling point
until every kworker that took the CPU has given it back.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator
from itertools import repeat
from typing import TYPE_CHECKING

import numpy as np
import simpy

from sim.engine.fastpath import consume, handover_event, skip, sleep
from sim.engine.locks import SpinLock

if TYPE_CHECKING:
    from sim.engine.metrics import Metrics
    from sim.engine.tracer import Tracer


class IrqState:
    """Per-CPU interrupt handlers: when each CPU's queued handlers finish, and what they run.

    Memory stays bounded however long a CPU waits: every ``fold_every`` delivered handlers,
    the handlers that have already ended on CPUs that are *waiting* (spinning on a lock or for
    IPI acknowledgements) are consumed at once, exactly as :meth:`Cpu.waited` would consume
    them when the wait ends (the work they leave behind becomes the CPU's charged work),
    instead of piling up for the whole wait.
    """

    def __init__(self, ncpus: int) -> None:
        self.busy_until = np.zeros(ncpus)
        """Time at which the handlers queued on each CPU finish (vectorised fan-out)."""
        self.handlers: list[deque[tuple[float, float, float]]] = [deque() for _ in range(ncpus)]
        """Per CPU, in time order: (start, end, work left behind) of each handler."""
        self.tracer: Tracer | None = None
        """Records every handler on its target; None: off."""
        self.env: simpy.Environment | None = None
        """The clock of the CPUs (bound by :class:`Cpu`); None: handlers are never folded."""
        self.waiting: dict[int, Cpu] = {}
        """CPUs now waiting (lock spin, ack wait), by id: their ended handlers can be folded."""
        self.tasks: dict[int, Cpu] = {}
        """The CPU (its task's context) of each id, as each registers: where a kworker of
        that CPU finds the task it preempts."""
        self.fold_every = 16 * ncpus
        self._delivered = 0
        self._queues: dict[bytes, list[deque[tuple[float, float, float]]]] = {}

    def queues(self, targets: np.ndarray) -> list[deque[tuple[float, float, float]]]:
        """The handler queues of ``targets``, in their order (cached per target set)."""
        key = targets.tobytes()
        queues = self._queues.get(key)
        if queues is None:
            queues = self._queues[key] = [self.handlers[cpu] for cpu in targets.tolist()]
        return queues

    def deliver(self, targets: np.ndarray, arrivals: np.ndarray, handler_ns: float,
                leftover_ns: float = 0.0, name: str = "irq") -> np.ndarray:
        """Run a handler of ``handler_ns`` on each target from its arrival; return ack times.

        Handlers on one CPU run one after another. ``leftover_ns`` is work the handler leaves
        the CPU without delaying the ack (refilling the TLB after a full flush). ``name``
        names the handler in a trace.
        """
        start = np.maximum(arrivals, self.busy_until[targets])
        done = start + handler_ns
        self.busy_until[targets] = done
        # one C-level pass: queue[k].append((start[k], done[k], leftover_ns)) for every target
        consume(map(deque.append, self.queues(targets),
                      zip(start.tolist(), done.tolist(), repeat(leftover_ns))))
        if self.tracer is not None:
            self.tracer.handlers(name, targets, start, done)
        self._delivered += len(targets)
        if self._delivered >= self.fold_every:
            self.fold()
        return done

    def deliver_one(self, cpu: int, arrival: float, handler_ns: float,
                    leftover_ns: float = 0.0, name: str = "irq") -> float:
        """:meth:`deliver` to one CPU (a device interrupt), without one-element arrays: the
        same values, in plain floats."""
        start = max(arrival, float(self.busy_until[cpu]))
        done = start + handler_ns
        self.busy_until[cpu] = done
        self.handlers[cpu].append((start, done, leftover_ns))
        if self.tracer is not None:
            self.tracer.handler(name, cpu, start, done)
        self._delivered += 1
        if self._delivered >= self.fold_every:
            self.fold()
        return done

    def fold(self) -> None:
        """Consume the ended handlers of every waiting CPU (what its :meth:`Cpu.waited` will
        do when the wait ends): a waiting CPU's charged work is zero until then, so keeping
        the largest leftover now gives the very same debt."""
        self._delivered = 0
        if self.env is None:
            return
        now = self.env.now
        for cpu in self.waiting.values():
            handlers = cpu.handlers
            while handlers and handlers[0][1] <= now:
                leftover = handlers.popleft()[2]
                if leftover > cpu.pending:
                    cpu.pending = leftover


def finish_time(handlers: deque[tuple[float, float, float]], now: float, work: float) -> float:
    """When ``work`` ns of a CPU's own work started at ``now`` ends, given its handlers.

    Consumes the handlers that run before that end: a handler already running delays the start;
    one arriving meanwhile pauses the work. Work a handler leaves behind (the TLB refill after
    a full flush) is owed once per stretch of handlers with none of the CPU's own work between
    them: a second flush of a TLB the CPU has not used since the first leaves nothing more to
    refill.
    """
    unpaid = 0.0
    while handlers:
        s, e, leftover = handlers[0]
        if e <= now:  # ran while this CPU waited: only the work it left behind remains
            ran = 0.0
        elif s >= now + work:  # starts after the work is done
            break
        else:
            ran = max(0.0, s - now)  # work done before the handler started
            work -= ran
            now = e
        if ran > 0.0:
            unpaid = 0.0
        if leftover > unpaid:
            work += leftover - unpaid
            unpaid = leftover
        handlers.popleft()
    return now + work


class RunQueue:
    """The kworkers woken on one CPU, as the scheduler lets them preempt its task.

    A woken kworker gets the CPU at once if the task can be preempted, else at the task's next
    preemption point (``preempt_enable()`` reaching zero: the end of a spinlock section, of an
    IPI wait); from then on until it gives the CPU back the task makes no progress past its
    next scheduling point (it takes no lock, touches no shared state). Modelled on
    ``CONFIG_PREEMPT`` (Linux 2.6 on), where ``preempt_enable()`` calls ``schedule()`` when a
    wake-up set ``need_resched``. With the task's ``preemption`` ``voluntary`` or ``none``
    (``CONFIG_PREEMPT_VOLUNTARY``, ``_NONE``) a woken kworker waits instead for the task's
    next explicit point (:meth:`Cpu.cond_resched`; with ``voluntary`` also
    :meth:`Cpu.might_sleep`), where the kernel's ``need_resched`` test schedules it.
    """

    __slots__ = ("env", "task", "running", "woken", "resume", "full")

    def __init__(self, task: Cpu) -> None:
        self.env = task.env
        self.task = task
        self.full = task.preemption == "full"
        """CONFIG_PREEMPT: any preemption point lets a woken kworker in."""
        self.running = 0
        """Kworkers that have the CPU now."""
        self.woken: list[simpy.Event] = []
        """Kworkers waiting for the task's next preemption point."""
        self.resume: simpy.Event | None = None
        """Fired when the last running kworker gives the CPU back (the task waits on it)."""

    def switch_in(self) -> simpy.Event | None:
        """A woken kworker asks for the CPU: None if it has it now, else the event of the
        task's next preemption point."""
        if (self.full or self.task.idle) and not self.task.preempt_count:
            self.running += 1
            return None
        event = handover_event(self.env)
        self.woken.append(event)
        return event

    def preempt_point(self) -> None:
        """The task's ``preempt_count`` reached zero under ``CONFIG_PREEMPT``, or it reached an
        explicit scheduling point: the woken kworkers take the CPU."""
        woken, self.woken = self.woken, []
        self.running += len(woken)
        for event in woken:
            event.succeed()

    def switch_out(self) -> None:
        """A kworker gives the CPU back (its work done)."""
        self.running -= 1
        if not self.running and self.resume is not None:
            resume, self.resume = self.resume, None
            resume.succeed()

    def wait(self) -> simpy.Event:
        """The event the task waits on at a scheduling point while kworkers have the CPU."""
        if self.resume is None:
            self.resume = handover_event(self.env)
        return self.resume


class Cpu:
    """One online CPU executing kernel code paths on behalf of a workload."""

    __slots__ = ("env", "id", "socket", "irq", "handlers", "pending", "preempt_count",
                 "runqueue", "preempt_off_since", "metrics", "preemption", "idle")

    def __init__(self, env: simpy.Environment, cpu_id: int, socket: int, irq: IrqState) -> None:
        self.env = env
        self.id = cpu_id
        self.socket = socket
        self.irq = irq
        irq.env = env
        self.handlers = irq.handlers[cpu_id]
        self.pending = 0.0
        self.preempt_count = 0
        """Non-zero while the CPU holds or spins on a spinlock or waits for IPI acks: an
        interrupt then returns to the same task (no preemption)."""
        self.runqueue: RunQueue | None = None
        """The kworkers that may preempt this CPU's task (made with the first of them)."""
        self.preempt_off_since = 0.0
        """When ``preempt_count`` last left zero."""
        self.metrics: Metrics | None = None
        """Where the sections run with preemption off are recorded (None: nowhere)."""
        self.idle = False
        """The CPU's task is asleep (a mutex wait) or has ended (the run drains): a woken
        kworker takes the CPU at once in every preemption model."""
        self.preemption = "full"
        """The kernel's preemption model (``none``, ``voluntary``, ``full``), as the
        machine sets it: where a woken kworker can take the CPU (:class:`RunQueue`)."""
        irq.tasks.setdefault(cpu_id, self)

    def __repr__(self) -> str:
        return f"CPU{self.id}"

    def charge(self, ns: float) -> None:
        """Add the cost of a step that touches no shared state."""
        self.pending += ns

    def settle(self) -> Generator[simpy.Event, None, None]:
        """Advance the clock over the charged work and the handlers that interrupt it.

        Handlers may be queued while the CPU sleeps through its step; on waking it checks for
        any that arrived before the step's end and redoes the work they displaced.
        """
        if self.runqueue is not None and self.runqueue.running:
            yield from self.preempted()
        env = self.env
        end = self._step_end()
        while end is not None:
            if end > env.now and not skip(env, end - env.now):
                yield sleep(env, end - env.now)
            end = self._redo_end(end)

    def _step_end(self) -> float:
        """Start settling: take the charged work; when it ends, given the queued handlers
        (every settling primitive starts here, so a :class:`Kworker` steals its work here)."""
        work, self.pending = self.pending, 0.0
        now = self.env.now
        handlers = self.handlers
        return finish_time(handlers, now, work) if handlers else now + work

    def _redo_end(self, end: float) -> float | None:
        """At ``end``: None if no handler arrived during the step; otherwise the step's new
        end (the work after the handler's arrival was not done)."""
        handlers = self.handlers
        if not handlers or handlers[0][0] >= end:
            return None
        now = handlers[0][0]
        return finish_time(handlers, now, end - now)

    def waited(self) -> None:
        """After a wait (lock spin, ack wait): handlers that ran during it cost nothing but the
        work they left behind, owed once however many ran (a spin does not refill the TLB
        between two flushes); one still running delays the next step."""
        handlers = self.handlers
        now = self.env.now
        while handlers and handlers[0][1] <= now:
            leftover = handlers.popleft()[2]
            if leftover > self.pending:
                self.pending = leftover

    def _wait(self, event: simpy.Event) -> Generator[simpy.Event, None, None]:
        """Wait for ``event``, the CPU's charged work being zero (settled): meanwhile its
        ended handlers may be folded (:meth:`IrqState.fold`)."""
        waiting = self.irq.waiting
        waiting[self.id] = self
        yield event
        del waiting[self.id]
        self.waited()

    def wait_until(self, t: float) -> Generator[simpy.Event, None, None]:
        """Spin until absolute time ``t`` (handlers overlap the spin)."""
        yield from self.settle()
        env = self.env
        if t > env.now:
            yield from self._wait(sleep(env, t - env.now))

    def spin_lock(self, lock: SpinLock) -> Generator[simpy.Event, None, None]:
        """``spin_lock(lock)``: settle the clock, then take the lock or spin for it."""
        if self.runqueue is not None and self.runqueue.running:
            yield from self.preempted()
        env = self.env  # settle(), written out: one generator level less per resume
        end = self._step_end()
        while end is not None:
            if end > env.now and not skip(env, end - env.now):
                yield sleep(env, end - env.now)
            end = self._redo_end(end)
        if not self.preempt_count:  # preempt_disable(), written out
            self.preempt_off_since = env.now
        self.preempt_count += 1
        wait = lock.acquire(self)
        if wait is not None:
            yield from self._wait(wait)

    def spin_unlock(self, lock: SpinLock) -> Generator[simpy.Event, None, None]:
        """``spin_unlock(lock)`` at the end of the charged critical section."""
        env = self.env  # settle(), written out: one generator level less per resume
        end = self._step_end()
        while end is not None:
            if end > env.now and not skip(env, end - env.now):
                yield sleep(env, end - env.now)
            end = self._redo_end(end)
        lock.release(self)
        self.preempt_count -= 1  # preempt_enable(), written out
        if not self.preempt_count:
            self._preemptible_again()

    def preempt_disable(self) -> None:
        """``preempt_disable()``: no kworker takes the CPU until :meth:`preempt_enable`."""
        if not self.preempt_count:
            self.preempt_off_since = self.env.now
        self.preempt_count += 1

    def preempt_enable(self) -> None:
        """``preempt_enable()``: at zero, a kworker woken meanwhile takes the CPU."""
        self.preempt_count -= 1
        if not self.preempt_count:
            self._preemptible_again()

    def _preemptible_again(self) -> None:
        """``preempt_count`` is back at zero: the section run with preemption off is
        recorded, and a kworker woken meanwhile takes the CPU."""
        if self.metrics is not None:
            self.metrics.preempt_off.record(self.env.now - self.preempt_off_since)
        if self.runqueue is not None and self.runqueue.woken and self.runqueue.full:
            self.runqueue.preempt_point()

    def go_idle(self) -> None:
        """The CPU's task has ended: the kworkers woken meanwhile run now."""
        self.idle = True
        self._schedule()

    def _schedule(self) -> None:
        """``schedule()`` at an explicit point (outside any preempt-off section): the
        kworkers woken on this CPU take it."""
        if self.need_resched() and not self.preempt_count:
            self.runqueue.preempt_point()

    def need_resched(self) -> bool:
        """``need_resched()``: a woken kworker waits for this CPU."""
        return self.runqueue is not None and bool(self.runqueue.woken)

    def cond_resched(self) -> Generator[simpy.Event, None, None]:
        """``cond_resched()`` (and the scheduling point of a ``cond_resched_lock()`` break,
        of blocking, of a return to user space), in every preemption model: a woken kworker
        takes the CPU now, and the task goes on once they have all given it back."""
        self._schedule()
        if self.runqueue is not None and self.runqueue.running:
            yield from self.preempted()

    def might_sleep(self) -> Generator[simpy.Event, None, None]:
        """``might_sleep()``: a scheduling point under ``CONFIG_PREEMPT_VOLUNTARY`` (under
        ``full`` the preemption point came already, under ``none`` there is none)."""
        if self.preemption == "voluntary":
            yield from self.cond_resched()

    def preempted(self) -> Generator[simpy.Event, None, None]:
        """At a scheduling point while kworkers have the CPU: wait until they give it back.
        The handlers that ran meanwhile interrupted them, not this task: only the work they
        left behind (a TLB refill) is owed, once, on top of the task's charged work."""
        while self.runqueue.running:
            yield self.runqueue.wait()
        handlers = self.handlers
        now = self.env.now
        leftover = 0.0
        while handlers and handlers[0][1] <= now:
            leftover = max(leftover, handlers.popleft()[2])
        self.pending += leftover

    def spin_trylock(self, lock: SpinLock) -> Generator[simpy.Event, None, bool]:
        """``spin_trylock(lock)`` at the current time; True if taken."""
        yield from self.settle()
        taken = lock.trylock(self)
        if taken and not self.preempt_count:
            self.preempt_off_since = self.env.now
        self.preempt_count += taken
        return taken

    def mutex_lock(self, lock: SpinLock) -> Generator[simpy.Event, None, None]:
        """``mutex_lock(lock)`` of a mutex modelled as a lock with a wake-up handoff: unlike a
        spinlock's, its waiter (asleep) and its holder can be preempted."""
        yield from self.might_sleep()
        yield from self.settle()
        wait = lock.acquire(self)
        if wait is not None:
            yield from self.sleep_on(wait)

    def sleep_on(self, event: simpy.Event) -> Generator[simpy.Event, None, None]:
        """Sleep until ``event`` (a mutex wait, ``wait_for_completion``), settled: a kworker
        gives its CPU back meanwhile (:class:`~sim.mm.workqueue.Kworker`); a task blocking
        lets the kworkers woken on its CPU run, in every preemption model."""
        self._schedule()
        idle, self.idle = self.idle, True  # asleep: a kworker woken meanwhile runs at once
        yield from self._wait(event)
        self.idle = idle

    def mutex_trylock(self, lock: SpinLock) -> Generator[simpy.Event, None, bool]:
        """``mutex_trylock(lock)``: True if taken."""
        yield from self.settle()
        return lock.trylock(self)

    def mutex_unlock(self, lock: SpinLock) -> Generator[simpy.Event, None, None]:
        """``mutex_unlock(lock)`` at the end of the charged section."""
        yield from self.settle()
        lock.release(self)

    def forget_idle_handlers(self) -> None:
        """The CPU was idle: handlers that ran meanwhile leave no work for its next task."""
        handlers = self.handlers
        now = self.env.now
        while handlers and handlers[0][1] <= now:
            handlers.popleft()
