"""Nothing in a configuration file (or a ``--set`` value) is ever executed: YAML tags that
would build Python objects are refused with a :class:`ConfigError`, and the command they carry
does not run."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim import load_experiment
from sim.cli import main
from sim.config.loader import ConfigError

GOOD = """\
name: safe
machine: desktop-8c16t
workload: seed-i915
variants: [linux-4.5]
duration: 1ms
"""

TAGGED = [
    # (how the tag is used, a line to append to GOOD or the text replacing it; {cmd})
    ("sequence", 'description: !!python/object/apply:os.system ["{cmd}"]'),
    ("mapping", "rank: !!python/object/apply:os.system {{args: ['{cmd}']}}"),
    ("scalar", "description: !!python/object/apply:os.system '{cmd}'"),
    ("name", "description: !!python/name:os.system"),
    ("new", 'description: !!python/object/new:subprocess.Popen [["sh", "-c", "{cmd}"]]'),
    ("module", "description: !!python/module:os"),
    ("top level", '!!python/object/apply:os.system ["{cmd}"]'),
    ("in a sweep", 'sweep: {{cpus: [1, !!python/object/apply:os.system ["{cmd}"]]}}'),
    ("merge", 'x: &a !!python/object/apply:os.system {{args: ["{cmd}"]}}\nrank: {{<<: *a}}'),
]


@pytest.mark.parametrize("where,line", TAGGED, ids=[t[0] for t in TAGGED])
def test_python_tags_are_refused_and_nothing_runs(tmp_path: Path, where: str,
                                                  line: str) -> None:
    marker = tmp_path / "hacked"
    text = line.format(cmd=f"touch {marker}")
    path = tmp_path / "evil.yaml"
    path.write_text(text + "\n" if where == "top level" else GOOD + text + "\n")
    with pytest.raises(ConfigError) as raised:
        load_experiment(path)
    assert "tag" in str(raised.value) and str(path) in str(raised.value)
    assert not marker.exists()


def test_python_tag_in_a_set_value_is_refused(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "hacked"
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    value = f'!!python/object/apply:os.system ["touch {marker}"]'
    assert main(["check", str(path), "--set", f"description={value}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unsupported YAML tag" in err
    assert not marker.exists()


def test_plain_explicit_tags_still_load(tmp_path: Path) -> None:
    """The standard tags (``!!str``, ``!!int``, ``!!map``, ``!!seq``) are data, not code."""
    path = tmp_path / "tags.yaml"
    path.write_text(GOOD.replace("name: safe", "name: !!str safe")
                    + "replications: !!int '2'\nrank: !!map {goal: max}\n"
                    + "sweep: {cpus: !!seq [1, 2]}\n")
    experiment = load_experiment(path)
    assert experiment.name == "safe" and experiment.replications == 2
    assert len(experiment.points()) == 2
