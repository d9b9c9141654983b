"""The result-preserving fast paths: each computes what the plain path it stands for does.

- ``IrqState.deliver_one`` (a device interrupt on one CPU) against ``deliver`` with
  one-element arrays;
- ``SafetyChecker.flushed`` taking many areas at once (one pass over its sorted starts)
  against taking them one flush each;
- ``collector_tuned``: the collector's thresholds and frozen objects are back as they were
  after a run, and after a run that raised;
- the ``fastpath.Environment`` clock: ``now`` and SimPy's ``_now`` are one value.
"""

from __future__ import annotations

import gc
from bisect import bisect_left

import numpy as np
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.engine.cpu import IrqState
from sim.engine.fastpath import Environment, collector_tuned
from sim.mm.safety import SafetyChecker
from sim.mm.vmap_area import VmapArea

arrivals = st.lists(st.tuples(st.integers(0, 3), st.floats(0, 1e4), st.floats(0, 500),
                              st.sampled_from([0.0, 40.0])), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(arrivals)
def test_deliver_one_is_deliver_to_one_target(events: list[tuple[int, float, float, float]]
                                              ) -> None:
    vector, scalar = IrqState(4), IrqState(4)
    for cpu, at, length, leftover in sorted(events, key=lambda e: e[1]):
        acks = vector.deliver(np.array([cpu]), np.array([at]), length, leftover)
        assert scalar.deliver_one(cpu, at, length, leftover) == acks[0]
    assert scalar.busy_until.tolist() == vector.busy_until.tolist()
    assert [list(q) for q in scalar.handlers] == [list(q) for q in vector.handlers]
    assert all(type(x) is float for q in scalar.handlers for entry in q for x in entry)


def lazily_freed(checker: SafetyChecker, spans: list[tuple[int, int]]) -> list[VmapArea]:
    areas = [VmapArea(start, start + size, 0, ident) for ident, (start, size) in
             enumerate(spans)]
    for t, va in enumerate(areas):
        checker.lazily_freed(va, float(t), 0)
    return areas


class OneByOne(SafetyChecker):
    """``flushed`` as it was: one deletion from the sorted starts per flushed area."""

    def flushed(self, initiated: float, start: int, end: int, full: bool, now: float,
                cpu: int) -> None:
        done = [va for va in self._unflushed.values() if va.freed_lazily_at <= initiated
                and (full or (va.va_start < end and va.va_end > start))]
        for va in done:
            va.log(now, cpu, "flushed")
            del self._unflushed[va.ident]
            del self._starts[bisect_left(self._starts, (va.va_start, va.ident))]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 200), st.integers(1, 8)), min_size=1, max_size=30),
       st.lists(st.tuples(st.integers(0, 30), st.integers(0, 200), st.integers(0, 60),
                          st.booleans()), max_size=6))
def test_flushing_areas_in_one_pass_leaves_what_one_by_one_leaves(
        spans: list[tuple[int, int]], flushes: list[tuple[int, int, int, bool]]) -> None:
    new, old = SafetyChecker(), OneByOne()
    lazily_freed(new, spans)
    lazily_freed(old, spans)
    for initiated, start, size, full in flushes:
        new.flushed(initiated, start, start + size, full, 100.0, 1)
        old.flushed(initiated, start, start + size, full, 100.0, 1)
        assert new._starts == old._starts == sorted(old._starts)
        assert list(new._unflushed) == list(old._unflushed)


def test_the_collector_is_restored_after_a_run_and_after_a_failed_one() -> None:
    before = gc.get_threshold()
    frozen = gc.get_freeze_count()
    with collector_tuned():
        assert gc.get_threshold()[0] > before[0]
        assert gc.get_freeze_count() >= frozen
    assert gc.get_threshold() == before and gc.get_freeze_count() == frozen
    with pytest.raises(RuntimeError), collector_tuned():
        raise RuntimeError("the run failed")
    assert gc.get_threshold() == before and gc.get_freeze_count() == frozen


def test_the_fast_clock_is_simpys_clock() -> None:
    env = Environment()
    seen = []

    def proc(env: simpy.Environment):
        yield env.timeout(5)
        seen.append((env.now, env._now))
        yield env.timeout(2.5)
        seen.append((env.now, env._now))

    env.process(proc(env))
    env.run(until=100)
    assert seen == [(5, 5), (7.5, 7.5)]
    assert env.now == env._now == 100
