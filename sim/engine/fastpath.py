"""Every use of SimPy internals, in one place, each marked with why.

The engine reads the clock and schedules events without the layers of calls SimPy's public
API adds: a clock read as a plain attribute (:class:`Environment`), a timeout queued directly
(:func:`sleep`), a lock's handover event made and fired directly (:func:`handover_event`,
:func:`succeed_after`), the CPUs' processes resumed through a short path
(:class:`LeanProcess`), a sleep that would be the very next event skipped (:func:`skip`);
and the busy tree's scan of a small block without numpy (:func:`scan_lists`). Each
keeps SimPy's semantics exactly (same times, priorities and event ids, so the same order of
events); the code it stands for is named in a ``NOTE: inlined from ...`` comment, as SimPy
marks its own inlining. SimPy 4.1 (``simpy>=4.1.2,<5`` in pyproject.toml): the internals are
``Environment._now``, ``_queue``, ``_eid``, ``_active_proc`` and ``Event._ok``/``_value``.
"""

from __future__ import annotations

import gc
from bisect import bisect_right
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from heapq import heappush
from itertools import compress, count, repeat
from operator import ge, sub

import simpy
from simpy.core import StopSimulation
from simpy.events import NORMAL, URGENT, ProcessGenerator, Timeout, _describe_frame

consume = deque(maxlen=0).extend
"""Exhausts an iterator in C (the side effects of a ``map`` are the point)."""

_new = object.__new__

GC_YOUNG_THRESHOLD = 50_000
"""Allocations between two collections of the youngest generation during a run (CPython's
default is 700)."""


@contextmanager
def collector_tuned() -> Iterator[None]:
    """Run a simulation with the cyclic garbage collector kept off its long-lived objects.

    NOTE: a speed trick, not SimPy's. Almost everything a run frees goes at once by reference
    counting; the collector's cost is its full collections, which walk every live object of
    the model (the busy tree's areas, the histograms: tens of ms each, 11-16% of a long run).
    The objects made before the run (the set-up) are frozen out of collection, and the young
    generation is collected less often; both are undone when the run ends, so a process that
    runs many simulations frees each one's objects as before. Collection never changes what a
    run computes, only when unreachable cycles are freed."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


class Environment(simpy.Environment):
    """A :class:`simpy.Environment` whose ``now`` is read as fast as an attribute.

    NOTE: inlined from ``Environment.now`` for performance. SimPy's ``now`` is a property
    returning ``self._now``: a Python call on every read (CPython 3.11 does not specialise
    property reads), and the model reads the clock several times per operation. Here
    ``_now`` is a slot and ``now`` the same slot's descriptor, so both names read one value,
    which SimPy's own ``step()`` keeps writing as ``_now``. Nothing else changes."""

    __slots__ = ("_now",)


Environment.now = Environment.__dict__["_now"]  # type: ignore[assignment,misc]


def sleep(env: simpy.Environment, delay: float) -> Timeout:
    """``env.timeout(delay)`` for a positive ``delay``, without its layers of calls: the same
    :class:`simpy.Timeout`, scheduled as ``Environment.schedule`` does (same time, priority
    and event id, so events keep their order)."""
    # NOTE: inlined from Timeout.__init__ and Environment.schedule for performance
    event = _new(Timeout)
    event.env = env
    event.callbacks = []
    event._value = None
    event._delay = delay
    event._ok = True
    heappush(env._queue, (env._now + delay, NORMAL, next(env._eid), event))
    return event


def handover_event(env: simpy.Environment) -> simpy.Event:
    """``simpy.Event(env)``: the event a lock waiter waits on until the lock is handed over."""
    # NOTE: inlined from Event.__init__ for performance (one per contended acquisition)
    event = _new(simpy.Event)
    event.env = env
    event.callbacks = []
    return event


def succeed_after(env: simpy.Environment, event: simpy.Event, delay: float) -> None:
    """``event.succeed()`` ``delay`` ns from now: what :class:`simpy.Timeout` does with its
    own event, for an event that already exists (a lock handover after its handoff cost)."""
    # NOTE: inlined from Event.succeed and Environment.schedule(event, NORMAL, delay) for
    # performance
    event._ok = True
    event._value = None
    heappush(env._queue, (env._now + delay, NORMAL, next(env._eid), event))


class LeanProcess(simpy.Process):
    """A :class:`simpy.Process` for the CPUs' workloads, whose resumption takes a short path
    in the common case: the event succeeded and the generator yields an event not yet
    processed. Every other case takes SimPy's own steps, so the process schedules the same
    events at the same moments. While it runs as the last callback of the event processed,
    a CPU may :func:`skip` a sleep instead of a round trip through the event queue."""

    def __init__(self, env: simpy.Environment, generator: ProcessGenerator) -> None:
        super().__init__(env, generator)
        self._send = generator.send
        self._resume_callback = self._resume
        """One bound method, appended to every awaited event (equal to ``self._resume``, so
        ``Process.interrupt`` still finds it)."""
        self._awaited: list | tuple = ()
        """The callbacks of the event awaited, if this process registered there itself."""
        self.last = False
        """While the process runs: it is the last callback of the event being processed, so
        nothing else runs before the next event (:func:`skip`)."""

    def _resume(self, event: simpy.Event) -> None:
        awaited, self._awaited = self._awaited, ()
        self.last = bool(awaited) and awaited[-1] is self._resume_callback
        if not event._ok:  # the failure is thrown into the generator
            super()._resume(event)
            return
        env = self.env
        env._active_proc = self
        try:
            event = self._send(event._value)
        except StopIteration as stop:
            self._end(True, stop.args[0] if stop.args else None)
            return
        except BaseException as error:
            error.__traceback__ = error.__traceback__.tb_next  # as SimPy: not this frame
            self._end(False, error)
            return
        try:
            callbacks = event.callbacks
        except AttributeError:
            if hasattr(event, "callbacks"):
                raise
            raise self._invalid_yield(event) from None
        if callbacks is None:  # already processed: SimPy resumes with it at once
            super()._resume(event)
            return
        callbacks.append(self._resume_callback)
        self._awaited = callbacks
        self._target = event
        env._active_proc = None

    def _end(self, ok: bool, value: object) -> None:
        """The generator returned (``ok``) or raised: the process is triggered with that."""
        self._ok = ok
        self._value = value
        self.env.schedule(self)
        self._target = None
        self.env._active_proc = None

    def _invalid_yield(self, value: object) -> RuntimeError:
        """SimPy's error for a generator that yields something other than an event."""
        frame = _describe_frame(self._generator.gi_frame)
        return RuntimeError(f'\n{frame}Invalid yield value "{value}"')


