"""The per-run tracer: what every CPU did in a window of simulated time, as the Trace Event
Format that Perfetto (https://ui.perfetto.dev) and ``chrome://tracing`` open.

The model's hooks report to a :class:`Tracer` (attached by ``Simulation.attach``;
``sim/results/timeline.py`` drives a traced run and writes the file). Complete events
(``"ph": "X"``, ``ts`` and ``dur`` in microseconds, ``pid`` 1 (Perfetto reserves 0),
``tid`` the CPU) for

* operations: ``vmalloc``, ``vfree``, ``set_memory`` from call to return on the CPU's own
  clock (category ``op``);
* ``__purge_vmap_area_lazy`` from entry to exit, ``purge_lock`` wait included, for purges
  that got in (``purge``);
* TLB flushes, ``on_each_cpu`` from the first IPI sent to the local flush done, on the sender
  (``flush``);
* lock holds (named after the lock, ``lock``) and contended waits (``wait <lock>``,
  ``lock_wait``): a wait ends where the hold it waited for begins;
* interrupt handlers on their target: TLB-flush IPIs (``do_flush_tlb_all``,
  ``do_kernel_range_flush``) and device interrupts (``irq``), category ``irq``.

Besides the slices, a counter track ``vmap_lazy_nr`` (``"ph": "C"``) shows the lazily freed
pages against ``lazy_max_pages()`` at every change, and flow arrows (``"ph": "s"``/``"f"``,
category ``flow``) link a TLB flush's sender to each IPI handler it caused (``ipi``) and a
lock's release to the hold of the waiter it was handed to (``handover <lock>``).

A CPU has two tracks: ``CPU n`` (``tid`` n) for its task and ``CPU n irq`` (``tid``
``IRQ_TID + n``) for its interrupt handlers. A handler pauses the task whatever it is doing,
so it may begin inside one task slice and end inside the next; Perfetto and chrome://tracing
accept only slices that nest on a track, so handlers get a track of their own, whose
``thread_sort_index`` puts it right below its CPU's (task slices nest by construction; the
tests check it).

Only events overlapping ``[start, end]`` are kept, at most ``max_events`` of them; later ones
are counted and the truncation is noted in the metadata. The hooks in the model are single
``if tracer is not None`` tests, so a run without a tracer pays nothing measurable, and a
tracer only observes: a traced run's metrics are those of the untraced run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from sim.config.units import format_ns

MAX_EVENTS = 1_000_000
"""Default bound on the events a tracer keeps (about 100 MB of JSON)."""
IRQ_TID = 100_000
"""``tid`` of CPU n's interrupt track is ``IRQ_TID + n`` (above any CPU number)."""
PID = 1
"""The process id of every event (Perfetto advises pid >= 1)."""

Event = tuple[int, str, str, float, float, dict[str, Any] | None]
"""(tid, name, category, begin ns, end ns, args)."""


