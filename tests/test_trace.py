"""Timeline export (``sim.trace``, ``vmapsim run --trace-window``): the Chrome trace-event JSON
loads, its slices are where the model says, they nest on every track as Perfetto requires, and
tracing changes no result."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

import sim
from sim.cli import main
from sim.config.loader import ConfigError
from sim.engine.tracer import IRQ_TID, Tracer
from sim.results.timeline import parse_window, trace_run
from sim.simulation import RunSpec, run

TINY = str(Path(__file__).parent / "data" / "tiny.yaml")
SMALL = ["sweep.cpus=[8]", "sweep.workload.background.count=[2000]", "replications=1",
         "duration=2ms", "warmup=0.2ms"]
"""Two runs (linux-4.5, linux-4.7) of 8 CPUs: contended locks, purges and IPIs in 2 ms."""
WINDOW = (0.5e6, 1.5e6)
CPUS = 8
Trace = dict[str, Any]


def specs(*extra: str) -> list[RunSpec]:
    return sim.load_experiment(TINY, [*SMALL, *extra]).specs()


@pytest.fixture(scope="module")
def traced(tmp_path_factory) -> tuple[RunSpec, dict[str, Any], Trace]:
    """The first small run traced over WINDOW: its spec, result and loaded trace file."""
    spec = specs()[0]
    path = tmp_path_factory.mktemp("trace") / "t.json"
    result, _ = trace_run(spec, *WINDOW, path)
    return spec, result, json.loads(path.read_text())


def slices(trace: Trace) -> list[dict[str, Any]]:
    return [e for e in trace["traceEvents"] if e["ph"] == "X"]


def begin_ns(event: dict[str, Any]) -> int:
    return round(event["ts"] * 1000)


def end_ns(event: dict[str, Any]) -> int:
    return round((event["ts"] + event["dur"]) * 1000)


def test_every_event_has_the_required_fields(traced) -> None:
    _, _, trace = traced
    assert trace["displayTimeUnit"] == "ns" and trace["otherData"]["truncated"] is False
    for event in trace["traceEvents"]:
        assert {"name", "ph", "pid", "tid"} <= set(event)
        assert event["ph"] in ("X", "M", "C", "s", "f") and event["pid"] == 1
        if event["ph"] == "X":
            assert isinstance(event["ts"], float) and isinstance(event["dur"], float)
            assert event["dur"] >= 0 and event["cat"]
    cats = {e["cat"] for e in slices(trace)}
    assert cats == {"op", "lock", "lock_wait", "purge", "flush", "irq"}


def test_a_counter_shows_the_lazy_pages_against_their_limit(traced) -> None:
    _, _, trace = traced
    counts = [e for e in trace["traceEvents"] if e["ph"] == "C"]
    assert counts and {e["name"] for e in counts} == {"vmap_lazy_nr"}
    limit = {e["args"]["lazy_max_pages"] for e in counts}
    assert len(limit) == 1 and limit.pop() > 0
    assert any(e["args"]["vmap_lazy_nr"] > 0 for e in counts)
    assert [e["ts"] for e in counts] == sorted(e["ts"] for e in counts)


def test_flows_link_flush_senders_to_handlers_and_lock_holders(traced) -> None:
    _, _, trace = traced
    starts = {e["id"]: e for e in trace["traceEvents"] if e["ph"] == "s"}
    ends = {e["id"]: e for e in trace["traceEvents"] if e["ph"] == "f"}
    assert starts and starts.keys() == ends.keys()
    names = {e["name"] for e in starts.values()}
    assert "ipi" in names and any(n.startswith("handover ") for n in names)
    by_track = defaultdict(list)
    for e in slices(trace):
        by_track[e["tid"]].append((begin_ns(e), end_ns(e), e["name"]))
    for i, start in starts.items():
        end = ends[i]
        assert end["ts"] >= start["ts"] and end["bp"] == "e"
        if start["name"] == "ipi":  # from the sender's CPU to an interrupt track's handler
            assert start["tid"] < IRQ_TID <= end["tid"]
            assert any(b == begin_ns(end) and n.startswith("do_") for b, _, n in
                       by_track[end["tid"]])
        else:  # the next holder's hold of that lock begins where the arrow lands
            lock = start["name"].removeprefix("handover ")
            assert any(b == begin_ns(end) and n == lock for b, _, n in by_track[end["tid"]])


def test_slices_overlap_the_window(traced) -> None:
    _, _, trace = traced
    start, end = WINDOW
    assert all(end_ns(e) >= start and begin_ns(e) <= end for e in slices(trace))
    assert any(begin_ns(e) < start for e in slices(trace))  # kept whole, not clipped


def test_one_named_track_per_cpu(traced) -> None:
    _, _, trace = traced
    names = [(e["tid"], e["args"]["name"]) for e in trace["traceEvents"]
             if e["ph"] == "M" and e["name"] == "thread_name"]
    cpu_tracks = [(tid, name) for tid, name in names if tid < IRQ_TID]
    assert sorted(cpu_tracks) == [(n, f"CPU {n}") for n in range(CPUS)]
    assert sorted(t for t, _ in names if t >= IRQ_TID) == [IRQ_TID + n for n in range(CPUS)]
    assert {e["tid"] for e in slices(trace)} <= {t for t, _ in names}
    process = [e for e in trace["traceEvents"] if e["name"] == "process_name"]
    assert len(process) == 1 and "linux-4.5" in process[0]["args"]["name"]


def test_lock_waits_end_where_holds_begin(traced) -> None:
    _, _, trace = traced
    holds = {(e["tid"], e["name"], begin_ns(e)) for e in slices(trace) if e["cat"] == "lock"}
    waits = [e for e in slices(trace) if e["cat"] == "lock_wait" and end_ns(e) <= WINDOW[1]]
    assert len(waits) > 10
    for wait in waits:
        lock = wait["name"].removeprefix("wait ")
        assert (wait["tid"], lock, end_ns(wait)) in holds, wait


def test_purges_contain_their_flush(traced) -> None:
    _, _, trace = traced
    flushes = [e for e in slices(trace) if e["cat"] == "flush"]
    purges = [e for e in slices(trace) if e["cat"] == "purge" and e["args"]["areas"]
              and begin_ns(e) >= WINDOW[0] and end_ns(e) <= WINDOW[1]]
    assert purges
    for purge in purges:
        assert any(f["tid"] == purge["tid"] and begin_ns(purge) <= begin_ns(f)
                   and end_ns(f) <= end_ns(purge) for f in flushes), purge


def test_handlers_run_on_their_targets_irq_track(traced) -> None:
    _, _, trace = traced
    handlers = [e for e in slices(trace) if e["cat"] == "irq"]
    assert {e["name"] for e in handlers} == {"do_flush_tlb_all"}
    assert all(e["tid"] >= IRQ_TID for e in handlers)
    flush = next(e for e in slices(trace) if e["cat"] == "flush"
                 and WINDOW[0] <= begin_ns(e) and end_ns(e) <= WINDOW[1])
    during = [e for e in handlers if begin_ns(flush) <= begin_ns(e) <= end_ns(flush)
              and e["tid"] != IRQ_TID + flush["tid"]]
    assert len({e["tid"] for e in during}) == flush["args"]["ipis"] == CPUS - 1


def assert_nested(trace: Trace) -> None:
    """On every track each slice ends before the one enclosing it: what Perfetto and
    chrome://tracing need to draw complete events."""
    tracks: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for event in slices(trace):  # in file order
        tracks[event["tid"]].append(event)
    for events in tracks.values():
        stack: list[int] = []
        for event in events:
            while stack and stack[-1] <= begin_ns(event):
                stack.pop()
            assert not stack or end_ns(event) <= stack[-1], event
            stack.append(end_ns(event))


