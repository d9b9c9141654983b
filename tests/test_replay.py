"""Trace replay (workload kind ``trace``, sim/workloads/replay.py): the sample trace replays
with its exact
operation counts per CPU; open loop keeps the recorded times when the machine keeps up and
records lateness when it does not; a free waits for its allocation on another CPU; replays are
deterministic; relative trace paths resolve against the file that names them; every malformed
trace is one line naming the trace's line, exit code 2."""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

import pytest
import yaml

from sim.cli import main
from sim.config.loader import ConfigError, catalog_dir
from sim.config.schema import RunConfig
from sim.config.trace_csv import load_trace
from sim.engine.tracer import Tracer
from sim.experiment.experiment import load_experiment
from sim.mm.variants import presets
from sim.simulation import Simulation
from sim.workloads.replay import replay_state

MACHINE = yaml.safe_load((catalog_dir("cpus") / "xeon-2s-112.yaml").read_text())
SAMPLE = catalog_dir("workloads") / "traces" / "sample.csv"
CORPUS = Path(__file__).parent / "bad_inputs" / "traces"
TOOLS = Path(__file__).parent.parent / "tools"
HEADER = "time_ns,cpu,op,size_bytes,handle\n"
MODES = ["open_loop", "closed_loop"]


def write_trace(path: Path, records: list[tuple[int, int, str, int, int]]) -> Path:
    path.write_text(HEADER + "".join(f"{t},{c},{op},{size},{h:#x}\n"
                                     for t, c, op, size, h in records))
    return path


def simulate(trace: Path, cpus: int = 4, variant: str = "linux-4.7", duration: float = 5e6,
             **workload) -> tuple[Simulation, dict[str, float], Tracer]:
    """Run a replay of ``trace`` with a tracer over the whole run."""
    work = {"name": "replay", "kind": "trace", "trace": str(trace),
            "background": {"count": 100}, **workload}
    config = RunConfig.model_validate({"machine": MACHINE, "workload": work,
                                       "variant": presets()[variant], "cpus": cpus,
                                       "duration": duration})
    sim = Simulation(config, (0,))
    tracer = Tracer(0.0, math.inf)
    sim.attach(tracer)
    return sim, sim.run(), tracer


def ops_of(tracer: Tracer, cpu: int) -> list[tuple[str, float, float]]:
    """(name, begin, end) of the operations ``cpu`` issued, in order."""
    return sorted(((name, begin, end) for tid, name, cat, begin, end, _ in tracer.events
                   if cat == "op" and tid == cpu), key=lambda op: op[1])


# --- the sample trace ----------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_sample_replay_reproduces_its_operation_counts_per_cpu(mode: str) -> None:
    sim, metrics, tracer = simulate(SAMPLE, mode=mode)
    trace = load_trace(str(SAMPLE))
    expected = trace.counts(4)
    assert {op for ops in expected.values() for op in ops} == {
        "vmalloc", "vfree", "vm_map_ram", "vm_unmap_ram", "set_memory"}
    assert replay_state(sim.control).op_counts() == expected
    assert metrics["replay_progress"] == 1.0
    assert metrics["replay_skipped_frees"] == metrics["replay_failed_allocs"] == 0
    assert metrics["replay_end_ns"] < 5e6
    # the model itself saw every vmalloc, vfree and set_memory call on the CPU that issued it
    for cpu, ops in expected.items():
        seen: dict[str, int] = {}
        for name, _, _ in ops_of(tracer, cpu):
            seen[name] = seen.get(name, 0) + 1
        for name in ("vmalloc", "vfree", "set_memory"):
            assert seen.get(name, 0) == ops.get(name, 0), (cpu, name)
    assert sim.metrics.vmalloc.n == sum(ops.get("vmalloc", 0) for ops in expected.values())