class Tracer:
    """Collects the complete events of one run that overlap a window of simulated time."""

    def __init__(self, start: float, end: float, max_events: int = MAX_EVENTS,
                 name: str = "vmapsim") -> None:
        if not 0 <= start <= end:
            raise ValueError(f"trace window needs 0 <= start <= end, found {start}..{end}")
        self.start = start
        self.end = end
        self.max_events = max_events
        self.name = name
        """The process name shown by the viewer (the run)."""
        self.events: list[Event] = []
        self.counters: list[tuple[float, str, dict[str, Any]]] = []
        """(time ns, counter name, values) of the counter tracks."""
        self.flows: list[tuple[str, int, float, int, float]] = []
        """(name, source tid, source ns, destination tid, destination ns) of flow arrows."""
        self.dropped = 0
        """Events in the window left out because ``max_events`` were already kept."""
        self.ncpus = 0
        self.error: str | None = None
        """Set when the traced run raised: the trace stops there."""

    # --- recording (called by the model's hooks) -------------------------------------------

    def span(self, tid: int, name: str, cat: str, begin: float, end: float,
             args: dict[str, Any] | None = None) -> None:
        """A slice ``[begin, end]`` (ns) on track ``tid``, kept if it overlaps the window."""
        if self._room(begin, end):
            self.events.append((tid, name, cat, begin, end, args))

    def _room(self, at: float, until: float) -> bool:
        """Whether an event over ``[at, until]`` overlaps the window and fits the bound."""
        if until < self.start or at > self.end:
            return False
        if len(self.events) + len(self.counters) + len(self.flows) >= self.max_events:
            self.dropped += 1
            return False
        return True

    def counter(self, name: str, at: float, values: dict[str, Any]) -> None:
        """A counter track's values from ``at`` on."""
        if self._room(at, at):
            self.counters.append((at, name, values))

    def flow(self, name: str, source: int, at: float, target: int, until: float) -> None:
        """An arrow from track ``source`` at ``at`` to track ``target`` at ``until``."""
        if self._room(at, until):
            self.flows.append((name, source, at, target, until))

    def op(self, cpu: int, name: str, begin: float, end: float, pages: int,
           failed: bool = False) -> None:
        """A ``vmalloc``, ``vfree`` or ``set_memory`` call."""
        args: dict[str, Any] = {"pages": pages}
        if failed:
            args["failed"] = True
        self.span(cpu, name, "op", begin, end, args)

    def purge(self, cpu: int, begin: float, end: float, sync: bool, areas: int,
              pages: int) -> None:
        """An ``__purge_vmap_area_lazy`` that got past ``purge_lock``."""
        self.span(cpu, "__purge_vmap_area_lazy", "purge", begin, end,
                  {"sync": sync, "areas": areas, "pages": pages})

    def flush(self, cpu: int, begin: float, end: float, pages: tuple[int, int] | None,
              ipis: int) -> None:
        """An ``on_each_cpu`` TLB flush on its sender (``pages`` None: a full flush)."""
        if pages is None:
            self.span(cpu, "flush_tlb_all", "flush", begin, end, {"ipis": ipis})
        else:
            self.span(cpu, "flush_tlb_kernel_range", "flush", begin, end,
                      {"ipis": ipis, "pages": max(0, pages[1] - pages[0])})

    def lock_hold(self, cpu: int, lock: str, begin: float, end: float) -> None:
        self.span(cpu, lock, "lock", begin, end)

    def lock_wait(self, cpu: int, lock: str, begin: float, end: float) -> None:
        self.span(cpu, f"wait {lock}", "lock_wait", begin, end)

    def handler(self, name: str, cpu: int, begin: float, end: float) -> None:
        """An interrupt handler ``name`` run on ``cpu`` from ``begin`` to ``end``."""
        self.span(IRQ_TID + cpu, name, "irq", begin, end)

    def handlers(self, name: str, targets: np.ndarray, starts: np.ndarray,
                 ends: np.ndarray) -> None:
        """Interrupt handlers ``name`` run on ``targets`` from ``starts`` to ``ends``."""
        for cpu, begin, end in zip(targets.tolist(), starts.tolist(), ends.tolist()):
            self.span(IRQ_TID + cpu, name, "irq", begin, end)

    def ipis(self, sender: int, sent: float, targets: np.ndarray, starts: np.ndarray) -> None:
        """Flow arrows from a flush's sender to the handlers its IPIs ran."""
        for cpu, begin in zip(targets.tolist(), starts.tolist()):
            self.flow("ipi", sender, sent, IRQ_TID + cpu, begin)

    # --- output ----------------------------------------------------------------------------

    @property
    def kept(self) -> int:
        """Slices, counter values and flow arrows kept."""
        return len(self.events) + len(self.counters) + len(self.flows)

    @property
    def truncated(self) -> bool:
        return self.dropped > 0

    def window_text(self) -> str:
        return f"{format_ns(self.start)}..{format_ns(self.end)}"

    def summary(self) -> str:
        """One line: events kept, and what was dropped."""
        text = f"{self.kept} events in {self.window_text()}"
        if self.truncated:
            text += f"; truncated at {self.max_events}, {self.dropped} more dropped"
        return text

    def metadata(self) -> list[dict[str, Any]]:
        """``M`` events: the process (the run) and, per CPU, its task and interrupt tracks."""
        labels = f"window {self.window_text()}"
        if self.truncated:
            labels += f", TRUNCATED: {self.dropped} events dropped after {self.max_events}"
        if self.error:
            labels += f", run failed: {self.error}"
        meta = [_meta("process_name", 0, {"name": self.name}),
                _meta("process_labels", 0, {"labels": labels})]
        for cpu in range(self.ncpus):
            meta += [_meta("thread_name", cpu, {"name": f"CPU {cpu}"}),
                     _meta("thread_sort_index", cpu, {"sort_index": 2 * cpu}),
                     _meta("thread_name", IRQ_TID + cpu, {"name": f"CPU {cpu} irq"}),
                     _meta("thread_sort_index", IRQ_TID + cpu, {"sort_index": 2 * cpu + 1})]
        return meta

    def trace_events(self) -> list[dict[str, Any]]:
        """Every event as a dict: metadata, then slices by start time, outer slices first,
        then counters and flow arrows."""
        return self.metadata() + [_complete(e) for e in self._sorted()] + list(self._others())

    def _others(self) -> Iterator[dict[str, Any]]:
        for at, name, values in self.counters:
            yield {"name": name, "ph": "C", "ts": round(at) / 1000, "pid": PID, "tid": 0,
                   "args": values}
        for i, (name, source, at, target, until) in enumerate(self.flows, start=1):
            yield {"name": name, "cat": "flow", "ph": "s", "id": i, "ts": round(at) / 1000,
                   "pid": PID, "tid": source}
            yield {"name": name, "cat": "flow", "ph": "f", "bp": "e", "id": i,
                   "ts": round(until) / 1000, "pid": PID, "tid": target}

    def other_data(self) -> dict[str, Any]:
        return {"window_ns": [self.start, self.end], "events": self.kept,
                "max_events": self.max_events, "truncated": self.truncated,
                "dropped_events": self.dropped, "error": self.error}

    def to_json(self) -> dict[str, Any]:
        """The whole trace in the JSON object format."""
        return {"traceEvents": self.trace_events(), "displayTimeUnit": "ns",
                "otherData": self.other_data()}

    def write(self, path: str | Path) -> Path:
        """Write the trace to ``path`` (streamed, then renamed into place)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            with open(tmp, "w") as out:
                for chunk in self._chunks():
                    out.write(chunk)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    def _sorted(self) -> list[Event]:
        # a viewer nests slices in file order: at equal start the enclosing (longer) one first
        return sorted(self.events, key=lambda e: (e[3], -e[4]))

    def _chunks(self) -> Iterator[str]:
        dumps = json.JSONEncoder(separators=(",", ":")).encode
        yield '{"traceEvents":[\n'
        first = True
        for event in self.metadata():
            yield ("" if first else ",\n") + dumps(event)
            first = False
        for event in self._sorted():
            yield ",\n" + dumps(_complete(event))
        for event in self._others():
            yield ",\n" + dumps(event)
        yield '\n],"displayTimeUnit":"ns","otherData":' + dumps(self.other_data()) + "}\n"


def _meta(name: str, tid: int, args: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "ph": "M", "pid": PID, "tid": tid, "args": args}


def _complete(event: Event) -> dict[str, Any]:
    """An ``X`` event; times rounded to whole ns (monotone, so nesting survives)."""
    tid, name, cat, begin, end, args = event
    b, e = round(begin), round(end)
    out: dict[str, Any] = {"name": name, "cat": cat, "ph": "X", "ts": b / 1000,
                           "dur": (e - b) / 1000, "pid": PID, "tid": tid}
    if args:
        out["args"] = args
    return out
