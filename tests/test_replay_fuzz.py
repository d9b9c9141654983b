"""Property tests of the trace parser (sim/config/trace_csv.py): any valid trace parses with its
exact
per-CPU operation counts, and a single corrupted field of any record is refused with that
record's line number."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.config.loader import ConfigError
from sim.config.trace_csv import load_trace

HEADER = "time_ns,cpu,op,size_bytes,handle\n"


@st.composite
def valid_traces(draw) -> list[tuple[int, int, str, int, int]]:
    """Records in time order: vmallocs, set_memory calls, and vfrees (on any CPU) of handles
    mapped earlier and not yet freed."""
    cpus = draw(st.integers(1, 4))
    records, live, now, next_handle = [], [], 0, 0x1000
    for _ in range(draw(st.integers(1, 40))):
        now += draw(st.integers(0, 5000))
        cpu = draw(st.integers(0, cpus - 1))
        choice = draw(st.sampled_from(["vmalloc", "set_memory", "vfree"]))
        if choice == "vfree" and live:
            handle = live.pop(draw(st.integers(0, len(live) - 1)))
            records.append((now, cpu, "vfree", 0, handle))
        elif choice == "set_memory":
            records.append((now, cpu, "set_memory", 4096 * draw(st.integers(1, 4)), 0))
        else:
            next_handle += 0x1000
            live.append(next_handle)
            records.append((now, cpu, "vmalloc", draw(st.integers(1, 65536)), next_handle))
    return records


def write(path: Path, records: list[tuple[int, int, str, int, int]]) -> Path:
    path.write_text(HEADER + "".join(f"{t},{c},{op},{size},{h:#x}\n"
                                     for t, c, op, size, h in records))
    return path


@pytest.fixture(scope="module")
def trace_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "trace.csv"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=valid_traces())
def test_a_valid_trace_parses_with_its_counts(trace_path: Path, records) -> None:
    trace = load_trace(str(write(trace_path, records)))
    assert trace.records == len(records)
    cpus = max(c for _, c, _, _, _ in records) + 1
    expected: dict[int, dict[str, int]] = {}
    for _, cpu, op, _, _ in records:
        expected.setdefault(cpu, {}).setdefault(op, 0)
        expected[cpu][op] += 1
    found = {cpu: {op: n for op, n in ops.items() if n}
             for cpu, ops in trace.counts(cpus).items()}
    assert {cpu: ops for cpu, ops in found.items() if ops} == expected


CORRUPTIONS = {
    0: ["abc", "-5", "1.5"],          # time_ns
    1: ["x", "-1"],                   # cpu
    2: ["malloc", "VFREE", ""],       # op
    4: ["zz"],                        # handle
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=valid_traces(), data=st.data())
def test_one_corrupted_field_is_refused_at_its_line(trace_path: Path, records, data) -> None:
    index = data.draw(st.integers(0, len(records) - 1))
    column = data.draw(st.sampled_from(sorted(CORRUPTIONS)))
    bad = data.draw(st.sampled_from(CORRUPTIONS[column]))
    lines = [f"{t},{c},{op},{size},{h:#x}" for t, c, op, size, h in records]
    fields = lines[index].split(",")
    fields[column] = bad
    lines[index] = ",".join(fields)
    trace_path.write_text(HEADER + "\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as caught:
        load_trace(str(trace_path))
    assert f"{trace_path}:{index + 2}:" in str(caught.value)  # line 1 is the header
