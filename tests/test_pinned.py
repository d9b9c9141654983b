"""Pinned results: optimisations of the engine must not change what a run computes.

``tests/data/pinned/pinned.yaml`` exercises every preset's paths before the 6.9 nodes (which
are still being modelled) under set_memory_*() and preempting interrupt noise; its
``summary.csv`` and ``lock_stat.txt`` were produced by the model as it stood before any speed
work. A change of the *model* (a new mechanism, a cost, a fix) that changes these numbers must
regenerate them, and say so in its commit::

    vmapsim run tests/data/pinned/pinned.yaml -o /tmp/pinned -q --no-report -j 1
    cp /tmp/pinned/summary.csv /tmp/pinned/lock_stat.txt tests/data/pinned/
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from sim.cli import main

PINNED = Path(__file__).parent / "data" / "pinned"
REL = 1e-9
"""Float tolerance: summation order may move the last bits; any model change moves far more."""


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def same_number(found: str, expected: str) -> bool:
    if found == expected:
        return True
    a, b = float(found), float(expected)
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=REL, abs_tol=1e-12)


@pytest.fixture(scope="module")
def pinned_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pinned")
    assert main(["run", str(PINNED / "pinned.yaml"), "-o", str(out), "-j", "1", "-q",
                 "--no-report"]) == 0
    return out


def test_summary_matches_the_pinned_numbers(pinned_run: Path) -> None:
    found, expected = rows(pinned_run / "summary.csv"), rows(PINNED / "summary.csv")
    assert len(found) == len(expected)
    keys = ("variant", "cpus", "metric")
    for got, want in zip(found, expected, strict=True):
        assert [got[k] for k in keys] == [want[k] for k in keys]
        for column in ("mean", "ci_low", "ci_high", "n"):
            assert same_number(got[column], want[column]), (
                f"{want['variant']} cpus={want['cpus']} {want['metric']} {column}: "
                f"{got[column]} != pinned {want[column]}")


def test_lock_stat_matches_the_pinned_table(pinned_run: Path) -> None:
    found = (pinned_run / "lock_stat.txt").read_text().split()
    expected = (PINNED / "lock_stat.txt").read_text().split()
    assert len(found) == len(expected)
    for got, want in zip(found, expected, strict=True):
        try:
            assert same_number(got, want), f"lock_stat: {got} != pinned {want}"
        except ValueError:
            assert got == want
