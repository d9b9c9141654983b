"""The busy areas: ``vmap_area_root`` and the address-sorted ``vmap_area_list`` together.

Up to Linux 5.3 every busy area (live, and lazily freed but not yet purged) sits in both the
rbtree and the sorted list; ``alloc_vmap_area`` walks the list first-fit. The kernel walk is
O(N); this structure answers the same question in O(log N) Python work so that simulated
machines with a million areas stay cheap: areas are kept as blocks of sorted ``[start, end)``
page ranges with per-block summaries (largest gap inside the block, gap before the block), and a
first-fit walk skips whole blocks whose gaps are all too small while counting the areas it
passes, which is what the simulated walk costs.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from operator import sub

import numpy as np

from sim.engine.fastpath import scan_lists

RB_LIST_WRITE_LINES = 4
"""Cache lines an insert or erase of a ``vmap_area`` in an rbtree plus its sorted list dirties
for the next CPU to touch the same part of the structure (mm/vmalloc.c ``__insert_vmap_area``,
``__free_vmap_area``; lib/rbtree.c): the parent's child link, about one more node recoloured or
rotated (rebalancing is amortised O(1)), and the two list neighbours (``list_add_rcu``,
``list_del_rcu``)."""

BLOCK = 256
"""Target areas per block; a block splits at twice this."""
SCALAR_STEPS = 24
"""Areas examined one by one before a walk switches to vectorised block scans (a numpy scan
costs about as much as this many steps of the Python loop)."""
SMALL_SCAN = 128
"""Areas left in a block below which a page-aligned scan runs on its lists, not on numpy
arrays (:func:`sim.engine.fastpath.scan_lists`). Measured in executed instructions over
12,000 operations of ``seed-i915`` at 64 CPUs with 1e3 areas: 2.2%, 2.6%, 2.6% and 0.4%
fewer than numpy alone at 96, 128, 192 and 256 (the lists cost about as much per area as
``fromiter`` does, numpy's own cost is per call; a block's arrays, once made, serve every
later scan until it changes)."""
SMALL_ALIGNED_SCAN = 48
"""The same for ``align > 1``, whose scan on lists is a loop of Python steps (as fast as the
numpy scan at about 50 areas, measured in process)."""


def align_up(addr: int, align: int) -> int:
    """The kernel's ALIGN(addr, align) for a power-of-two ``align`` (in pages)."""
    return -(-addr // align) * align


class BusyTree:
    """Sorted, non-overlapping busy page ranges with an O(log N) first-fit walk model."""

    def __init__(self) -> None:
        self._starts: list[list[int]] = []
        self._ends: list[list[int]] = []
        self._firsts: list[int] = []
        self._lastends: list[int] = []
        self._inner = np.zeros(0, dtype=np.int64)
        self._bound = np.zeros(0, dtype=np.int64)
        self._lens: list[int] = []
        """Areas per block: a list, not an array (updated on every insert and erase)."""
        self._arrays: list[tuple[int, np.ndarray, np.ndarray] | None] = []
        """Per block, ``(i, starts[i:], ends[i:])`` as arrays for :meth:`_scan_block`, made by
        a scan from area ``i`` since the block last changed (None: no scan since)."""
        self._dirty: set[int] = set()
        self.count = 0

    # --- building -------------------------------------------------------------------------

    def bulk_load(self, starts: np.ndarray, ends: np.ndarray) -> None:
        """Load sorted, non-overlapping ranges into an empty tree (background areas)."""
        if self.count:
            raise RuntimeError("bulk_load needs an empty tree")
        for lo in range(0, len(starts), BLOCK):
            self._starts.append([int(x) for x in starts[lo:lo + BLOCK]])
            self._ends.append([int(x) for x in ends[lo:lo + BLOCK]])
        self.count = len(starts)
        self._rebuild_summaries()

    def _rebuild_summaries(self) -> None:
        self._firsts = [s[0] for s in self._starts]
        self._lastends = [e[-1] for e in self._ends]
        self._lens = [len(s) for s in self._starts]
        self._arrays = [None] * len(self._starts)
        self._inner = np.array([self._inner_gap(b) for b in range(len(self._starts))],
                               dtype=np.int64)
        bound = [0] + [self._firsts[b] - self._lastends[b - 1]
                       for b in range(1, len(self._starts))]
        self._bound = np.array(bound, dtype=np.int64)
        self._dirty.clear()

    def _inner_gap(self, b: int) -> int:
        s, e = self._starts[b], self._ends[b]
        return max(map(sub, s[1:], e[:-1]), default=0)

    def _clean(self) -> None:
        for b in self._dirty:
            self._inner[b] = self._inner_gap(b)
        self._dirty.clear()

    def _set_bound(self, b: int) -> None:
        if 0 < b < len(self._starts):
            self._bound[b] = self._firsts[b] - self._lastends[b - 1]

    # --- updates --------------------------------------------------------------------------

    def insert(self, start: int, end: int) -> None:
        """``__insert_vmap_area``: add ``[start, end)``, which must not overlap a busy area."""
        if not self._starts:
            self._starts.append([start])
            self._ends.append([end])
            self.count = 1
            self._rebuild_summaries()
            return
        b = max(0, bisect_right(self._firsts, start) - 1)
        starts, ends = self._starts[b], self._ends[b]
        i = bisect_left(starts, start)
        split_gap = starts[i] - ends[i - 1] if 0 < i < len(starts) else None
        starts.insert(i, start)
        ends.insert(i, end)
        self.count += 1
        self._lens[b] += 1
        self._arrays[b] = None
        n = len(starts)
        if i == 0:
            self._firsts[b] = start
            self._set_bound(b)
        if i == n - 1:
            self._lastends[b] = end
            self._set_bound(b + 1)
        inner = int(self._inner[b])  # one read of the array: its scalars are slow
        if split_gap is not None and split_gap >= inner:
            self._dirty.add(b)  # the largest gap was split: recompute when next needed
        if b not in self._dirty:
            for j in (i - 1, i):  # gaps on either side of the new area
                if 0 <= j < n - 1:
                    gap = starts[j + 1] - ends[j]
                    if gap > inner:
                        self._inner[b] = inner = gap
        if n > 2 * BLOCK:
            self._split(b)

    def _split(self, b: int) -> None:
        self._clean()
        starts, ends = self._starts[b], self._ends[b]
        half = len(starts) // 2
        self._starts[b:b + 1] = [starts[:half], starts[half:]]
        self._ends[b:b + 1] = [ends[:half], ends[half:]]
        self._firsts[b:b + 1] = [starts[0], starts[half]]
        self._lastends[b:b + 1] = [ends[half - 1], ends[-1]]
        self._lens[b:b + 1] = [half, len(starts) - half]
        self._arrays[b:b + 1] = [None, None]
        self._inner = np.insert(self._inner, b + 1, 0)
        self._inner[b], self._inner[b + 1] = self._inner_gap(b), self._inner_gap(b + 1)
        self._bound = np.insert(self._bound, b + 1, 0)
        self._set_bound(b + 1)

    def erase(self, start: int) -> None:
        """``__free_vmap_area``'s rb_erase + list_del of the area starting at ``start``."""
        b, i = self.position(start)
        starts, ends = self._starts[b], self._ends[b]
        del starts[i]
        del ends[i]
        self.count -= 1
        self._lens[b] -= 1
        self._arrays[b] = None
        n = len(starts)
        if n == 0:
            self._drop_block(b)
            return
        if i == 0:
            self._firsts[b] = starts[0]
            self._set_bound(b)
            self._dirty.add(b)
        if i == n:
            self._lastends[b] = ends[-1]
            self._set_bound(b + 1)
            self._dirty.add(b)
        if 0 < i < n and b not in self._dirty:
            merged = starts[i] - ends[i - 1]
            if merged > self._inner[b]:
                self._inner[b] = merged

    def _drop_block(self, b: int) -> None:
        self._clean()
        del self._starts[b], self._ends[b], self._firsts[b], self._lastends[b]
        del self._lens[b], self._arrays[b]
        self._inner = np.delete(self._inner, b)
        self._bound = np.delete(self._bound, b)
        if b < len(self._starts):
            self._bound[b] = 0
            self._set_bound(b)

    # --- queries --------------------------------------------------------------------------

    def position(self, start: int) -> tuple[int, int]:
        """Block and index of the area starting at ``start`` (KeyError if none)."""
        b = bisect_right(self._firsts, start) - 1
        if b >= 0:
            i = bisect_left(self._starts[b], start)
            if i < len(self._starts[b]) and self._starts[b][i] == start:
                return b, i
        raise KeyError(start)

    def rank(self, start: int) -> int:
        """How many areas lie below the one starting at ``start`` (KeyError if none): the
        steps of a linear search of the sorted list up to it."""
        b, i = self.position(start)
        return sum(map(len, self._starts[:b])) + i

    def area_at(self, b: int, i: int) -> tuple[int, int]:
        return self._starts[b][i], self._ends[b][i]

    def first_ending_at_or_after(self, addr: int) -> tuple[int, int] | None:
        """The rbtree descent of ``alloc_vmap_area``: lowest area with ``va_end >= addr``."""
        b = bisect_left(self._lastends, addr)
        if b == len(self._lastends):
            return None
        return b, bisect_left(self._ends[b], addr)

    def prev_start(self, start: int) -> int | None:
        """``rb_prev()`` of the area at ``start``: the start of its predecessor, if any."""
        b, i = self.position(start)
        if i > 0:
            return self._starts[b][i - 1]
        return self._starts[b - 1][-1] if b > 0 else None

    def last_start(self) -> int | None:
        return self._starts[-1][-1] if self._starts else None

    def walk_first_fit(self, b: int, i: int, addr: int, size: int, align: int, vend: int,
                       hole: int) -> tuple[int, int, int]:
        """Model of the first-fit loop of ``alloc_vmap_area`` (Linux 3.10 .. 5.1).

        Starting at area ``(b, i)`` with candidate ``addr``, step over areas while
        ``addr + size`` does not fit below the next area and stays within ``vend``; each step
        moves ``addr`` to ``ALIGN(va_end, align)`` and raises ``cached_hole_size`` (``hole``)
        to the hole just passed. Returns ``(addr, areas walked, hole)``; the caller checks
        ``addr + size > vend`` for overflow.
        """
        steps = 0
        while True:
            starts, ends = self._starts[b], self._ends[b]
            n = len(starts)
            stop = min(n, i + SCALAR_STEPS)
            while i < stop:
                s = starts[i]
                if addr + size <= s or addr + size > vend:
                    return addr, steps, hole
                if s - addr > hole:
                    hole = s - addr
                addr = ends[i] if align == 1 else align_up(ends[i], align)
                steps += 1
                i += 1
            if i < n:
                found, addr, walked, hole = self._scan_block(b, i, addr, size, align, vend, hole)
                steps += walked
                if found:
                    return addr, steps, hole
            b, i = b + 1, 0
            if b == len(self._starts):
                return addr, steps, hole
            if align == 1:
                b, addr, walked, hole = self._skip_blocks(b, addr, size, vend, hole)
                steps += walked
                if b == len(self._starts):
                    return addr, steps, hole

    def _scan_block(self, b: int, i: int, addr: int, size: int, align: int, vend: int,
                    hole: int) -> tuple[bool, int, int, int]:
        """Walk areas ``i..`` of block ``b`` (see :func:`scan_arrays`): on the lists if few
        are left, else on the block's arrays (kept until the block changes)."""
        starts = self._starts[b]
        if len(starts) - i < (SMALL_SCAN if align == 1 else SMALL_ALIGNED_SCAN):
            return scan_lists(starts, self._ends[b], i, addr, size, align, vend, hole)
        cached = self._arrays[b]
        if cached is not None and cached[0] <= i:  # unchanged since a scan from cached[0]
            lo, s, e = cached
            s, e = s[i - lo:], e[i - lo:]
        else:
            n = len(starts) - i
            s = np.fromiter(starts[i:], np.int64, n)
            e = np.fromiter(self._ends[b][i:], np.int64, n)
            self._arrays[b] = (i, s, e)
        return scan_arrays(s, e, addr, size, align, vend, hole)

    def _skip_blocks(self, b: int, addr: int, size: int, vend: int,
                     hole: int) -> tuple[int, int, int, int]:
        """Pass whole blocks (page-aligned requests) whose every gap is smaller than ``size``."""
        self._clean()
        gaps = np.maximum(self._inner[b:], self._bound[b:])
        c = b + _first_true(gaps >= size)
        c = min(c, max(b, bisect_right(self._lastends, vend - size)))
        if c == b:
            return b, addr, 0, hole
        hole = max(hole, int(gaps[: c - b].max()))
        return c, self._lastends[c - 1], sum(self._lens[b:c]), hole


def scan_arrays(s: np.ndarray, e: np.ndarray, addr: int, size: int, align: int, vend: int,
                hole: int) -> tuple[bool, int, int, int]:
    """The first-fit walk over the sorted areas ``[s[j], e[j])`` from candidate ``addr``, as
    the loop of :meth:`BusyTree.walk_first_fit` takes it: ``(found, addr, areas walked,
    hole)``; ``found`` if the walk stops inside (``addr + size`` fits below an area or passes
    ``vend``), else ``addr`` is the candidate after the last area."""
    cand = np.empty_like(s)
    cand[0] = addr
    cand[1:] = e[:-1] if align == 1 else -(-e[:-1] // align) * align
    reach = cand + size  # addr + size at each candidate
    stop = (reach <= s) | (reach > vend)
    k = _first_true(stop)
    if k:
        hole = max(hole, int((s[:k] - cand[:k]).max()))
    if k < len(s):
        return True, int(cand[k]), k, hole
    return False, align_up(int(e[-1]), align), k, hole


def _first_true(flags: np.ndarray) -> int:
    """Index of the first true element of the non-empty ``flags``, its length if none (one
    numpy call: ``argmax`` finds the first maximum)."""
    k = int(flags.argmax())
    return k if flags[k] else len(flags)
