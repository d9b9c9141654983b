"""The O(log N) busy-tree walk against a line-by-line model of the kernel's first-fit loop."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.mm import busy_tree
from sim.mm.alloc import FreeVmapCache, first_fit, free_vmap_cache_on_free
from sim.mm.busy_tree import BusyTree, align_up


def kernel_first_fit(areas, cache, size, align, vstart, vend):
    """alloc_vmap_area's search (Linux 3.10..5.1) over a plain sorted list, step by step."""
    if cache.node is None or size < cache.hole_size or vstart < cache.vstart \
            or align < cache.align:
        cache.hole_size = 0
        cache.node = None
    cache.vstart, cache.align = vstart, align
    if cache.node is not None:
        k = [s for s, _ in areas].index(cache.node)
        addr = align_up(areas[k][1], align)
    else:
        addr = align_up(vstart, align)
        ks = [j for j, (_, e) in enumerate(areas) if e >= addr]
        if not ks:
            return (addr if addr + size <= vend else None), 0
        k = ks[0]
    walked = 0
    while addr + size > areas[k][0] and addr + size <= vend:
        if addr + cache.hole_size < areas[k][0]:
            cache.hole_size = areas[k][0] - addr
        addr = align_up(areas[k][1], align)
        walked += 1
        if k == len(areas) - 1:
            break
        k += 1
    return (addr if addr + size <= vend else None), walked


@st.composite
def layouts(draw):
    n = draw(st.integers(1, 300))
    gaps = draw(st.lists(st.integers(0, 6), min_size=n, max_size=n))
    sizes = draw(st.lists(st.integers(1, 5), min_size=n, max_size=n))
    areas, addr = [], draw(st.integers(0, 4))
    for gap, size in zip(gaps, sizes):
        addr += gap
        areas.append((addr, addr + size))
        addr += size
    return areas


def build(areas, monkeypatch, bulk):
    monkeypatch.setattr(busy_tree, "BLOCK", 4)
    monkeypatch.setattr(busy_tree, "SCALAR_STEPS", 2)  # exercise the vectorised scans too
    monkeypatch.setattr(busy_tree, "SMALL_SCAN", 3)  # and the scans of few areas on lists
    tree = BusyTree()
    if bulk:
        tree.bulk_load(np.array([s for s, _ in areas]), np.array([e for _, e in areas]))
    else:
        order = np.random.default_rng(len(areas)).permutation(len(areas))
        for j in order:
            tree.insert(*areas[j])
    return tree


@settings(max_examples=150, deadline=None)
@given(areas=layouts(), data=st.data())
def test_walk_matches_kernel_loop(areas, data, monkeypatch_module):
    tree = build(areas, monkeypatch_module, data.draw(st.booleans()))
    vend = areas[-1][1] + data.draw(st.integers(0, 10))
    for _ in range(20):
        size = data.draw(st.integers(1, 8))
        align = data.draw(st.sampled_from([1, 1, 1, 2, 4]))
        node = data.draw(st.none() | st.sampled_from([s for s, _ in areas]))
        hole = data.draw(st.integers(0, 6))
        mine = FreeVmapCache(node=node, hole_size=hole, vstart=0, align=1)
        ref = FreeVmapCache(node=node, hole_size=hole, vstart=0, align=1)
        fit = first_fit(tree, mine, size, align, 0, vend)
        addr, walked = kernel_first_fit(areas, ref, size, align, 0, vend)
        assert (fit.addr, fit.walked, mine.hole_size) == (addr, walked, ref.hole_size)


@settings(max_examples=60, deadline=None)
@given(areas=layouts(), data=st.data())
def test_erase_insert_keep_walk_exact(areas, data, monkeypatch_module):
    tree = build(areas, monkeypatch_module, True)
    live = list(areas)
    for _ in range(data.draw(st.integers(1, 40))):
        if live and data.draw(st.booleans()):
            victim = data.draw(st.sampled_from(live))
            tree.erase(victim[0])
            live.remove(victim)
        else:
            cache = FreeVmapCache()
            size = data.draw(st.integers(1, 6))
            fit = first_fit(tree, cache, size, 1, 0, 10_000)
            addr, _ = kernel_first_fit(live, FreeVmapCache(), size, 1, 0, 10_000) if live \
                else (0, 0)
            assert fit.addr == addr
            tree.insert(fit.addr, fit.addr + size)
            live = sorted(live + [(fit.addr, fit.addr + size)])
        assert tree.count == len(live)
    if live:
        for size in (1, 3, 7):
            fit = first_fit(tree, FreeVmapCache(), size, 1, 0, 10_000)
            ref = kernel_first_fit(live, FreeVmapCache(), size, 1, 0, 10_000)
            assert (fit.addr, fit.walked) == ref


def test_cache_moves_to_predecessor_on_free():
    tree = BusyTree()
    for s in (0, 10, 20):
        tree.insert(s, s + 5)
    cache = FreeVmapCache(node=20)
    free_vmap_cache_on_free(tree, cache, 10, 15)
    assert cache.node == 0  # rb_prev of the freed area
    free_vmap_cache_on_free(tree, cache, 20, 25)
    assert cache.node == 0  # freed area above the cache: unchanged
