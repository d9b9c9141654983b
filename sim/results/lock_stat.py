"""``lock_stat.txt``: the runs' lock statistics in the format of the kernel's ``/proc/lock_stat``.

The format is ``lock_stat version 0.4`` as kernel/locking/lockdep_proc.c prints it (read in
a 4.18+ and a 6.x source, the same in both), for every variant, whatever kernel version the
variant models:

* a header (``seq_header``): the version line, a line of 221 ``-``, the column names
  (``"%40s"`` then twelve ``" %14s"``), the ``-`` line again and an empty line;
* one row per lock class that was acquired (``seq_stats``), ``"%40s:"`` with the class name
  cut to 37 characters (its ``char name[39]`` filled by ``snprintf(name, 38, ...)``), then
  ``"%14lu "`` con-bounces, ``seq_lock_time`` of the waits (``"%14lu"`` contentions and four
  ``" %14s"`` times: min, max, total, avg), ``" %14lu "`` acq-bounces and ``seq_lock_time`` of
  the holds;
* times in microseconds with two decimals as ``snprint_time`` prints nanoseconds
  (:func:`kernel_time`); an average is the total over its count in whole nanoseconds
  (``div64_u64``): waittime-avg is per contention, holdtime-avg per acquisition;
* rows sorted by contentions, most first (``lock_stat_cmp``; the kernel's heap sort leaves
  ties in no particular order, here they keep the model's order of its locks).

The kernel follows a contended class's row with its contention points (the call sites of
``lock_contended`` and of the holder's acquisition, with their counts). The model has no call
sites, so it prints none: for the kernel the block then ends there, as for a class whose
points it has not recorded. No class has a read side (no ``-W``/``-R`` rows): the model takes
``vmlist_lock`` (2.6.27's rwlock) for write only.

The file holds one block per variant and sweep point, each starting with the kernel's header,
so that a block alone reads as ``/proc/lock_stat``. What the kernel's output does not say goes
into comment lines after the header's empty line: lines starting with ``# vmapsim``, which
hold no ``:`` and so match no row of the kernel's format. Values are per-run means over the
point's successful replications (a run without a class counts as zero for it), counts
rounded to the nearest integer; min columns are the least over the runs that saw the event,
max columns the greatest; an average is the mean total over the mean count (the pooled
per-event time).

Class names are those lockdep gives the model's locks (:data:`KERNEL_CLASSES`); locks of one
class (one ``spin_lock_init`` site) are one row, their counts, totals and bounces added, their
minima and maxima taken over them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sim.results.store import write_atomic

KERNEL_CLASSES: dict[str, str] = {
    "vmap_block_queue.lock": "&vbq->lock",
    "vmap_block.lock": "&vb->lock",
    "vmap_node.busy.lock": "&vn->busy.lock",
    "vmap_node.pool_lock": "&vn->pool_lock",
    "vmap_node.lazy.lock": "&vn->lazy.lock",
}
"""The lockdep class of each model lock whose name is not already its class name.

lockdep names a class by its initialiser: ``DEFINE_SPINLOCK(x)``, ``DEFINE_RWLOCK(x)`` and
``DEFINE_MUTEX(x)`` by ``x``; ``spin_lock_init(p)`` by the text of ``p`` as written at that
call site, one class for every lock that site initialises. The model's other locks are named
as the kernel defines them, so their class is their name: ``vmlist_lock`` (2.6.27,
``DEFINE_RWLOCK``), ``vmap_area_lock`` (2.6.28-6.8), ``purge_lock`` (2.6.28-4.9, static in
``__purge_vmap_area_lazy``), ``vmap_purge_lock`` (4.10+, ``DEFINE_MUTEX``),
``free_vmap_area_lock`` (5.5+), ``purge_vmap_area_lock`` (5.11-6.8), ``cpa_lock``
(arch/x86/mm/pageattr.c), ``pcpu_alloc_mutex`` and ``pcpu_lock`` (mm/percpu.c), and
``vmap_block_tree_lock`` (the radix tree's lock of 4.x, whose allocator sim/mm/vmap_block.py
models for every variant; later kernels keep the blocks in an xarray, global then per CPU by
6.9, whose lock lockdep names ``vmap_blocks.xa_lock`` or ``&xa->xa_lock``). The rest are
``spin_lock_init`` sites in mm/vmalloc.c:
``&vbq->lock`` (``vmalloc_init``), ``&vb->lock`` (``new_vmap_block``), and 6.9's
``&vn->busy.lock``, ``&vn->pool_lock`` and ``&vn->lazy.lock`` (``vmap_init_nodes``)."""

SUMMED = ("contentions", "acquisitions", "wait_total", "hold_total", "con_bounces",
          "acq_bounces")
"""Counters that add up over a class's instances and are averaged over runs."""
MAXED = ("wait_max", "hold_max")
COLUMNS = ("con-bounces", "contentions", "waittime-min", "waittime-max", "waittime-total",
           "waittime-avg", "acq-bounces", "acquisitions", "holdtime-min", "holdtime-max",
           "holdtime-total", "holdtime-avg")
NAME_CHARS = 37
"""What the kernel keeps of a class name: ``snprintf(name, 38, "%s", ...)``."""
SEPARATOR_WIDTH = 40 + 1 + 12 * (14 + 1)
VERSION = "lock_stat version 0.4"
COMMENT = "# vmapsim "
"""The start of every line of the file that is not the kernel's."""


