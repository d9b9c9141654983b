"""``vmapsim verify``: schedule exploration finds every unsafe preset and composition with the
default budget, deterministically, reports a broken model assumption as a violation (never a
crash), finds a deliberately injected bug and minimizes its counterexample, and reports the
safe presets safe."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sim.cli import main
from sim.config.loader import ConfigError, Origins
from sim.experiment.experiment import validated_variant
from sim.experiment.verdicts import to_json
from sim.experiment.verify import (
    Schedule,
    explore,
    minimize,
    pick_scenarios,
    run_schedule,
    scenarios,
    targets,
)
from sim.mm.purge import LazyPurge

README_PROPOSAL = {"name": "my-idea", "base": "linux-4.7", "purge_lock": "none",
                   "free_lock_break": 32}


def variant(entry: str | dict[str, Any]) -> dict[str, Any]:
    return validated_variant(entry, Origins(), ())


@pytest.mark.parametrize(("entry", "kind"), [
    ("wilson-2016-v1", "use_after_free"),
    ("linux-4.5", "use_after_free"),  # the "very long-standing problem" of the 2016 review
    ("pen-2016-no-purge-lock", "unmap_aliases_unflushed"),
    ("fernandes-2016-refcount", "unmap_aliases_unflushed"),
    (README_PROPOSAL, "unmap_aliases_unflushed"),
    ({"name": "5.11-without-purge-lock", "base": "linux-5.11", "purge_lock": "none"},
     "unmap_aliases_unflushed"),
], ids=lambda e: e if isinstance(e, str) else e.get("name") if isinstance(e, dict) else e)
def test_every_unsafe_variant_is_found_within_the_default_budget(entry, kind: str) -> None:
    report = explore(variant(entry))
    assert kind in report.findings, sorted(report.findings)
    example = report.findings[kind].counterexample.found[kind]
    assert example["what"]


def test_a_broken_model_assumption_is_a_violation_with_where_it_broke() -> None:
    report = explore(variant({"name": "c", "base": "linux-6.9", "purge_lock": "none"}),
                     budget=60)
    example = report.findings["model_assumption"].counterexample.found["model_assumption"]
    assert example["what"].startswith("IndexError")
    assert example["where"].startswith("mm/node_purge.py:")


SAFE = ["linux-2.6.27", "linux-4.7", "linux-4.10", "linux-5.4", "linux-5.5", "linux-5.11",
        "linux-5.18", "linux-6.9"]


@pytest.mark.parametrize("name", SAFE)
def test_the_safe_presets_report_nothing(name: str) -> None:
    report = explore(variant(name), budget=80)
    assert report.safe, {k: f.counterexample.found[k] for k, f in report.findings.items()}
    assert report.schedules == 80 * len(scenarios())


@pytest.mark.skipif(not os.environ.get("VMAPSIM_SLOW"), reason="slow: set VMAPSIM_SLOW=1")
@pytest.mark.parametrize("name", SAFE)
def test_the_safe_presets_report_nothing_over_a_large_budget(name: str) -> None:
    """About a minute per preset: 2,000 schedules of each scenario."""
    assert explore(variant(name), budget=2000).safe


def test_the_report_is_a_function_of_its_inputs() -> None:
    chosen = pick_scenarios(["noflush-vs-purge"])
    first = to_json(explore(variant("wilson-2016-v1"), 60, 7, chosen), 60, 7)
    again = to_json(explore(variant("wilson-2016-v1"), 60, 7, chosen), 60, 7)
    assert first == again
    assert to_json(explore(variant("wilson-2016-v1"), 60, 8, chosen), 60, 8) != first


def test_an_injected_bug_is_found_and_its_counterexample_minimized(monkeypatch) -> None:
    """A copy of the purge that frees the areas before it flushes them: a range can then be
    handed out again while stale TLB entries still map it."""
    original = LazyPurge.purge_lazy_list

    def free_then_flush(self, cpu, start, end, force_flush):
        nodes = yield from self.lazy.collect(self, cpu)
        valist = [va for node in nodes for va in node]
        if valist:
            self._subtract_lazy(cpu, valist)
            yield from self.free_loop(cpu, nodes, False)
            yield from self.flusher.flush_tlb_kernel_range(
                cpu, min(va.va_start for va in valist), max(va.va_end for va in valist))
        return valist, len(nodes)

    safe = explore(variant("linux-4.7"), budget=40)
    assert safe.safe
    monkeypatch.setattr(LazyPurge, "purge_lazy_list", free_then_flush)
    broken = explore(variant("linux-4.7"), budget=40)
    assert "reuse_before_flush" in broken.findings
    found = broken.findings["reuse_before_flush"].counterexample
    scenario, machine = pick_scenarios([found.scenario])[0]
    assert found.cpus <= scenario.cpus and found.duration <= scenario.duration
    again = run_schedule(variant("linux-4.7"), scenario, machine, found.schedule, 0,
                         found.steps, found.cpus, found.duration)
    assert again.found["reuse_before_flush"] == found.found["reuse_before_flush"]
    assert minimize(variant("linux-4.7"), "reuse_before_flush", found, 0).duration \
        <= found.duration
    monkeypatch.setattr(LazyPurge, "purge_lazy_list", original)


def test_a_change_point_drops_the_cpu_to_the_lowest_priority() -> None:
    schedule = Schedule(np.random.default_rng(0), [0, 1, 2], 100.0, frozenset({2}))
    schedule.rng = np.random.default_rng(0)
    schedule.delay(0)  # step 1: CPU0 still highest
    assert schedule.ranks[0] == 0
    schedule.delay(0)  # step 2: the change point
    assert schedule.ranks[0] == 3 and schedule.steps == 2
    assert Schedule.plain(2).delay(1) == 0.0


def test_targets_take_presets_proposal_files_and_experiments(tmp_path: Path) -> None:
    proposal = tmp_path / "mine.yaml"
    proposal.write_text("name: mine\nbase: linux-4.7\npurge_lock: none\n")
    names = [v["name"] for v in targets(["linux-4.7", str(proposal), "seed", "linux-4.7"])]
    assert names == ["linux-4.7", "mine", "linux-4.5"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nbase: linux-4.7\npurge_lock: sometimes\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:3.*purge_lock"):
        targets([str(bad)])


def test_the_command_exits_0_safe_1_unsafe_2_bad_input(tmp_path: Path, capsys) -> None:
    out = tmp_path / "verdicts.json"
    assert main(["verify", "linux-4.7", "--budget", "5", "--scenario", "noflush-vs-purge"]) == 0
    assert "linux-4.7: safe within 5 schedules" in capsys.readouterr().out
    assert main(["verify", "wilson-2016-v1", "--scenario", "noflush-vs-purge",
                 "--json", str(out)]) == 1
    text = capsys.readouterr().out
    assert "wilson-2016-v1: UNSAFE" in text
    assert "free_vmap_area_noflush (mm/vmalloc.py:" in text  # each step with the model's line
    verdict = json.loads(out.read_text())[0]
    assert verdict["safe"] is False and verdict["kinds"]["use_after_free"]["found"]
    for bad in (["verify", "no-such-variant"], ["verify", "linux-4.7", "--budget", "0"],
                ["verify", "linux-4.7", "--scenario", "nope"], ["verify", "linux-4.7", "-j", "0"]):
        assert main(bad) == 2
        assert "Traceback" not in capsys.readouterr().err


def test_a_bad_scenario_file_is_one_line_naming_its_line(tmp_path: Path) -> None:
    from sim.experiment.verify import load_scenario

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ncpus: 1\nworkload: {kind: vmalloc_loop, size: {dist: fixed, "
                   "value: 1}}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:2.*cpus"):
        load_scenario(bad)
    bad.write_text("name: bad\nworkload:\n  kind: vmalloc_loop\n  sise: {dist: fixed, "
                   "value: 1}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:4.*sise"):
        load_scenario(bad)


def test_a_run_whose_model_breaks_reports_the_violation_not_a_crash(tmp_path: Path) -> None:
    """``purge_lock: none`` over 6.9 on lock-removal's settings: a concurrent purge empties a
    node's purge list under another (IndexError in purge_vmap_nodes): the run ends there,
    ``ok``, with the violation and where it was raised."""
    from sim.experiment.experiment import load_experiment
    from sim.simulation import run

    exp = tmp_path / "broken.yaml"
    exp.write_text(
        "name: broken\nmachine: xeon-2s-112\nworkload: seed-i915\n"
        "variants: [{name: nodes-without-purge-lock, base: linux-6.9, purge_lock: none}]\n"
        "duration: 5ms\nwarmup: 1ms\nreplications: 1\nseed: 42\n"
        "sweep: {cpus: [16], workload.set_memory_rate: [5000], "
        "workload.vmap_block_dirty: [false], workload.irq_noise.rate: [10000], "
        "workload.irq_noise.preempt_mean: [20us]}\n")
    result = run(load_experiment(exp).specs()[0])
    assert result["status"] == "ok"
    assert result["metrics"]["safety_model_assumption"] == 1
    example = result["safety"]["model_assumption"]
    assert example["what"].startswith("IndexError")
    assert example["where"].startswith("mm/node_purge.py:")


PROPOSALS = ("name: prop\nmachine: desktop-8c16t\nworkload: seed-i915\n"
             "variants: [linux-4.7, {name: my-idea, base: linux-4.7, purge_lock: none, "
             "free_lock_break: 32}]\nduration: 200us\nreplications: 1\ncpus: 2\n")


def test_run_shows_verdicts_for_proposals_cached_in_the_output(tmp_path: Path, capsys,
                                                               monkeypatch) -> None:
    import sim.experiment.verdicts as verdicts

    exp, out = tmp_path / "prop.yaml", tmp_path / "out"
    exp.write_text(PROPOSALS)
    args = ["run", str(exp), "-o", str(out), "-q", "--no-report", "-j", "1"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert f"linux-4.7: safe within {200 * len(scenarios())} schedules" in first
    assert f"my-idea: UNSAFE: unmap_aliases_unflushed (see vmapsim verify {exp})" in first
    assert len(list((out / "verify").glob("*.json"))) == 2

    def no_exploring(*args, **kwargs):
        raise AssertionError("the verdicts were cached")

    monkeypatch.setattr(verdicts, "verify_all", no_exploring)
    assert main([*args, "--resume"]) == 0
    again = capsys.readouterr().out
    assert again.split("verdicts", 1)[1] == first.split("verdicts", 1)[1]
    assert main([*args, "--resume", "--no-verify"]) == 0
    assert "verdicts" not in capsys.readouterr().out


def test_run_of_presets_only_verifies_when_asked(tmp_path: Path, capsys) -> None:
    exp = tmp_path / "presets.yaml"
    exp.write_text(PROPOSALS.replace(", {name: my-idea, base: linux-4.7, purge_lock: none, "
                                     "free_lock_break: 32}", ""))
    assert main(["run", str(exp), "-o", str(tmp_path / "o"), "-q", "--no-report"]) == 0
    assert "verdicts" not in capsys.readouterr().out


def test_the_vmap_block_scenario_finds_the_stale_tlb_of_fully_used_blocks() -> None:
    """Before 6.5 (fc1e0d980037) vm_unmap_aliases() walked only the blocks with free space,
    so a dirty range in a fully used block stayed unflushed. The scenario runs only when
    named."""
    chosen = pick_scenarios(["vm-map-ram-vs-unmap-aliases"])
    assert "vm-map-ram-vs-unmap-aliases" not in [s.name for s, _ in scenarios()]
    report = explore(variant("linux-4.7"), budget=20, chosen=chosen)
    assert "unmap_aliases_unflushed" in report.findings


def test_trace_dir_writes_each_counterexample_as_a_chrome_trace(tmp_path: Path) -> None:
    assert main(["verify", "wilson-2016-v1", "--scenario", "noflush-vs-purge", "--budget", "80",
                 "--trace-dir", str(tmp_path)]) == 1
    path = tmp_path / "wilson-2016-v1.use_after_free.json"

    def strict(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    trace = json.loads(path.read_text(), parse_constant=strict)
    slices = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert {e["name"] for e in slices} >= {"vmalloc", "vfree", "__purge_vmap_area_lazy"}
    assert {e["tid"] for e in slices} >= {0, 1}


@pytest.mark.parametrize("executor", ["local", "dask"])
def test_the_verdicts_are_the_same_on_every_executor(executor: str) -> None:
    from sim.experiment.verify import verify_all

    chosen = pick_scenarios(["noflush-vs-purge", "unmap-aliases-vs-purge"])
    variants = [variant("wilson-2016-v1"), variant("linux-4.7")]
    serial = [to_json(r, 30, 3) for r in verify_all(variants, 30, 3, chosen, 1)]
    parallel = [to_json(r, 30, 3) for r in verify_all(variants, 30, 3, chosen, 2, executor)]
    assert parallel == serial
    assert [v["safe"] for v in serial] == [False, True]


def test_a_small_enough_scenario_runs_every_schedule_of_depth_two() -> None:
    """2 CPUs and about 90 steps: both priority orders, each with no change point or one at
    any step, fit in the default budget; they are run first, on schedule 0's workload."""
    chosen = pick_scenarios(["noflush-vs-purge-tiny"])
    report = explore(variant("linux-4.7"), chosen=chosen)
    assert report.exhaustive == ["noflush-vs-purge-tiny"] and report.safe
    assert to_json(report, 200, 0)["exhaustive_scenarios"] == ["noflush-vs-purge-tiny"]
    orders = {tuple(Schedule.enumerated(2, 10, i).ranks) for i in range(1, 23)}
    points = {min(Schedule.enumerated(2, 10, i).change_points, default=0) for i in range(1, 12)}
    assert orders == {(0, 1), (1, 0)} and points == set(range(11))
    assert not explore(variant("linux-4.7"), budget=20, chosen=chosen).exhaustive
