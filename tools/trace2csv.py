#!/usr/bin/env python3
"""Turn the output of tools/vmalloc-trace.bt into a trace vmapsim replays.

    python3 tools/trace2csv.py RAW [> OUT.csv]

bpftrace prints each CPU's events from its own buffer, so the raw output is not in time order,
and it holds what vmapsim must not replay: frees of areas allocated before the recording
started (and a second vfree() of an address deferred from interrupt context), lines that are
not records ("Attaching 8 probes..."). This keeps the records, sorts them by time (ties in
output order), drops every free whose handle is not mapped by the matching allocation at that
time and every allocation of a handle still mapped, sets a free's size to 0 where it does not
match its allocation's, and writes the CSV with its header. What was dropped goes to stderr.
Only the Python standard library is used, so it runs on the traced machine.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections import Counter
from collections.abc import Iterable

HEADER = "time_ns,cpu,op,size_bytes,handle"
RECORD = re.compile(r"(\d+),(\d+),(vmalloc|vfree|vm_map_ram|vm_unmap_ram|set_memory),(\d+),"
                    r"(0x[0-9a-fA-F]+|\d+)")
ALLOCATOR = {"vfree": "vmalloc", "vm_unmap_ram": "vm_map_ram"}


def convert(lines: Iterable[str]) -> tuple[list[str], Counter]:
    """The CSV lines (header first) of a raw recording, and the dropped records by reason."""
    records = []
    for line in lines:
        match = RECORD.fullmatch(line.strip())
        if match:
            time, cpu, op, size, handle = match.groups()
            records.append((int(time), len(records), int(cpu), op, int(size), int(handle, 0)))
    records.sort()
    mapped: dict[int, tuple[str, int]] = {}
    dropped: Counter = Counter()
    out = [HEADER]
    for time, _, cpu, op, size, handle in records:
        if op in ALLOCATOR:
            allocation = mapped.get(handle)
            if allocation is None or allocation[0] != ALLOCATOR[op]:
                dropped[f"{op} of an address not mapped by {ALLOCATOR[op]} in the trace"] += 1
                continue
            del mapped[handle]
            if size != allocation[1]:
                size = 0
        elif op != "set_memory":
            if handle in mapped:
                dropped[f"{op} of an address still mapped"] += 1
                continue
            mapped[handle] = (op, size)
        out.append(f"{time},{cpu},{op},{size},{handle:#x}")
    return out, dropped


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="trace2csv.py", description="Turn the output of tools/vmalloc-trace.bt into a "
        "trace vmapsim replays (the CSV on stdout, what was dropped on stderr).")
    parser.add_argument("raw", metavar="RAW", help="the bpftrace output")
    args = parser.parse_args(argv[1:])
    try:
        with open(args.raw, encoding="utf-8", errors="replace") as raw:
            lines, dropped = convert(raw)
    except OSError as exc:
        print(f"trace2csv.py: error: {args.raw}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # `| head`: the reader had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    print(f"{len(lines) - 1} records", file=sys.stderr)
    for reason, n in sorted(dropped.items()):
        print(f"dropped {n}: {reason}", file=sys.stderr)
    return 0 if len(lines) > 1 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
