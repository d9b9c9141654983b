"""``alloc_vmap_area``'s search: first-fit over the busy list with the ``free_vmap_cache``.

Models mm/vmalloc.c from Linux 3.10 (sorted-list walk) to 5.1 (replaced by the augmented
rbtree of free space in 5.2). The "vmap cache globals" remember where the last search ended so
that the next one resumes there, unless the request is more permissive than the cached one
(smaller than a hole seen below the cache, lower ``vstart``, smaller ``align``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.mm.busy_tree import BusyTree, align_up


@dataclass
class FreeVmapCache:
    """``free_vmap_cache``, ``cached_hole_size``, ``cached_vstart``, ``cached_align``."""

    node: int | None = None
    """va_start of the cached area (the rb_node), or None."""
    hole_size: int = 0
    vstart: int = 0
    align: int = 0


@dataclass
class FitResult:
    """Where the search ended and how much of the busy list it walked."""

    addr: int | None
    walked: int
    descended: bool


def first_fit(tree: BusyTree, cache: FreeVmapCache, size: int, align: int,
              vstart: int, vend: int) -> FitResult:
    """The search part of ``alloc_vmap_area`` (called under ``vmap_area_lock``)."""
    if (cache.node is None or size < cache.hole_size or vstart < cache.vstart
            or align < cache.align):
        cache.hole_size = 0
        cache.node = None
    cache.vstart = vstart
    cache.align = align
    if cache.node is not None:
        b, i = tree.position(cache.node)
        addr = align_up(tree.area_at(b, i)[1], align)
        start = (b, i)
        descended = False
    else:
        addr = align_up(vstart, align)
        start = tree.first_ending_at_or_after(addr)
        descended = True
        if start is None:
            return FitResult(addr if addr + size <= vend else None, 0, True)
    addr, walked, cache.hole_size = tree.walk_first_fit(*start, addr, size, align, vend,
                                                        cache.hole_size)
    return FitResult(addr if addr + size <= vend else None, walked, descended)


def free_vmap_cache_on_free(tree: BusyTree, cache: FreeVmapCache, va_start: int,
                            va_end: int) -> None:
    """``__free_vmap_area``'s cache update, before the area leaves the tree."""
    if cache.node is None:
        return
    if va_end < cache.vstart:
        cache.node = None
    elif va_start <= cache.node:
        # "We don't try to update cached_hole_size or cached_align, but it won't go very wrong."
        cache.node = tree.prev_start(va_start)
