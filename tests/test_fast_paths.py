"""The result-preserving fast paths: each computes what the plain path it stands for does.

- ``IrqState.deliver_one`` (a device interrupt on one CPU) against ``deliver`` with
  one-element arrays;
- ``SafetyChecker.flushed`` taking many areas at once (one pass over its sorted starts)
  against taking them one flush each;
- ``collector_tuned``: the collector's thresholds and frozen objects are back as they were
  after a run, and after a run that raised;
- the ``fastpath.Environment`` clock: ``now`` and SimPy's ``_now`` are one value;
- the busy tree's scan of a small block on its lists (``fastpath.scan_lists``) against the
  numpy scan of the same block (``busy_tree.scan_arrays``), integer for integer.
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
from sim.engine.fastpath import Environment, collector_tuned, scan_lists
from sim.mm.busy_tree import scan_arrays
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


@st.composite
def scans(draw: st.DrawFn) -> tuple[list[int], list[int], int, int, int, int, int, int]:
    """A block of sorted, non-overlapping areas and a scan of it: the first area scanned, the
    candidate address (near that area's start: an aligned one may pass it), size, alignment,
    ``vend`` and the hole seen so far."""
    n = draw(st.integers(1, 80))
    gaps = draw(st.lists(st.integers(0, 9), min_size=n, max_size=n))
    sizes = draw(st.lists(st.integers(1, 65), min_size=n, max_size=n))
    starts, ends, addr = [], [], draw(st.integers(0, 1 << 40))
    for gap, size in zip(gaps, sizes, strict=True):
        starts.append(addr + gap)
        ends.append(addr + gap + size)
        addr += gap + size
    i = draw(st.integers(0, n - 1))
    cand = draw(st.integers(max(0, starts[i] - 12), starts[i] + 12))
    vend = draw(st.one_of(st.just(ends[-1] + 1000), st.integers(starts[i], ends[-1] + 20)))
    return (starts, ends, i, cand, draw(st.integers(1, 17)),
            draw(st.sampled_from([1, 1, 1, 2, 4, 16])), vend, draw(st.integers(0, 12)))


@settings(max_examples=400, deadline=None)
@given(scans())
def test_scanning_a_block_on_its_lists_is_the_numpy_scan(
        scan: tuple[list[int], list[int], int, int, int, int, int, int]) -> None:
    starts, ends, i, addr, size, align, vend, hole = scan
    arrays = scan_arrays(np.array(starts[i:], dtype=np.int64),
                         np.array(ends[i:], dtype=np.int64), addr, size, align, vend, hole)
    lists = scan_lists(starts, ends, i, addr, size, align, vend, hole)
    assert lists == arrays
    assert [type(x) for x in lists] == [bool, int, int, int] == [type(x) for x in arrays]