def class_name(lock: str, names: Mapping[str, str] = KERNEL_CLASSES) -> str:
    """The lockdep class name of the model lock named ``lock``."""
    return names.get(lock, lock)


def kernel_time(ns: float) -> str:
    """``snprint_time``: ``ns`` in microseconds, two decimals, rounded at 5 ns as the kernel
    does (``nr += 5``, then ``nr / 1000`` and ``nr % 1000 / 10``)."""
    centi = math.floor((ns + 5) / 10)
    return f"{centi // 100}.{centi % 100:02d}"


def _minimum(stat: Mapping[str, Any], key: str) -> float:
    """A minimum of ``stat``, ``inf`` when it saw no such event (the run file's 0 then): a
    wait is seen once ``contentions`` is non-zero, a hold once ``hold_max`` is (a release)."""
    seen = stat.get("contentions", 0) if key == "wait_min" else stat.get("hold_max", 0.0)
    value = stat.get(key)
    return value if seen and value is not None else math.inf


def _merge(into: dict[str, float], stat: Mapping[str, Any]) -> None:
    """Add one instance's (or one run's) counters to ``into``."""
    for key in SUMMED:
        into[key] += stat.get(key, 0)
    for key in MAXED:
        into[key] = max(into[key], stat.get(key, 0.0))
    for key in ("wait_min", "hold_min"):
        into[key] = min(into[key], _minimum(stat, key))


def _empty() -> dict[str, float]:
    empty = {key: 0.0 for key in (*SUMMED, *MAXED)}
    empty.update(wait_min=math.inf, hold_min=math.inf)
    return empty


def run_classes(lock_stat: Mapping[str, Mapping[str, Any]],
                names: Mapping[str, str] = KERNEL_CLASSES) -> dict[str, dict[str, float]]:
    """One run's ``lock_stat`` (by model lock name) as lockdep classes, in the model's order.
    A minimum no instance saw is ``inf``."""
    classes: dict[str, dict[str, float]] = {}
    for lock, stat in lock_stat.items():
        _merge(classes.setdefault(class_name(lock, names), _empty()), stat)
    return classes


def point_means(runs: list[Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, float]]:
    """The classes of the runs of one point: counters as per-run means, minima and maxima
    over the runs."""
    totals: dict[str, dict[str, float]] = {}
    for lock_stat in runs:
        for name, stat in run_classes(lock_stat).items():
            _merge(totals.setdefault(name, _empty()), stat)
    for acc in totals.values():
        for key in SUMMED:
            acc[key] /= len(runs)
    return totals


def _count(value: float) -> int:
    return math.floor(value + 0.5)


def _times(count: float, low: float, high: float, total: float) -> str:
    """``seq_lock_time``: the count, then min, max, total and avg as ``" %14s"``."""
    avg = math.floor(total / count) if count else 0
    low = 0.0 if low == math.inf else low
    return f"{_count(count):14d}" + "".join(
        f" {kernel_time(t):>14}" for t in (low, high, total, avg))


def lock_stat_row(name: str, stat: Mapping[str, float]) -> str:
    """One class's row, as ``seq_stats`` prints a class with no read side."""
    return (f"{name[:NAME_CHARS]:>40}:{_count(stat['con_bounces']):14d} "
            + _times(stat["contentions"], stat["wait_min"], stat["wait_max"],
                     stat["wait_total"])
            + f" {_count(stat['acq_bounces']):14d} "
            + _times(stat["acquisitions"], stat["hold_min"], stat["hold_max"],
                     stat["hold_total"]))


def header() -> list[str]:
    """``seq_header`` (lock debugging on: no warning line)."""
    line = "-" * SEPARATOR_WIDTH
    names = f"{'class name':>40}" + "".join(f" {c:>14}" for c in COLUMNS)
    return [VERSION, line, names, line, ""]


def _token(value: Any) -> str:
    """A value in a comment: as it is if a plain word or number, else as JSON."""
    if isinstance(value, str) and re.fullmatch(r"[\w.+-]+", value):
        return value
    return json.dumps(value, separators=(",", ":"))


def lock_stat_block(point: str, runs: list[Mapping[str, Mapping[str, Any]]]) -> list[str]:
    """The block of one variant and point: the kernel's header, the comments, the rows."""
    classes = point_means(runs)
    order = sorted((name for name, s in classes.items() if s["acquisitions"] > 0),
                   key=lambda name: -classes[name]["contentions"])  # stable: model order
    return header() + [
        f"{COMMENT}{point}",
        f"{COMMENT}means over {len(runs)} replications of this point (counts rounded), "
        "min and max columns over its runs, times in us, waittime-avg per contention, "
        "no contention points (the model has no call sites)",
    ] + [lock_stat_row(name, classes[name]) for name in order]


def write_lock_stat(out_dir: Path, results: list[dict[str, Any]], swept: list[str]) -> Path:
    """``DIR/lock_stat.txt``: one block per variant and point of the successful runs, in the
    order their first run comes."""
    groups: dict[str, list[Mapping[str, Mapping[str, Any]]]] = {}
    for result in results:
        if result.get("status") != "ok":
            continue
        spec = result["spec"]
        point = f"variant={_token(spec['config']['variant']['name'])}" + "".join(
            f" {k}={_token(spec['point'].get(k))}" for k in swept)
        groups.setdefault(point, []).append(result["lock_stat"])
    out: list[str] = []
    for point, runs in groups.items():
        out += ([""] if out else []) + lock_stat_block(point, runs)
    path = out_dir / "lock_stat.txt"
    write_atomic(path, "\n".join(out) + "\n")
    return path
