"""The benchmark runs: ``benchmarks/run.py --smoke`` (tiny sizes) writes every figure.

Only the structure is checked (keys, positive numbers, a verdict per target), never a wall
time: speed is measured by the benchmark itself and reported, not asserted.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from sim.experiment.verify import scenarios

ROOT = Path(__file__).resolve().parent.parent
CASES = {"bare-simpy", "bare-sleep", "peer-simpy/fix_size/64", "fix_size/1", "fix_size/16",
         "fix_size/64", "fix_size/256", "seed-i915/64/bg=1e3", "seed-i915/64/bg=1e5",
         "seed-i915/64/bg=1e6"}


@pytest.fixture(scope="module")
def record(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--smoke",
                           "--json", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert "| case |" in done.stdout and "| target |" in done.stdout
    return json.loads(out.read_text())


def test_every_case_has_positive_figures(record: dict) -> None:
    cases = {c["name"]: c for c in record["cases"]}
    assert set(cases) == CASES
    for case in cases.values():
        for key in ("ops", "events", "events_per_op", "steps", "ops_per_wall_s", "us_per_op",
                    "ratio_to_bare_simpy", "ratio_to_peer", "peak_mib", "wall_s"):
            assert case[key] > 0, (case["name"], key)
        assert case["deterministic"]
    for name, case in cases.items():  # every vmapsim window holds a purge; references none
        if case["kind"] == "vmapsim":
            assert case["purges"] >= 1, name
            assert case["ops_per_purge"] == pytest.approx(case["ops"] / case["purges"]), name
        else:
            assert case["purges"] is None, name
        assert case["warmup_ops"] == 0, name  # --smoke: no warm-up
    assert cases["bare-simpy"]["ratio_to_bare_simpy"] == 1.0
    assert cases["peer-simpy/fix_size/64"]["ratio_to_peer"] == 1.0
    assert record["ratio_to_bare_simpy"] == cases["fix_size/64"]["ratio_to_bare_simpy"]


def test_events_bound_ceiling(record: dict) -> None:
    """Every model case's ceiling is what its processed events allow at the bare-sleep rate,
    its model share is in [0, 1], and no run processes more events than it schedules; the
    bound of fix_size/64 restates its case."""
    cases = {c["name"]: c for c in record["cases"]}
    sleep_rate = cases["bare-sleep"]["ops_per_wall_s"]
    bare_rate = cases["bare-simpy"]["ops_per_wall_s"]
    for name, case in cases.items():
        if name.startswith("bare"):
            continue
        assert case["ceiling_ratio_to_bare"] == pytest.approx(
            sleep_rate / case["steps_per_op"] / bare_rate), name
        assert 0.0 <= case["model_share"] <= 1.0, name
        assert 0 <= case["steps"] <= case["events"], name
    bound = record["bound"]
    assert bound["case"] == "fix_size/64"
    assert bound["ceiling_ratio_to_bare"] == cases["fix_size/64"]["ceiling_ratio_to_bare"]
    assert bound["steps_per_op_at_half_bare"] == pytest.approx(sleep_rate / (0.5 * bare_rate))
    assert bound["model_us_per_op"] == pytest.approx(
        cases["fix_size/64"]["us_per_op"] * cases["fix_size/64"]["model_share"])


def test_studies_and_targets_are_reported(record: dict) -> None:
    memory, scaling = record["memory_vs_length"], record["cpu_scaling"]
    assert memory["ops_long"] == 10 * memory["ops_short"]
    assert memory["peak_mib_short"] > 0 and memory["ratio"] > 0
    for key in ("wall_s_16", "wall_s_256", "ratio"):  # present and positive, never compared
        assert scaling[key] > 0, key
    assert len(record["targets"]) == 5
    assert all(isinstance(t["met"], bool) and t["measured"] > 0 for t in record["targets"])
    assert record["environment"]["python"]


def test_the_verify_study_is_reported(record: dict) -> None:
    study = record["verify"]
    assert study["budget_per_scenario"] >= 1
    for name, safe in (("linux-4.7", True), ("wilson-2016-v1", False)):
        assert study[name]["safe"] is safe
        assert study[name]["schedules"] == len(scenarios()) * study["budget_per_scenario"]
        assert study[name]["cpu_s"] > 0 and study[name]["schedules_per_s"] > 0


def test_a_window_without_a_purge_is_refused_naming_its_case(monkeypatch) -> None:
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "benchmarks" / "run.py")
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_run", bench)  # dataclasses look their module up
    spec.loader.exec_module(bench)
    monkeypatch.setattr(bench, "MAX_WINDOW_OPS", 500)  # fix_size/64 first purges at ~60,000
    case = next(c for c in bench.CASES if c.name == "fix_size/64")
    with pytest.raises(bench.NoPurge, match="fix_size/64: its window reached 0 of 1 purges"):
        bench.timed_run(bench.builder(case, 100, "smoke"))
