"""Trace files of the ``trace`` workload kind: the CSV format, its parser and its checks.

A trace is a CSV file (``tools/vmalloc-trace.bt`` records one on a real machine)::

    time_ns,cpu,op,size_bytes,handle
    1000,0,vmalloc,16384,0xffffc90000123000
    1500,1,set_memory,4096,0xffff888004000000
    2750,0,vfree,0,0xffffc90000123000

``op`` is one of ``vmalloc``, ``vfree``, ``vm_map_ram``, ``vm_unmap_ram``, ``set_memory``;
``size_bytes`` is rounded up to 4 KiB pages (``vfree``/``vm_unmap_ram`` may give 0, since
``vfree()`` does not know the size); ``handle`` (decimal or ``0x`` hex, usually the returned
address) ties a free to its allocation. Blank lines and ``#`` comment lines are skipped.

The file is parsed once per process and content (cache keyed by the content's hash); every
problem is a :class:`~sim.config.loader.ConfigError` naming the trace's line. Validation
reads traces through this module alone: it needs nothing of the model
(``sim/workloads/replay.py`` replays them).
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from sim.config.loader import ConfigError, did_you_mean, read_regular, shown

HEADER = ("time_ns", "cpu", "op", "size_bytes", "handle")
OPS = ("vmalloc", "vfree", "vm_map_ram", "vm_unmap_ram", "set_memory")
VMALLOC, VFREE, VM_MAP_RAM, VM_UNMAP_RAM, SET_MEMORY = range(len(OPS))
ALLOCATOR_OF = {VFREE: VMALLOC, VM_UNMAP_RAM: VM_MAP_RAM}
"""The operation whose handle each free takes."""
ALLOCATOR_OF_FREE = {alloc: free for free, alloc in ALLOCATOR_OF.items()}
"""The free that releases what each allocation maps."""
PAGE_SIZE = 4096
MAX_FIELD = 2**62
"""Largest time, CPU or size accepted (keeps every array in int64)."""
CACHE_SIZE = 8


@dataclass(frozen=True)
class Trace:
    """A parsed, checked trace: one array entry per record, in file order."""

    path: str
    sha256: str
    time: np.ndarray
    """Offset from the trace's first record (ns)."""
    cpu: np.ndarray
    op: np.ndarray
    pages: np.ndarray
    ref: np.ndarray
    """For a free, the index of the record that allocated its handle; otherwise -1."""
    line: np.ndarray
    """Line number of each record in the file."""
    _schedules: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def records(self) -> int:
        return len(self.time)

    @property
    def span_ns(self) -> int:
        """Time from the first record to the last."""
        return int(self.time.max())

    def period_ns(self) -> float:
        """How long one pass lasts when the trace loops: its span plus its mean gap between
        records, so the seam keeps the trace's average spacing (1 ns at least)."""
        n = self.records
        gap = self.span_ns / (n - 1) if n > 1 else 0.0
        return max(1.0, self.span_ns + gap)

    def largest_request(self) -> tuple[int, int]:
        """(pages, line) of the largest allocation (vmalloc or vm_map_ram); (1, 0) if none."""
        allocs = np.flatnonzero((self.op == VMALLOC) | (self.op == VM_MAP_RAM))
        if not len(allocs):
            return 1, 0
        i = allocs[int(np.argmax(self.pages[allocs]))]
        return int(self.pages[i]), int(self.line[i])

    def first_line(self, mask: np.ndarray) -> int | None:
        """The line of the first record selected by ``mask``, or None."""
        hits = np.flatnonzero(mask)
        return int(self.line[hits[0]]) if len(hits) else None

    def replay_cpu(self, ncpus: int, fold: bool) -> np.ndarray:
        """The CPU that replays each record."""
        return self.cpu % ncpus if fold else self.cpu

    def counts(self, ncpus: int, fold: bool = False) -> dict[int, dict[str, int]]:
        """Records per replaying CPU and operation (only the CPUs and ops that occur)."""
        out: dict[int, dict[str, int]] = {}
        for cpu, op in zip(self.replay_cpu(ncpus, fold).tolist(), self.op.tolist()):
            ops = out.setdefault(cpu, {})
            ops[OPS[op]] = ops.get(OPS[op], 0) + 1
        return out

    def schedule(self, ncpus: int, fold: bool, speed: float
                 ) -> list[list[tuple[float, int, int, int, int]]]:
        """Per replaying CPU, its records in replay order as (offset ns / speed, op, pages,
        index, ref). Folded CPUs merge their records by time (ties in file order)."""
        key = (ncpus, fold, speed)
        if key not in self._schedules:
            owner = self.replay_cpu(ncpus, fold)
            order = np.lexsort((np.arange(self.records), self.time, owner))
            rows = zip(owner[order].tolist(), (self.time[order] / speed).tolist(),
                       self.op[order].tolist(), self.pages[order].tolist(), order.tolist(),
                       self.ref[order].tolist())
            per_cpu: list[list[tuple[float, int, int, int, int]]] = [[] for _ in range(ncpus)]
            for cpu, *record in rows:
                if cpu < ncpus:
                    per_cpu[cpu].append(tuple(record))  # type: ignore[arg-type]
            self._schedules[key] = per_cpu
        return self._schedules[key]