def test_slices_nest_on_every_track(traced, tmp_path: Path) -> None:
    assert_nested(traced[2])
    noise = "workload.irq_noise={rate: 50000, mean: 2us, preempt_mean: 3us}"
    for variant in ("linux-4.10", "pen-2016-no-purge-lock"):
        spec = specs(f"variants=[{variant}]", noise)[0]
        _, tracer = trace_run(spec, *WINDOW, tmp_path / "t.json")
        trace = json.loads((tmp_path / "t.json").read_text())
        assert {"irq", "do_flush_tlb_all"} <= {e["name"] for e in slices(trace)}
        assert_nested(trace)


def test_tracing_does_not_change_results(traced) -> None:
    spec, result, _ = traced
    plain = run(spec)
    for key in ("metrics", "lock_stat", "safety"):
        assert json.dumps(result[key], sort_keys=True) == json.dumps(plain[key], sort_keys=True)


def test_events_are_bounded_and_truncation_noted(tmp_path: Path) -> None:
    spec = specs()[0]
    result, tracer = trace_run(spec, 0, 1e9, tmp_path / "t.json", max_events=50)
    trace = json.loads((tmp_path / "t.json").read_text())
    kept = [e for e in trace["traceEvents"] if e["ph"] in ("X", "C", "s")]  # an arrow is one
    assert len(kept) == 50 == tracer.kept and tracer.dropped > 0
    assert trace["otherData"]["truncated"] is True
    assert trace["otherData"]["dropped_events"] == tracer.dropped
    labels = next(e for e in trace["traceEvents"] if e["name"] == "process_labels")
    assert "TRUNCATED" in labels["args"]["labels"]
    assert result["metrics"]["ops_per_sec"] == run(spec)["metrics"]["ops_per_sec"]


def test_parse_window() -> None:
    assert parse_window("1ms..2ms") == (1e6, 2e6)
    assert parse_window("0..1.5us") == (0.0, 1500.0)
    with pytest.raises(ConfigError, match="END .* is before START"):
        parse_window("2ms..1ms")
    with pytest.raises(ValueError):
        Tracer(2.0, 1.0)


def test_cli_writes_the_first_run_or_the_chosen_one(tmp_path: Path, capsys) -> None:
    args = ["run", TINY, "-o", str(tmp_path), "-j", "1", "--no-report",
            *(f"--set={s}" for s in SMALL), "--trace-window", "0.5ms..0.6ms"]
    first, second = specs()
    assert main(args) == 0
    assert f"traces/{first.run_id}.json" in capsys.readouterr().err
    trace = json.loads((tmp_path / "traces" / f"{first.run_id}.json").read_text())
    assert slices(trace)
    assert main([*args, "--resume", "-q", "--trace-run", second.run_id[:6]]) == 0
    assert (tmp_path / "traces" / f"{second.run_id}.json").exists()


@pytest.mark.parametrize("extra, message", [
    (["--trace-window", "2ms..1ms"], "--trace-window: END (1ms) is before START (2ms)"),
    (["--trace-window", "soon..2ms"], "--trace-window: START: expected a time"),
    (["--trace-window", "1ms"], "--trace-window: expected START..END"),
    (["--trace-window", "1ms..2ms", "--trace-run", "nope"], "--trace-run: 'nope' matches no"),
    (["--trace-run", "0"], "--trace-run needs --trace-window"),
])
def test_cli_rejects_bad_trace_options(tmp_path: Path, capsys, extra: list[str],
                                       message: str) -> None:
    assert main(["run", TINY, "-o", str(tmp_path / "out"), "-q", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vmapsim: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()  # refused before any run
