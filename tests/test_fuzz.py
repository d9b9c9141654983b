"""Fuzzing the configuration loader: whatever a file holds, :func:`sim.load_experiment` either
loads it or raises the project's own :class:`sim.config.ConfigError` (one line, no newline) -
never any other exception.

Three sources of documents: YAML text built from random mappings, lists and scalars (biased
towards the keys and values an experiment uses, so validation goes deep), random byte
mutations of the shipped experiments, and random deletions and duplications of their lines.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim import load_experiment
from sim.config.loader import ConfigError

SHIPPED = sorted((Path(__file__).parent.parent / "experiments").glob("*.yaml"))
FUZZ = settings(max_examples=45, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

KEYS = ["name", "description", "machine", "workload", "variants", "cpus", "lazy_max_pages",
        "duration", "warmup", "replications", "ops", "seed", "baseline", "rank", "sweep",
        "zip", "lhs", "samples", "ranges", "size", "dist", "value", "values", "count",
        "background", "workload.background.count", "machine.costs.atomic_ns", "base",
        "lazy_list", "live_per_cpu", "<<"]
WORDS = ["desktop-8c16t", "xeon-2s-112", "seed-i915", "linux-4.5", "linux-4.7", "auto", "1ms",
         "20us", "4KiB", "32TiB", "fixed", "uniform", "choice", "llist", "full_walk", "max",
         "-1ms", "1e9", ".inf", "", "~", "yes"]

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
    st.sampled_from([0, 1, 2, 4, 4096, 4097, 10 ** 9]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(WORDS), st.text(max_size=12))
keys = st.one_of(st.sampled_from(KEYS), st.text(min_size=1, max_size=8))
documents = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(keys, children, max_size=5)),
    max_leaves=25)
BASE = {"name": "fuzz", "machine": "desktop-8c16t", "workload": "seed-i915",
        "variants": ["linux-4.5", "linux-4.7"], "duration": "1ms", "replications": 1}


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    """A directory for the fuzzed files (one at a time)."""
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def loads_or_config_error(path: Path, raw: bytes) -> None:
    """The property: ``raw`` as an experiment file loads, or fails with a ConfigError."""
    path.write_bytes(raw)
    try:
        load_experiment(path)
    except ConfigError as exc:
        assert "\n" not in str(exc)


@FUZZ
@given(doc=documents)
def test_random_documents(scratch: Path, doc: Any) -> None:
    loads_or_config_error(scratch / "random.yaml",
                          yaml.safe_dump(doc, allow_unicode=True).encode())


@FUZZ
@given(extra=st.dictionaries(st.sampled_from(KEYS), documents, max_size=3))
def test_valid_experiment_with_random_keys(scratch: Path, extra: dict[str, Any]) -> None:
    loads_or_config_error(scratch / "overlay.yaml",
                          yaml.safe_dump({**BASE, **extra}, allow_unicode=True).encode())


@FUZZ
@given(index=st.integers(0, len(SHIPPED) - 1),
       edits=st.lists(st.tuples(st.sampled_from(["replace", "insert", "delete"]),
                                st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
                      min_size=1, max_size=6))
def test_byte_mutations_of_shipped_experiments(scratch: Path, index: int,
                                               edits: list[tuple[str, float, int]]) -> None:
    raw = bytearray(SHIPPED[index].read_bytes())
    for op, where, byte in edits:
        at = int(where * len(raw))
        if op == "replace" and raw:
            raw[at] = byte
        elif op == "insert":
            raw.insert(at, byte)
        elif raw:
            del raw[at]
    loads_or_config_error(scratch / SHIPPED[index].name, bytes(raw))


@FUZZ
@given(index=st.integers(0, len(SHIPPED) - 1),
       edits=st.lists(st.tuples(st.booleans(), st.floats(0, 1, exclude_max=True)),
                      min_size=1, max_size=4))
def test_line_deletions_and_duplications(scratch: Path, index: int,
                                         edits: list[tuple[bool, float]]) -> None:
    lines = SHIPPED[index].read_text().splitlines(keepends=True)
    for duplicate, where in edits:
        if not lines:
            break
        at = int(where * len(lines))
        if duplicate:
            lines.insert(at, lines[at])
        else:
            del lines[at]
    loads_or_config_error(scratch / SHIPPED[index].name, "".join(lines).encode())


SET_KEYS = ["cpus", "lazy_max_pages", "duration", "warmup", "ops", "seed", "replications",
            "name", "variants", "baseline", "sweep", "sweep.cpus", "sweep.zip", "sweep.lhs",
            "sweep.lhs.samples", "machine", "machine.costs", "machine.costs.atomic_ns",
            "machine.vmalloc_space", "workload", "workload.size", "workload.size.dist",
            "workload.background.count", "sweep.workload.background.count", "rank.goal"]


@FUZZ
@given(overrides=st.lists(st.tuples(st.one_of(st.sampled_from(SET_KEYS),
                                              st.text(max_size=10)), documents),
                          min_size=1, max_size=3))
def test_random_set_overrides(overrides: list[tuple[str, Any]]) -> None:
    """``--set KEY=VALUE`` with random keys and values (YAML flow text) loads or is refused."""
    texts = [f"{key}={yaml.safe_dump(value, default_flow_style=True, width=10 ** 6).strip()}"
             .removesuffix("\n...") for key, value in overrides]
    try:
        load_experiment(SHIPPED[0].parent.parent / "tests" / "data" / "tiny.yaml", texts)
    except ConfigError as exc:
        assert "\n" not in str(exc)


def test_shipped_experiments_load() -> None:
    """The unmutated inputs of the fuzzers are valid (else the mutations prove little)."""
    for path in SHIPPED:
        assert load_experiment(path).specs()
