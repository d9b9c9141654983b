"""Safety monitors: what a proposal must never do, observed on every run.

The model reports to a :class:`SafetyChecker` each step that matters for the guarantees of the
lazy-free path, and the checker counts violations of five kinds, keeping the first example of
each (simulated time, CPUs, area, and the steps that led there):

``reuse_before_flush``
    A virtual range handed out again while a lazily freed area overlapping it has not been
    covered by a completed TLB flush started after its unmap: a CPU may still hold a stale
    translation to the old pages.
``unmap_aliases_unflushed``
    ``vm_unmap_aliases()`` returning while an area lazily freed before the call, or a range
    unmapped by ``vm_unmap_ram()`` (``vb_free``) before it, is still unflushed: the guarantee
    ``set_memory_*()`` relies on (no alias left to the pages).
``use_after_free``
    An area's fields read after another CPU freed it (``__free_vmap_area``), as in the
    ``free_vmap_area_noflush`` ordering Roman Pen found in 2016.
``double_free``
    An area freed twice (two purges taking the same lazy area).
``lazy_nr_underflow``
    ``vmap_lazy_nr`` going negative, or an area's pages subtracted twice.
``never_purged``
    A lazily freed area still not freed after the run is drained (workload stopped, pending
    work finished, then one ``vm_unmap_aliases()``).
"""

from __future__ import annotations

import math
import traceback
from bisect import bisect_left, insort
from typing import Any

from sim.mm.vmap_area import VmapArea

KINDS = ("reuse_before_flush", "unmap_aliases_unflushed", "use_after_free", "double_free",
         "lazy_nr_underflow", "never_purged", "model_assumption")