def skip(env: simpy.Environment, delay: float) -> bool:
    """Advance the clock by ``delay`` at once, if ``sleep(env, delay)`` would be the next event
    processed and would resume only the running :class:`LeanProcess`: ``Environment.step``
    would make it go on at the same time, with nothing run in between. Its event id is used
    up, so later events keep theirs. False: nothing done, sleep."""
    process = env._active_proc
    if type(process) is not LeanProcess or not process.last:
        return False
    at = env._now + delay
    queue = env._queue
    if queue and queue[0][0] <= at:  # an event due by then (at ``at``: an earlier id) first
        return False
    next(env._eid)
    env._now = at
    return True


def stops_the_run(event: simpy.Event) -> None:
    """Make ``event`` end whichever ``env.run()`` is under way when it is processed, as
    ``env.run(until=event)`` does (a run sliced for a progress bar stops where an unsliced
    one would)."""
    # NOTE: SimPy's own mechanism for run(until=event), used by a run in several slices
    event.callbacks.append(StopSimulation.callback)


def has_stopped(event: simpy.Event) -> bool:
    """Whether an event of :func:`stops_the_run` has been processed (and so ended a run):
    SimPy then keeps only the callbacks after the stop, so ``processed`` stays False."""
    return event.callbacks is None or StopSimulation.callback not in event.callbacks


def run_slice(env: simpy.Environment, until: float) -> None:
    """``env.run(until=until)``, leaving nothing behind if the run is stopped sooner by an
    event of :func:`stops_the_run`: SimPy's numeric ``until`` is an URGENT event at that time
    (it stops the run before anything else due then, so slicing moves no event), and its stop
    is taken off it when it did not end the slice (it would end a later run). When a stop
    ends a run, SimPy reschedules its event with the callbacks left (none here)."""
    # NOTE: inlined from Environment.run(until=number), keeping a handle on its until event
    end = simpy.Event(env)
    end._ok = True
    end._value = None
    env.schedule(end, URGENT, until - env.now)
    end.callbacks.append(StopSimulation.callback)
    env.run(until=None)  # ended by one of the two stops
    if end.callbacks and StopSimulation.callback in end.callbacks:  # the other one did
        end.callbacks.remove(StopSimulation.callback)


def scan_lists(starts: list[int], ends: list[int], i: int, addr: int, size: int, align: int,
               vend: int, hole: int) -> tuple[bool, int, int, int]:
    """:func:`sim.mm.busy_tree.scan_arrays` (the busy tree's first-fit walk over the
    areas of one block) over ``starts[i:]``, ``ends[i:]``, without making arrays.

    NOTE: a speed trick, not SimPy's. Below ``busy_tree.SMALL_SCAN`` areas numpy's cost per
    call outweighs its cost per area; page-aligned walks (``align == 1``: every vmalloc) are
    taken in C-level passes over the lists instead. The candidates after the first are the
    ends, so the walk ends at the first end past ``vend - size`` (``bisect``) unless it stops
    earlier at the first gap of at least ``size``: the gaps are made in one ``map``, the
    widest (``max``) says whether one fits, and only then is the first found (``compress`` of
    the gap comparisons). Other alignments take the plain loop. The same integers result."""
    n = len(starts)
    reach = addr + size
    if reach <= starts[i] or reach > vend:
        return True, addr, 0, hole
    if align != 1:
        return _scan_aligned(starts, ends, i, addr, size, align, vend, hole)
    first = starts[i] - addr
    k = min(bisect_right(ends, vend - size, i, n) + 1, n) - i  # the walk's end by vend
    gaps = list(map(sub, starts[i + 1:i + k], ends[i:i + k - 1]))  # gaps[j - 1]: at j
    widest = max(gaps, default=first)
    if widest >= size:  # a gap fits before the end by vend: the walk stops at the first
        k = next(compress(count(1), map(ge, gaps, repeat(size))))
        widest = max(gaps[:k - 1], default=first)
    hole = max(hole, first, widest)
    if i + k < n:
        return True, ends[i + k - 1], k, hole
    return False, ends[-1], k, hole


def _scan_aligned(starts: list[int], ends: list[int], i: int, addr: int, size: int,
                  align: int, vend: int, hole: int) -> tuple[bool, int, int, int]:
    """:func:`scan_lists` for ``align > 1``: the walk one area at a time."""
    for j in range(i, len(starts)):
        s = starts[j]
        if addr + size <= s or addr + size > vend:
            return True, addr, j - i, hole
        if s - addr > hole:
            hole = s - addr
        addr = -(-ends[j] // align) * align  # ALIGN(va_end, align)
    return False, addr, len(starts) - i, hole
