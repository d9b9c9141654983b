"""The sweep grammar: factors, zipped groups, ``--set`` overrides, and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.cli import main
from sim.config.loader import Origins
from sim.experiment.experiment import load_experiment
from sim.experiment.sweep import parse_sweep

GOOD = """\
name: x
machine: desktop-8c16t
workload: seed-i915
variants: [linux-4.5, linux-4.7]
duration: 1ms
"""

# (raw sweep mapping, expected points in order)
EXPANSIONS = [
    ({}, [{}]),
    ({"cpus": [1, 2]}, [{"cpus": 1}, {"cpus": 2}]),
    ({"cpus": [1, 2], "warmup": [0, 5]},
     [{"cpus": 1, "warmup": 0}, {"cpus": 1, "warmup": 5},
      {"cpus": 2, "warmup": 0}, {"cpus": 2, "warmup": 5}]),
    ({"zip": {"cpus": [1, 8], "lazy_max_pages": [32, 256]}},
     [{"cpus": 1, "lazy_max_pages": 32}, {"cpus": 8, "lazy_max_pages": 256}]),
    ({"zip": [{"cpus": [1, 8], "lazy_max_pages": [32, 256]}]},
     [{"cpus": 1, "lazy_max_pages": 32}, {"cpus": 8, "lazy_max_pages": 256}]),
    ({"warmup": [0, 5], "zip": [{"cpus": [1, 8], "lazy_max_pages": [32, 256]}]},
     [{"warmup": 0, "cpus": 1, "lazy_max_pages": 32}, {"warmup": 0, "cpus": 8,
                                                       "lazy_max_pages": 256},
      {"warmup": 5, "cpus": 1, "lazy_max_pages": 32}, {"warmup": 5, "cpus": 8,
                                                       "lazy_max_pages": 256}]),
    ({"zip": [{"cpus": [1, 8]}, {"warmup": [0, 5], "duration": ["1ms", "2ms"]}]},
     [{"cpus": 1, "warmup": 0, "duration": "1ms"}, {"cpus": 1, "warmup": 5, "duration": "2ms"},
      {"cpus": 8, "warmup": 0, "duration": "1ms"}, {"cpus": 8, "warmup": 5, "duration": "2ms"}]),
    ({"zip": [{"cpus": [1, 2, 4], "workload.set_memory_rate": [0, 10, 20]}],
      "ops": [100]},
     [{"cpus": 1, "workload.set_memory_rate": 0, "ops": 100},
      {"cpus": 2, "workload.set_memory_rate": 10, "ops": 100},
      {"cpus": 4, "workload.set_memory_rate": 20, "ops": 100}]),
]


@pytest.mark.parametrize("raw,points", EXPANSIONS)
def test_expansion(raw, points) -> None:
    sweep = parse_sweep(raw, Origins())
    assert sweep.points() == points
    assert sweep.keys == (list(points[0]) if points[0] else [])


LHS = {"samples": 8, "ranges": {"machine.costs.ipi_handler_ns": [500, 2000],
                                 "workload.set_memory_rate": [0, 100.0]}}


def test_latin_hypercube_factor() -> None:
    sweep = parse_sweep({"cpus": [1, 2], "lhs": LHS}, Origins(), seed=3)
    assert sweep.keys == ["cpus", "machine.costs.ipi_handler_ns", "workload.set_memory_rate"]
    assert sweep.sampled_keys == ["machine.costs.ipi_handler_ns", "workload.set_memory_rate"]
    points = sweep.points()
    assert len(points) == 2 * 8
    samples = [{k: v for k, v in p.items() if k != "cpus"} for p in points if p["cpus"] == 1]
    for key, (low, high) in LHS["ranges"].items():
        values = [p[key] for p in samples]
        assert all(low <= v <= high for v in values)
        # one sample in each of the 8 strata of the range: a Latin hypercube
        assert sorted(int((v - low) / (high - low) * 8) for v in values) == list(range(8))
    assert parse_sweep({"lhs": LHS}, Origins(), seed=3).points() == samples  # deterministic
    assert parse_sweep({"lhs": LHS}, Origins(), seed=4).points() != samples
    own = parse_sweep({"lhs": {**LHS, "seed": 3}}, Origins(), seed=99).points()
    assert own == samples  # its own seed wins over the experiment's


def test_latin_hypercube_overrides(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    ranges = "{machine.costs.ipi_handler_ns: [500, 2000], workload.set_memory_rate: [0, 100]}"
    path.write_text(GOOD + f"sweep:\n  lhs: {{samples: 4, ranges: {ranges}}}\n")
    exp = load_experiment(path, ["machine.costs.ipi_handler_ns=700", "sweep.lhs.samples=3"])
    assert exp.swept_keys == ["workload.set_memory_rate"] and len(exp.points()) == 3
    assert {s.config["machine"]["costs"]["ipi_handler_ns"] for s in exp.specs()} == {700.0}
    rates = sorted({s.config["workload"]["set_memory_rate"] for s in exp.specs()})
    assert len(rates) == 3 and rates == sorted(p["workload.set_memory_rate"]
                                               for p in exp.points())
    pinned = load_experiment(path, ["machine.costs.ipi_handler_ns=700",
                                    "workload.set_memory_rate=5"])
    assert pinned.swept_keys == [] and len(pinned.points()) == 1


def test_zipped_keys_sit_where_their_group_stands() -> None:
    sweep = parse_sweep({"a": [1], "zip": [{"b": [1], "c": [2]}], "d": [3]}, Origins())
    assert sweep.keys == ["a", "b", "c", "d"]
    assert sweep.key_path("c") == ("sweep", "zip", 0, "c")
    assert sweep.value_path("d", 3) == ("sweep", "d", 0)


SWEPT = GOOD + """\
replications: 1
sweep:
  workload.background.count: [100, 200]
  zip:
    - {cpus: [1, 2], lazy_max_pages: [32, 64]}