def test_the_catalog_workload_replays_the_sample_through_the_cli(tmp_path: Path,
                                                                 monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the relative trace path resolves against the workload file
    assert main(["run", "trace-replay", "-o", str(tmp_path / "out"), "-q", "--no-report",
                 "-j", "1", "--set", "sweep.workload.mode=[closed_loop]",
                 "--set", "variants=[linux-4.7]"]) == 0
    summary = (tmp_path / "out" / "summary.csv").read_text()
    assert "replay_progress,1.0," in summary and "replay_skipped_frees,0.0," in summary


# --- timing --------------------------------------------------------------------------------

def sparse(tmp_path: Path) -> Path:
    """Three CPUs, one operation every millisecond each: far more than any operation takes."""
    records = []
    for cpu in range(3):
        base = 7_000_000 + 100_000 * cpu
        h = 0x10000 * (cpu + 1)
        records += [(base, cpu, "vmalloc", 8192, h), (base + 1_000_000, cpu, "set_memory", 4096, 0),
                    (base + 2_000_000, cpu, "vfree", 0, h),
                    (base + 3_000_000, cpu, "vmalloc", 5000, h)]
    return write_trace(tmp_path / "sparse.csv", records)


@pytest.mark.parametrize("speed", [1.0, 4.0])
def test_open_loop_starts_each_operation_at_its_recorded_offset(tmp_path: Path,
                                                                speed: float) -> None:
    trace = sparse(tmp_path)
    sim, metrics, tracer = simulate(trace, cpus=3, mode="open_loop", speed=speed)
    assert metrics["replay_late_ops"] == 0 and metrics["replay_late_max_ns"] == 0
    for cpu in range(3):
        begins = [begin for _, begin, _ in ops_of(tracer, cpu)]
        offsets = [100_000 * cpu + 1_000_000 * k for k in range(4)]  # from the first record
        assert begins == [offset / speed for offset in offsets]
    assert metrics["replay_progress"] == 1.0


def test_open_loop_counts_lateness_when_the_machine_falls_behind(tmp_path: Path) -> None:
    # 20 vmallocs of 64 pages recorded 10 ns apart: each takes microseconds
    records = [(10 * i, 0, "vmalloc", 64 * 4096, 0x100000 * (i + 1)) for i in range(20)]
    sim, metrics, tracer = simulate(write_trace(tmp_path / "dense.csv", records), cpus=1,
                                    mode="open_loop")
    ops = ops_of(tracer, 0)
    assert ops[0][1] == 0.0
    for (_, _, end), (_, begin, _) in zip(ops, ops[1:]):
        assert begin == end  # as soon as the previous operation returned
    late = [begin - 10 * i for i, (_, begin, _) in enumerate(ops)]
    assert metrics["replay_late_ops"] == 19
    assert metrics["replay_late_max_ns"] == pytest.approx(max(late))
    assert metrics["replay_late_mean_ns"] == pytest.approx(sum(late) / 20)


def test_closed_loop_ignores_recorded_gaps(tmp_path: Path) -> None:
    sim, metrics, tracer = simulate(sparse(tmp_path), cpus=3, mode="closed_loop")
    for cpu in range(3):
        ops = ops_of(tracer, cpu)
        assert ops[0][1] == 0.0
        assert all(b[1] == a[2] for a, b in zip(ops, ops[1:]))
    assert metrics["replay_late_ops"] == 0
    assert metrics["replay_end_ns"] < 1_000_000  # the trace spans 3.2 ms


@pytest.mark.parametrize("mode", MODES)
def test_a_free_waits_for_its_allocation_on_another_cpu(tmp_path: Path, mode: str) -> None:
    # CPU 1 frees, at the same recorded time, the 4 MiB area CPU 0 is still allocating
    records = [(1000, 0, "vmalloc", 4 << 20, 0xA000), (1000, 1, "vfree", 0, 0xA000),
               (1000, 1, "vmalloc", 4096, 0xB000)]
    sim, metrics, tracer = simulate(write_trace(tmp_path / "cross.csv", records), cpus=2,
                                    mode=mode)
    [(_, _, allocated)] = ops_of(tracer, 0)
    (free, freed_at, _), (later, _, _) = ops_of(tracer, 1)
    assert (free, later) == ("vfree", "vmalloc")
    assert allocated > 1000 and freed_at == allocated
    assert metrics["replay_skipped_frees"] == 0
    assert metrics["replay_late_ops"] == (2 if mode == "open_loop" else 0)


def test_loop_repeats_the_trace_until_the_run_ends(tmp_path: Path) -> None:
    sim, metrics, _ = simulate(sparse(tmp_path), cpus=3, mode="closed_loop", loop=True,
                               duration=2e6)
    assert metrics["replay_progress"] > 2
    assert math.isnan(metrics["replay_end_ns"])
    assert metrics["replay_skipped_frees"] == metrics["replay_failed_allocs"] == 0


def test_open_loop_passes_keep_the_recorded_spacing(tmp_path: Path) -> None:
    trace = sparse(tmp_path)
    sim, metrics, tracer = simulate(trace, cpus=3, mode="open_loop", loop=True, duration=8e6)
    period = load_trace(str(trace)).period_ns()
    assert period == 3_200_000 + 3_200_000 / 11  # the span plus the mean gap between records
    begins = [begin for _, begin, _ in ops_of(tracer, 0)]
    offsets = [1_000_000 * k for k in range(4)]
    assert begins[:8] == offsets + [period + offset for offset in offsets]
    assert metrics["replay_late_ops"] == 0 and metrics["replay_skipped_frees"] == 0


def test_cpu_map_fold_runs_every_record_on_fewer_cpus(tmp_path: Path) -> None:
    trace = sparse(tmp_path)
    sim, metrics, _ = simulate(trace, cpus=2, mode="open_loop", cpu_map="fold")
    assert replay_state(sim.control).op_counts() == load_trace(str(trace)).counts(2, fold=True)
    assert sum(ops["vmalloc"] for ops in load_trace(str(trace)).counts(2, True).values()) == 6
    with pytest.raises(ConfigError, match=r"sparse.csv:10: cpu: expected a CPU below 2"):
        simulate(trace, cpus=2)


@pytest.mark.parametrize("mode", MODES)
def test_replay_is_deterministic(mode: str) -> None:
    first = simulate(SAMPLE, mode=mode, duration=2e6)
    second = simulate(SAMPLE, mode=mode, duration=2e6)
    assert first[2].events == second[2].events
    assert first[1].keys() == second[1].keys()
    for key, value in first[1].items():
        assert value == second[1][key] or (math.isnan(value) and math.isnan(second[1][key]))


# --- configuration -------------------------------------------------------------------------

def experiment(path: Path, trace: str) -> Path:
    path.write_text("name: e\nmachine: xeon-2s-112\n"
                    f"workload: {{name: w, kind: trace, trace: {trace}, mode: closed_loop}}\n"
                    "variants: [linux-4.7]\ncpus: 3\nduration: 1ms\nreplications: 1\n")
    return path


def test_relative_trace_paths_resolve_against_the_file_naming_them(tmp_path: Path,
                                                                   monkeypatch) -> None:
    (tmp_path / "sub").mkdir()
    trace = sparse(tmp_path / "sub")
    exp = experiment(tmp_path / "sub" / "e.yaml", "sparse.csv")
    monkeypatch.chdir(tmp_path)
    [spec] = load_experiment(exp).specs()
    assert spec.config["workload"]["trace"] == str(trace)
    assert spec.config["workload"]["trace_sha256"] == load_trace(str(trace)).sha256
    # a --set path is relative to the current directory
    [spec] = load_experiment(exp, ["workload.trace=sub/sparse.csv"]).specs()
    assert spec.config["workload"]["trace"] == str(trace)
    with pytest.raises(ConfigError, match="--set workload.trace: workload.trace: expected a "
                                          "CSV trace file"):
        load_experiment(exp, ["workload.trace=sparse.csv"])


def test_the_trace_content_is_part_of_the_run_id(tmp_path: Path) -> None:
    trace = sparse(tmp_path)
    exp = experiment(tmp_path / "e.yaml", "sparse.csv")
    [before] = load_experiment(exp).specs()
    trace.write_text(trace.read_text() + "20000000,0,set_memory,4096,0x0\n")
    [after] = load_experiment(exp).specs()
    assert before.run_id != after.run_id
    with pytest.raises(ValueError, match="changed since it was configured"):
        RunConfig.model_validate(before.config)


# --- malformed traces ----------------------------------------------------------------------

EXPECT = re.compile(r"# expect: (\d+): (.+)")


def check_fails(exp: Path, fragment: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(exp)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("vmapsim: error: ") and captured.err.count("\n") == 1
    assert "Traceback" not in captured.err and captured.out == ""
    assert fragment in captured.err, captured.err


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.csv")), ids=lambda p: p.stem)
def test_malformed_trace_is_one_line_naming_its_line(path: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    match = EXPECT.fullmatch(path.read_text().splitlines()[0])
    assert match, f"{path.name}: the first line must be '# expect: LINE: FRAGMENT'"
    exp = experiment(tmp_path / "e.yaml", str(path)).read_text().replace("cpus: 3", "cpus: 2")
    (tmp_path / "e.yaml").write_text(exp)
    check_fails(tmp_path / "e.yaml", f"{path}:{match[1]}: {match[2]}", capsys)


def test_corpus_has_one_case_per_rule() -> None:
    assert len(list(CORPUS.glob("*.csv"))) >= 25


@pytest.mark.parametrize("content,fragment", [
    (b"", ":1: the trace is empty; expected the header 'time_ns,cpu,op,size_bytes,handle'"),
    (b"# only a comment\n\n", ":1: the trace is empty"),
    (b"\x7fELF\x02\x01\x01\x00", ":1: this is a binary file, not a CSV trace"),
    (HEADER.encode() + b"0,0,vmalloc,4096,0x1000\n10,0,vfree,0,0x1000 \xe9\n",
     ":3: the trace is not UTF-8 text"),
], ids=["empty", "comments", "binary", "latin1"])
def test_unreadable_trace_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      content: bytes, fragment: str) -> None:
    trace = tmp_path / "t.csv"
    trace.write_bytes(content)
    check_fails(experiment(tmp_path / "e.yaml", "t.csv"), f"{trace}{fragment}", capsys)


# --- recording -----------------------------------------------------------------------------

def test_trace2csv_turns_a_raw_recording_into_a_valid_trace(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("trace2csv", TOOLS / "trace2csv.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    raw = ["Attaching 9 probes...", "time_ns,cpu,op,size_bytes,handle",
           "2000,1,vfree,0,0xffffc90000001000",          # allocated before the recording
           "1000,0,vmalloc,8192,0xffffc90000002000",
           "1500,1,vm_map_ram,16384,0xffffe8ff00000000",
           "3000,0,vfree,0,0xffffc90000002000",
           "3001,0,vfree,0,0xffffc90000002000",          # deferred from interrupt: again
           "2500,1,vm_unmap_ram,16384,0xffffe8ff00000000",
           "2600,1,set_memory,4096,0xffff888000100000"]
    lines, dropped = module.convert(raw)
    assert sum(dropped.values()) == 2
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    trace = load_trace(str(tmp_path / "t.csv"))
    assert trace.counts(2) == {0: {"vmalloc": 1, "vfree": 1},
                               1: {"vm_map_ram": 1, "vm_unmap_ram": 1, "set_memory": 1}}
    assert trace.time.tolist() == [0, 500, 1500, 1600, 2000]
