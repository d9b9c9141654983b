"""``struct vmap_area`` and its flags (include/linux/vmalloc.h, mm/vmalloc.c of Linux 4.5)."""

from __future__ import annotations

VM_LAZY_FREE = 0x01
"""Lazily freed, waiting for a purge (removed in 4.7 by the llist patch)."""
VM_LAZY_FREEING = 0x02
"""Taken by a purge that has not yet erased it."""
VM_VM_AREA = 0x04
"""Backs a vm_struct (a vmalloc area), cleared by remove_vm_area()."""


class VmapArea:
    """One busy range of the vmalloc space, in pages, guard page included.

    Besides the kernel's fields it carries what the safety checker needs: an identity, the
    steps it went through, and when (and by whom) it was lazily freed and freed.
    """

    __slots__ = ("va_start", "va_end", "flags", "cpu", "writer", "nr_pages", "ident", "history",
                 "freed_lazily_at", "published_at", "freed_at", "freed_by", "subtracted")

    def __init__(self, va_start: int, va_end: int, cpu: int, ident: int) -> None:
        self.va_start = va_start
        self.va_end = va_end
        self.flags = VM_VM_AREA
        self.cpu = cpu
        self.writer = cpu
        """The CPU that wrote the object last (its cache line is there): the allocating CPU,
        then the one that freed it lazily."""
        self.nr_pages = va_end - va_start - 1
        """Pages backed by memory: the area minus its guard page."""
        self.ident = ident
        self.history: list[tuple[float, int, str]] = []
        self.freed_lazily_at: float | None = None
        """When ``free_vmap_area_noflush`` began lazily freeing it (its PTEs already cleared)."""
        self.published_at: float | None = None
        """When a purger could first find it (its lazy-list publish done): the free is over."""
        self.freed_at: float | None = None
        self.freed_by = -1
        self.subtracted = False

    @property
    def size(self) -> int:
        """``(va_end - va_start) >> PAGE_SHIFT``: what vmap_lazy_nr counts, guard included."""
        return self.va_end - self.va_start

    def log(self, now: float, cpu: int, step: str) -> None:
        self.history.append((now, cpu, step))

    def __repr__(self) -> str:
        return f"VmapArea([{self.va_start:#x}, {self.va_end:#x}) pages, cpu{self.cpu})"
