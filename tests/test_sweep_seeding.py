"""Seeding (one root seed, streams keyed by point and replication, common random numbers across
variants) and the ``ops`` stop condition."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sim import simulation
from sim.config.schema import RunConfig
from sim.experiment.experiment import load_experiment
from sim.simulation import Simulation, run

TINY = str(Path(__file__).parent / "data" / "tiny.yaml")
SMALL = ["sweep.cpus=[2]", "sweep.workload.background.count=[100, 200]", "replications=2"]


@pytest.fixture()
def recorded_streams(monkeypatch) -> list[tuple]:
    """Every random stream a run creates: (purpose, key, generator state at creation)."""
    created: list[tuple] = []
    real = simulation.stream

    def spy(entropy, purpose, *key):
        rng = real(entropy, purpose, *key)
        created.append((purpose, key, repr(rng.bit_generator.state)))
        return rng

    monkeypatch.setattr(simulation, "stream", spy)
    return created


def _streams_of(spec, created: list[tuple]) -> list[tuple]:
    created.clear()
    run(spec)
    return list(created)


def test_variants_share_random_streams_at_a_point_and_replication(recorded_streams) -> None:
    specs = load_experiment(TINY, SMALL).specs()
    by = {(s.variant, s.replication, s.point["workload.background.count"]): s for s in specs}
    a = _streams_of(by["linux-4.5", 0, 100], recorded_streams)
    b = _streams_of(by["linux-4.7", 0, 100], recorded_streams)
    assert a and a == b  # common random numbers: the same draws in both variants
    other_rep = _streams_of(by["linux-4.5", 1, 100], recorded_streams)
    other_point = _streams_of(by["linux-4.5", 0, 200], recorded_streams)
    for other in (other_rep, other_point):
        assert [x[:2] for x in other] == [x[:2] for x in a]  # same purposes and keys ...
        assert all(x[2] != y[2] for x, y in zip(other, a))  # ... different streams


def test_purposes_and_cpus_get_distinct_streams(recorded_streams) -> None:
    spec = load_experiment(TINY, SMALL).specs()[0]
    streams = _streams_of(spec, recorded_streams)
    assert {(p, k) for p, k, _ in streams} >= {("background", ()), ("workload", (0,)),
                                               ("workload", (1,))}
    assert len({state for _, _, state in streams}) == len(streams)


def test_seed_and_entropy_recorded_in_every_spec_and_result() -> None:
    exp = load_experiment(TINY, SMALL)
    specs = exp.specs()
    assert {s.seed for s in specs} == {7}
    assert len({s.entropy for s in specs}) == 4  # 2 points x 2 replications
    for s in specs:
        assert s.entropy[0] == 7 and s.entropy[2] == s.replication
    result = run(specs[0])
    assert result["spec"]["seed"] == 7
    assert result["spec"]["entropy"] == list(specs[0].entropy)
    reseeded = load_experiment(TINY, [*SMALL, "seed=8"]).specs()
    assert {s.entropy for s in reseeded}.isdisjoint({s.entropy for s in specs})


def _window(spec) -> tuple[int, float, float, dict]:
    """Run ``spec``; the window's operation count, end, start, and the metrics."""
    simulation = Simulation(RunConfig.model_validate(spec.config), spec.entropy)
    seen = {}
    collect = simulation.collect

    def spy():
        seen.update(ops=simulation.metrics.ops, now=simulation.env.now,
                    start=simulation.metrics.window_start)
        return collect()

    simulation.collect = spy
    metrics = simulation.run()
    return seen["ops"], seen["now"], seen["start"], metrics


def test_ops_ends_the_window_at_the_nth_operation() -> None:
    spec = load_experiment(TINY, [*SMALL, "ops=300", "duration=1s"]).specs()[0]
    ops, now, start, metrics = _window(spec)
    assert ops == 300
    assert start == spec.config["warmup"] > 0  # counted after the warm-up only
    assert now < spec.config["warmup"] + spec.config["duration"]
    assert metrics["ops_per_sec"] == pytest.approx(300 / ((now - start) / 1e9))
    again = _window(spec)
    assert again[1] == now  # deterministic, bit for bit (NaN included)
    assert json.dumps(again[3], sort_keys=True) == json.dumps(metrics, sort_keys=True)


def test_ops_without_warmup_and_the_duration_cap() -> None:
    spec = load_experiment(TINY, [*SMALL, "ops=50", "warmup=0"]).specs()[0]
    ops, now, start, _ = _window(spec)
    assert (ops, start) == (50, 0.0)
    capped = load_experiment(TINY, [*SMALL, "ops=100000000"]).specs()[0]
    ops, now, start, _ = _window(capped)
    assert now == capped.config["warmup"] + capped.config["duration"]
    assert 0 < ops < 100000000