"""

# (overrides, swept keys, [(cpus, lazy_max_pages, background count) per point])
OVERRIDES = [
    ([], ["workload.background.count", "cpus", "lazy_max_pages"],
     [(1, 32, 100), (2, 64, 100), (1, 32, 200), (2, 64, 200)]),
    (["cpus=4"], ["workload.background.count", "lazy_max_pages"],
     [(4, 32, 100), (4, 64, 100), (4, 32, 200), (4, 64, 200)]),
    (["cpus=4", "lazy_max_pages=16"], ["workload.background.count"],
     [(4, 16, 100), (4, 16, 200)]),
    (["sweep.cpus=[3, 5]"], ["workload.background.count", "lazy_max_pages", "cpus"],
     [(3, 32, 100), (5, 32, 100), (3, 64, 100), (5, 64, 100),
      (3, 32, 200), (5, 32, 200), (3, 64, 200), (5, 64, 200)]),
    (["sweep.workload.background.count=[7]"], ["workload.background.count", "cpus",
                                               "lazy_max_pages"],
     [(1, 32, 7), (2, 64, 7)]),
    (["workload.background.count=9"], ["cpus", "lazy_max_pages"], [(1, 32, 9), (2, 64, 9)]),
    (["sweep.zip={cpus: [6, 7], lazy_max_pages: [1, 2]}"],
     ["workload.background.count", "cpus", "lazy_max_pages"],
     [(6, 1, 100), (7, 2, 100), (6, 1, 200), (7, 2, 200)]),
    (["sweep.zip=[{cpus: [6], workload.background.count: [5]}]"],
     ["workload.background.count", "cpus"], None),  # the count is swept twice: an error
]


@pytest.mark.parametrize("overrides,keys,expected", OVERRIDES)
def test_set_overrides(tmp_path: Path, overrides, keys, expected) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(SWEPT)
    if expected is None:
        with pytest.raises(Exception, match="swept twice"):
            load_experiment(path, overrides)
        return
    exp = load_experiment(path, overrides)
    assert exp.swept_keys == keys
    got = [(s.config["cpus"], s.config["lazy_max_pages"],
            s.config["workload"]["background"]["count"])
           for s in exp.specs() if s.variant == "linux-4.5"]
    assert got == expected


def test_replications_seed_and_ops_from_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(SWEPT)
    exp = load_experiment(path, ["replications=3", "seed=11", "ops=500", "warmup=0.1ms"])
    specs = exp.specs()
    assert len(specs) == 4 * 2 * 3
    assert {s.seed for s in specs} == {11}
    assert {s.config["ops"] for s in specs} == {500}
    assert {s.config["warmup"] for s in specs} == {100_000.0}


HEAD = GOOD + "sweep:\n"  # the sweep's entries start at line 7

# (file text, extra args, expected fragment of the one-line message)
ERRORS = [
    (HEAD + "  zip:\n    - {cpus: [1, 2], lazy_max_pages: [32, 64, 128]}\n", [],
     "bad.yaml:8: sweep.zip[0].lazy_max_pages: zipped lists must have the same length: "
     "'cpus' has 2 values, 'lazy_max_pages' has 3"),
    (HEAD + "  zip:\n    cpus: [1, 2]\n    lazy_max_pages: [32]\n", [],
     "bad.yaml:9: sweep.zip.lazy_max_pages: zipped lists must have the same length"),
    (HEAD + "  cpus: [1, 2]\n  zip:\n    - {cpus: [4, 8], lazy_max_pages: [1, 2]}\n", [],
     "bad.yaml:9: sweep.zip[0].cpus: 'cpus' is swept twice (also at sweep.cpus)"),
    (HEAD + "  zip: 3\n", [], "bad.yaml:7: sweep.zip: expected a mapping of zipped keys"),
    (HEAD + "  zip: []\n", [], "bad.yaml:7: sweep.zip: expected a mapping of zipped keys"),
    (HEAD + "  zip:\n    - [1, 2]\n", [], "bad.yaml:8: sweep.zip[0]: expected a mapping"),
    (HEAD + "  zip:\n    - {}\n", [],
     "bad.yaml:8: sweep.zip[0]: a zipped group needs at least one key"),
    (HEAD + "  zip:\n    - {zip: [1]}\n", [], "sweep.zip[0].zip: zipped groups do not nest"),
    (HEAD + "  cpus: 4\n", [],
     "bad.yaml:7: sweep.cpus: expected a non-empty list of values, found 4"),
    (HEAD + "  cpus: []\n", [], "bad.yaml:7: sweep.cpus: expected a non-empty list"),
    (HEAD + "  cpus: [1, 1]\n", [], "bad.yaml:7: sweep.cpus[1]: repeated value 1"),
    (HEAD + "  zip:\n    - {cpus: [1, 1], warmup: [0, 0]}\n", [],
     "sweep.zip[0].cpus[1]: repeated zipped level"),
    (HEAD + "  zip:\n    - {cpus: [1, 0], lazy_max_pages: [32, 64]}\n", [],
     "bad.yaml:8: sweep.zip[0].cpus[1]: input should be greater than or equal to 1"),
    (HEAD + "  zip:\n    - {cpu: [1, 2]}\n", [], "bad.yaml:8: sweep.zip[0].cpu: cannot sweep"),
    (HEAD + "  zip:\n    - {workload.background.cont: [1]}\n", [],
     "sweep.zip[0].workload.background.cont: unknown key 'cont'; did you mean 'count'?"),
    (GOOD + "baseline: linux-4.8\n", [],
     "bad.yaml:6: baseline: unknown variant 'linux-4.8'; did you mean 'linux-4.7'?"),
    (GOOD + "ops: 0\n", [], "bad.yaml:6: ops: input should be greater than or equal to 1"),
    (GOOD, ["--set", "sweep.zip=[{cpus: [1, 2], warmup: [0]}]"],
     "--set sweep.zip: sweep.zip[0].warmup: zipped lists must have the same length"),
    (GOOD, ["--set", "sweep.ops=[0]"], "--set sweep.ops: sweep.ops[0]: input should be"),
    (HEAD + "  lhs: {samples: 0, ranges: {warmup: [0, 5]}}\n", [],
     "bad.yaml:7: sweep.lhs.samples: expected an integer of at least 1, found 0"),
    (HEAD + "  lhs: {sampels: 3, ranges: {warmup: [0, 5]}}\n", [],
     "sweep.lhs.sampels: unknown key 'sampels'; did you mean 'samples'?"),
    (HEAD + "  lhs:\n    samples: 3\n    ranges: {warmup: [5, 0]}\n", [],
     "bad.yaml:9: sweep.lhs.ranges.warmup: expected [low, high] with low < high, found [5, 0]"),
    (HEAD + "  lhs: {samples: 3, ranges: []}\n", [],
     "sweep.lhs.ranges: expected a mapping of dotted keys to [low, high]"),
    (HEAD + "  lhs: {samples: 3, ranges: {cpus: [1, 64]}}\n", [],
     "bad.yaml:7: sweep.lhs.ranges.cpus: input should be a valid integer"),
    (HEAD + "  warmup: [0]\n  lhs: {samples: 3, ranges: {warmup: [0, 5]}}\n", [],
     "sweep.lhs.ranges.warmup: 'warmup' is swept twice (also at sweep.warmup)"),
    (HEAD + "  zip:\n    - {cpus: [1, 2], warmup: [0, 5]}\n",
     ["--set", "sweep.zip=[{cpus: [1, 0]}]"],
     "--set sweep.zip: sweep.zip[0].cpus[1]: input should be greater than or equal to 1"),
]


@pytest.mark.parametrize("text,args,fragment", ERRORS)
def test_bad_sweep_one_line_exit_2(bad_input, text, args, fragment) -> None:
    bad_input(text, args, fragment)


def test_check_counts_zipped_points(tmp_path: Path, capsys) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(SWEPT)
    assert main(["check", str(path)]) == 0
    assert "4 points x 2 variants x 1 replications = 8 runs" in capsys.readouterr().out