_cache: dict[tuple[str, str], Trace] = {}


def load_trace(path: str) -> Trace:
    """The parsed trace at ``path`` (absolute), parsed once per content (its SHA-256: a file
    rewritten within the file system's mtime resolution is still seen as changed)."""
    raw = _read(path)
    key = (path, hashlib.sha256(raw).hexdigest())
    if key not in _cache:
        if len(_cache) >= CACHE_SIZE:
            _cache.pop(next(iter(_cache)))
        _cache[key] = _Parser(path, _text(raw, path)).parse(key[1])
    return _cache[key]


def parse_trace(path: str) -> Trace:
    """Read and check a trace file; every problem is a :class:`ConfigError` at its line."""
    raw = _read(path)
    return _Parser(path, _text(raw, path)).parse(hashlib.sha256(raw).hexdigest())


MAX_TRACE_BYTES = 256 << 20
"""Largest trace read: 256 MiB, some six million records (parsing one takes minutes)."""


def _read(path: str) -> bytes:
    return read_regular(path, MAX_TRACE_BYTES)


def _text(raw: bytes, path: str) -> str:
    if b"\0" in raw:
        raise ConfigError("this is a binary file, not a CSV trace", path, 1)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError("the trace is not UTF-8 text", path, line) from None


class _Parser:
    """Checks a trace row by row (fields, then per-CPU time order), then every handle's
    lifetime in time order."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.text = text
        self.rows: list[tuple[int, int, int, int, int, int, str]] = []
        """(time, cpu, op, size_bytes, handle, line, handle text) per record."""
        self.last_time: dict[int, tuple[int, int]] = {}

    def error(self, line: int, message: str) -> ConfigError:
        return ConfigError(message, self.path, line)

    def parse(self, sha256: str) -> Trace:
        header_line = self._read_rows()
        if not self.rows:
            raise self.error(header_line, "the trace has no records after its header")
        refs = self._check_handles()
        columns = list(zip(*self.rows))
        time = np.asarray(columns[0], dtype=np.int64)
        size = np.asarray(columns[3], dtype=np.int64)
        return Trace(self.path, sha256, time - time.min(),
                     np.asarray(columns[1], dtype=np.int64),
                     np.asarray(columns[2], dtype=np.int8),
                     -(-size // PAGE_SIZE), refs, np.asarray(columns[5], dtype=np.int64))

    def _lines(self) -> Iterator[tuple[int, list[str]]]:
        """(line number, fields) of each row that is not blank or a comment."""
        reader = csv.reader(io.StringIO(self.text, newline=""), skipinitialspace=True)
        try:
            for fields in reader:
                if not fields or not "".join(fields).strip() or fields[0].startswith("#"):
                    continue
                yield reader.line_num, [f.strip() for f in fields]
        except csv.Error as exc:
            raise self.error(reader.line_num, f"CSV syntax error: {exc}") from None

    def _read_rows(self) -> int:
        """Check the header and every record's fields; return the header's line."""
        lines = self._lines()
        first = next(lines, None)
        if first is None:
            raise self.error(1, f"the trace is empty; expected the header '{','.join(HEADER)}'")
        header_line, header = first
        if tuple(header) != HEADER:  # not a trace: none of its content is shown
            raise self.error(header_line, f"the first line is not the header "
                             f"'{','.join(HEADER)}' ({len(header)} fields); is this a trace?")
        for line, fields in lines:
            self.rows.append(self._record(line, fields))
        return header_line

    def _record(self, line: int, fields: list[str]) -> tuple[int, int, int, int, int, int, str]:
        if len(fields) != len(HEADER):
            raise self.error(line, f"expected {len(HEADER)} fields ({','.join(HEADER)}), "
                             f"found {len(fields)}")
        time = self._integer(line, "time_ns", fields[0])
        cpu = self._integer(line, "cpu", fields[1])
        op_text = fields[2]
        if op_text not in OPS:
            raise self.error(line, f"op: expected one of {', '.join(OPS)}, found "
                             f"{shown(op_text)}{did_you_mean(op_text, list(OPS))}")
        op = OPS.index(op_text)
        size = self._integer(line, "size_bytes", fields[3])
        handle = self._integer(line, "handle", fields[4], hex_ok=True)
        if op not in ALLOCATOR_OF and size == 0:
            raise self.error(line, f"size_bytes: expected a positive size for {op_text}, "
                             "found 0")
        if op in (VMALLOC, VM_MAP_RAM) and handle == 0:
            raise self.error(line, f"handle: expected the non-zero address {op_text} "
                             "returned, found 0 (drop failed allocations from the trace)")
        previous = self.last_time.get(cpu)
        if previous is not None and time < previous[0]:
            raise self.error(line, f"time_ns: expected at least {previous[0]} (CPU {cpu}'s "
                             f"record at line {previous[1]}; each CPU's records must be in "
                             f"time order), found {time}")
        self.last_time[cpu] = (time, line)
        return time, cpu, op, size, handle, line, fields[4]

    def _integer(self, line: int, name: str, text: str, hex_ok: bool = False) -> int:
        """A non-negative integer field (``0x`` hex too for a handle)."""
        try:
            hexa = hex_ok and text.lower().startswith("0x")
            value = int(text, 16 if hexa else 10)
        except ValueError:
            raise self.error(line, f"{name}: expected an integer, found {shown(text)}") from None
        if value < 0:
            raise self.error(line, f"{name}: expected a non-negative integer, found {value}")
        if value >= MAX_FIELD and not hex_ok:
            raise self.error(line, f"{name}: expected an integer below 2^62, found {value}")
        return value

    def _check_handles(self) -> np.ndarray:
        """Walk the records in time order (ties in file order): an allocation maps its handle,
        a free unmaps a handle mapped by the matching operation. Returns each free's ref."""
        refs = np.full(len(self.rows), -1, dtype=np.int64)
        mapped: dict[int, int] = {}  # handle -> index of the record that mapped it
        freed: dict[int, int] = {}  # handle -> line of its last free
        order = sorted(range(len(self.rows)), key=lambda i: (self.rows[i][0], i))
        for i in order:
            time, _, op, size, handle, line, text = self.rows[i]
            if op in (VMALLOC, VM_MAP_RAM):
                if handle in mapped:
                    raise self.error(line, f"handle: {text} is still mapped by line "
                                     f"{self.rows[mapped[handle]][5]}; expected its "
                                     f"{OPS[ALLOCATOR_OF_FREE[op]]} first")
                mapped[handle] = i
            elif op in ALLOCATOR_OF:
                refs[i] = self._free(i, mapped, freed)
                freed[handle] = line
        return refs

    def _free(self, i: int, mapped: dict[int, int], freed: dict[int, int]) -> int:
        time, _, op, size, handle, line, text = self.rows[i]
        j = mapped.get(handle)
        if j is None:
            before = f" (already freed at line {freed[handle]})" if handle in freed else ""
            raise self.error(line, f"handle: {text} is not mapped at time_ns {time}{before}; "
                             f"expected a {OPS[ALLOCATOR_OF[op]]} of it earlier in the trace")
        allocated = self.rows[j]
        if allocated[2] != ALLOCATOR_OF[op]:
            raise self.error(line, f"op: {text} was mapped by {OPS[allocated[2]]} at line "
                             f"{allocated[5]}; expected {OPS[ALLOCATOR_OF_FREE[allocated[2]]]}"
                             f", found {OPS[op]}")
        if size not in (0, allocated[3]):
            raise self.error(line, f"size_bytes: expected 0 or {allocated[3]} (the size "
                             f"mapped at line {allocated[5]}), found {size}")
        del mapped[handle]
        return j


def check_fits(trace: Trace, cpus: int, fold: bool, vmalloc_space: int) -> None:
    """Refuse a trace that names a CPU the run does not have (without folding) or maps more
    than the vmalloc space in one request."""
    if not fold:
        line = trace.first_line(trace.cpu >= cpus)
        if line is not None:
            found = int(trace.cpu[trace.line == line][0])
            raise ConfigError(f"cpu: expected a CPU below {cpus} (the run's cpus; or set "
                              f"the workload's cpu_map: fold), found {found}", trace.path, line)
    pages, line = trace.largest_request()
    if pages + 1 > vmalloc_space:
        raise ConfigError(f"size_bytes: {pages} pages plus the guard page are more than the "
                          f"vmalloc space ({vmalloc_space} pages)", trace.path, line)
