"""What a run may cost is checked before anything runs: the limits of sim/experiment/limits.py,
the metric names known before a run, and ``check`` answering without simulating."""

from __future__ import annotations

from pathlib import Path

import pytest

import sim.simulation
from sim.cli import main
from sim.config.schema import RunConfig
from sim.experiment.experiment import load_experiment
from sim.experiment.limits import MAX_RUN_EVENTS, check_limits, estimated_events
from sim.workloads.metric_names import RUN_METRICS, metric_names

CATALOG = Path(__file__).parents[1] / "experiments"
CORPUS = Path(__file__).parent / "bad_inputs"


def configs(name: str) -> list[RunConfig]:
    experiment = load_experiment(CATALOG / f"{name}.yaml")
    return [RunConfig.model_validate(experiment.resolve_point(point, variant))
            for point in experiment.points() for variant in experiment.variants]


@pytest.mark.parametrize("name", sorted(p.stem for p in CATALOG.glob("*.yaml")))
def test_every_catalog_run_is_well_inside_the_limits(name: str) -> None:
    for config in configs(name):
        assert check_limits(config) is None
        events, _ = estimated_events(config)
        assert 0 < events < MAX_RUN_EVENTS / 10


def test_the_estimate_bounds_what_a_run_simulates() -> None:
    """The estimate is an upper bound: a short seed run completes fewer operations."""
    config = configs("seed")[0].model_copy(update={"duration": 200e3, "warmup": 0.0})
    events, key = estimated_events(config)
    assert key == ("duration",)
    spec = sim.simulation.RunSpec("t", config.model_dump(mode="json"), {}, 0, 0, (0, 0, 0))
    result = sim.simulation.run(spec)
    ops = result["metrics"]["ops_per_sec"] * config.duration / 1e9
    assert 0 < ops < events


@pytest.mark.parametrize("name", ["seed", "trace-replay", "test_vmalloc-smoke", "thread-churn"])
def test_metric_names_known_before_a_run_are_the_ones_it_reports(name: str) -> None:
    config = configs(name)[0]
    config = config.model_copy(update={"duration": 50e3, "cpus": min(config.cpus, 4)})
    spec = sim.simulation.RunSpec("t", config.model_dump(mode="json"), {}, 0, 0, (0, 0, 0))
    reported = set(sim.simulation.run(spec)["metrics"])
    known = set(metric_names(config))
    assert set(RUN_METRICS) <= reported <= known
    assert len(known) == len(metric_names(config))  # no name twice


BREACHES = ["run-costs-subnormal", "run-duration-centuries", "run-warmup-huge",
            "run-too-many-ops", "irq-rate-livelock", "background-over-space"]


@pytest.mark.parametrize("name", BREACHES)
def test_check_refuses_without_simulating(name: str, monkeypatch, capsys) -> None:
    """A limit is found from the configuration alone: nothing is simulated or expanded."""
    def never(*args, **kwargs):
        raise AssertionError("check simulated a run")

    monkeypatch.setattr(sim.simulation.Simulation, "__init__", never)
    assert main(["check", str(CORPUS / f"{name}.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_swept_value_past_a_limit_is_located_at_its_sweep_entry(tmp_path: Path,
                                                                   capsys) -> None:
    path = tmp_path / "e.yaml"
    path.write_text("name: e\nmachine: desktop-8c16t\nworkload: seed-i915\n"
                    "variants: [linux-4.7]\nduration: 1ms\n"
                    "sweep:\n  duration: [1ms,\n    2e9s]\n")
    assert main(["check", str(path)]) == 2
    assert f"{path}:8: sweep.duration[1]: expected at most 3600s" in capsys.readouterr().err