class SafetyChecker:
    """Counts violations per kind; keeps the first example of each."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(KINDS, 0)
        self.examples: dict[str, dict[str, Any]] = {}
        self._unflushed: dict[int, VmapArea] = {}  # id -> area, in order of lazy free
        self._starts: list[tuple[int, int]] = []    # sorted (va_start, id) of unflushed areas
        self._longest = 0
        """The longest unflushed range seen: how far back an overlapping one can start
        (unflushed ranges may nest: a lazily freed vmap block and its vb_free'd ranges)."""
        self._lazy: dict[int, VmapArea] = {}        # lazily freed, not yet freed

    # --- reporting ------------------------------------------------------------------------

    def violation(self, kind: str, now: float, cpus: list[int], va: VmapArea | None,
                  what: str) -> None:
        self.counts[kind] += 1
        if kind not in self.examples:
            self.examples[kind] = {
                "time_ns": now, "cpus": cpus, "what": what,
                "area": None if va is None else [va.va_start, va.va_end],
                "steps": [] if va is None else [list(step) for step in va.history],
            }

    def metrics(self) -> dict[str, int]:
        out = {f"safety_{kind}": n for kind, n in self.counts.items()}
        out["safety_violations"] = sum(self.counts.values())
        return out

    # --- area life cycle ------------------------------------------------------------------

    def allocated(self, va: VmapArea, now: float, cpu: int) -> None:
        """A range handed out: it must not overlap an unflushed lazily freed area."""
        va.history.append((now, cpu, "alloc_vmap_area"))  # va.log(), inlined
        i = bisect_left(self._starts, (va.va_end, -math.inf))  # those starting before its end
        reach = va.va_start - self._longest
        while i and self._starts[i - 1][0] > reach:
            i -= 1
            other = self._unflushed[self._starts[i][1]]
            if other.va_end > va.va_start:
                self.violation("reuse_before_flush", now, [cpu, other.cpu], other,
                               f"[{va.va_start:#x}, {va.va_end:#x}) handed to CPU{cpu} before "
                               "the flush of the lazily freed area overlapping it")
                return

    def lazily_freed(self, va: VmapArea, now: float, cpu: int,
                     step: str = "free_vmap_area_noflush") -> None:
        """``va``'s PTEs are cleared, other CPUs' TLBs may still map it (``step`` names the
        kernel function in its history)."""
        va.history.append((now, cpu, step))
        va.freed_lazily_at = now
        self._unflushed[va.ident] = va
        insort(self._starts, (va.va_start, va.ident))
        self._longest = max(self._longest, va.va_end - va.va_start)
        self._lazy[va.ident] = va

    def published(self, va: VmapArea, now: float) -> None:
        """The lazily freed ``va`` is on the lazy list (or tree) from ``now``: a purge that
        starts later takes it. A lock-based publish (5.11's purge tree, 6.9's node trees)
        may wait for its lock after the free began."""
        va.published_at = now

    def vb_freed(self, va: VmapArea, now: float, cpu: int) -> None:
        """``vb_free``: a ``vm_map_ram()`` range of a vmap block unmapped without a flush (its
        block's dirty range widened). It is unflushed, as a lazily freed area is, until a flush
        started after this covers it: ``vm_unmap_aliases()`` must not return before, and no
        allocation may overlap it. It is not lazily freed: its space comes back with its
        block's area, which is."""
        va.log(now, cpu, "vb_free")
        va.freed_lazily_at = va.published_at = now
        self._unflushed[va.ident] = va
        insort(self._starts, (va.va_start, va.ident))
        self._longest = max(self._longest, va.va_end - va.va_start)

    def flushed(self, initiated: float, start: int, end: int, full: bool, now: float,
                cpu: int) -> None:
        """A TLB flush initiated at ``initiated`` completed: it covers every area unmapped
        before it began whose range it includes."""
        done = []
        for va in self._unflushed.values():  # in lazy-free order
            if va.freed_lazily_at > initiated:
                break
            if full or (va.va_start < end and va.va_end > start):
                done.append(va)
        for va in done:
            va.log(now, cpu, "flushed")
            del self._unflushed[va.ident]
        if len(done) == 1:
            del self._starts[bisect_left(self._starts, (va.va_start, va.ident))]
        elif done:  # one pass over the sorted starts, not one deletion (a memmove) per area
            gone = {va.ident for va in done}
            self._starts = [entry for entry in self._starts if entry[1] not in gone]

    def vm_unmap_aliases_returned(self, called: float, now: float, cpu: int) -> None:
        """``vm_unmap_aliases()`` called at ``called`` returns: every area whose lazy free was
        over (published) before the call must be flushed. A free still in progress on another
        CPU at the call is concurrent with it, and its pages are not the caller's."""
        for va in self._unflushed.values():  # in lazy-free order; published no earlier
            if va.freed_lazily_at >= called:
                break
            if va.published_at is not None and va.published_at < called:
                self.violation("unmap_aliases_unflushed", now, [cpu, va.cpu], va,
                               f"vm_unmap_aliases() on CPU{cpu} returned with an area lazily "
                               "freed before the call still unflushed")
                break

    def read(self, va: VmapArea, now: float, cpu: int, what: str) -> None:
        """A CPU reads ``va``'s fields."""
        if va.freed_at is not None:
            self.violation("use_after_free", now, [cpu, va.freed_by], va,
                           f"CPU{cpu} {what} after CPU{va.freed_by} freed the area")

    def freed(self, va: VmapArea, now: float, cpu: int) -> bool:
        """``__free_vmap_area``: False (and a violation) if the area was already freed."""
        if va.freed_at is not None:
            self.violation("double_free", now, [cpu, va.freed_by], va,
                           f"CPU{cpu} freed an area CPU{va.freed_by} had already freed")
            return False
        va.history.append((now, cpu, "__free_vmap_area"))
        va.freed_at = now
        va.freed_by = cpu
        self._lazy.pop(va.ident, None)
        return True

    def lazy_subtracted(self, va: VmapArea, now: float, cpu: int) -> None:
        if va.subtracted:
            self.violation("lazy_nr_underflow", now, [cpu], va,
                           f"CPU{cpu} subtracted the area's pages from vmap_lazy_nr twice")
        va.subtracted = True

    def lazy_nr_changed(self, value: int, now: float, cpu: int) -> None:
        """``vmap_lazy_nr`` became ``value`` (the model calls this only when it is negative,
        the one case that counts)."""
        if value < 0:
            self.violation("lazy_nr_underflow", now, [cpu], None,
                           f"vmap_lazy_nr = {value} after CPU{cpu}'s update")

    def model_assumption(self, now: float, exc: BaseException) -> None:
        """The model's own code raised: a composition broke an assumption it makes (two
        purges in a structure one purge owns). A violation with where it was raised, not a
        crash: the run ends there."""
        while exc.__cause__ is not None:  # SimPy raises a process's exception again
            exc = exc.__cause__
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/sim/" in f.filename]
        where = ""
        if frames:
            where = f"{frames[-1].filename.split('/sim/', 1)[1]}:{frames[-1].lineno} in " \
                    f"{frames[-1].name}"
        self.violation("model_assumption", now, [], None, f"{type(exc).__name__}: {exc}")
        self.examples["model_assumption"].setdefault("where", where)

    def drained(self, now: float) -> None:
        """End of a drained run: every lazily freed area must have been purged."""
        for va in self._lazy.values():
            self.violation("never_purged", now, [va.cpu], va,
                           "lazily freed area still not purged after the run was drained")
