"""Bad input: one line naming file, line and key path; exit code 2; never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sim.cli import main
from sim.config.units import parse_pages, parse_time

GOOD = """\
name: x
machine: xeon-2s-112
workload: seed-i915
variants: [linux-4.5, linux-4.7]
duration: 1ms
"""

CASES = [
    # (file text, extra args, expected fragment of the one-line message)
    ("name: x\n  bad: [\n", [], "bad.yaml:2: YAML syntax error"),
    (GOOD + "cpuz: 4\n", [], "bad.yaml:6: cpuz: unknown key 'cpuz'; did you mean 'cpus'?"),
    (GOOD + "cpus: zero\n", [], "bad.yaml:6: cpus: input should be a valid integer"),
    (GOOD + "cpus: 0\n", [], "bad.yaml:6: cpus: input should be greater than or equal to 1"),
    (GOOD + "cpus: -3\n", [], "found -3"),
    (GOOD.replace("xeon-2s-112", "xeon-2s-113"), [],
     "bad.yaml:2: machine: unknown machine 'xeon-2s-113'; did you mean 'xeon-2s-112'?"),
    (GOOD.replace("seed-i915", "seed-i916"), [], "bad.yaml:3: workload: unknown workload"),
    (GOOD.replace("linux-4.7]", "linux-4.8]"), [],
     "bad.yaml:4: variants[1]: unknown variant 'linux-4.8'; did you mean 'linux-4.7'?"),
    (GOOD.replace("duration: 1ms", "duration: fast"), [],
     "bad.yaml:5: duration: expected a time such as 20ms"),
    (GOOD + "name: y\n", [], "bad.yaml:6: name: duplicate key 'name' (first at line 1)"),
    (GOOD.replace("duration: 1ms\n", ""), [], "bad.yaml:1: duration: missing required key"),
    (GOOD + "sweep:\n  cpus: [1, 0]\n", [], "bad.yaml:7: sweep.cpus[1]: input should be"),
    (GOOD + "sweep:\n  workload.background.cont: [1]\n", [],
     "bad.yaml:7: sweep.workload.background.cont: unknown key 'cont'; did you mean 'count'?"),
    (GOOD + "sweep:\n  cpu: [1]\n", [], "bad.yaml:7: sweep.cpu: cannot sweep 'cpu'"),
    (GOOD.replace("[linux-4.5, linux-4.7]", "[{name: m, base: linux-4.7, lazy_list: tree}]"),
     [], "bad.yaml:4: variants[0].lazy_list: input should be 'full_walk', 'llist', "
         "'sorted_tree', 'per_node' or 'none', found 'tree'"),
    (GOOD, ["--set", "workload.live_per_cpu=0"],
     "--set workload.live_per_cpu: workload.live_per_cpu: input should be greater than"),
    (GOOD, ["--set", "lazy_max_pages=0"], "lazy_max_pages"),
    (GOOD, ["--set", "noequals"], "expected key=value"),
    (GOOD, ["--set", "workload.size=100TiB"], "larger than the vmalloc space"),
    ("", [], "bad.yaml:1: the file is empty"),
    ("- just\n- a list\n", [], "expected a YAML mapping at the top level"),
    ("a: &a [1, 2]\nb: *a\nc:\n\td: 1\n", [], "bad.yaml:4: YAML syntax error"),
]


@pytest.mark.parametrize("text,args,fragment", CASES)
def test_bad_input_one_line_exit_2(bad_input, text, args, fragment) -> None:
    bad_input(text, args, fragment)


def test_binary_and_missing_files(tmp_path: Path, capsys) -> None:
    blob = tmp_path / "blob.yaml"
    blob.write_bytes(b"\x00\x01\x02")
    assert main(["check", str(blob)]) == 2
    assert "binary file" in capsys.readouterr().err
    assert main(["check", str(tmp_path / "nope.yaml")]) == 2
    assert "no such file or built-in experiment" in capsys.readouterr().err


def test_alias_bomb_is_refused(tmp_path: Path, capsys) -> None:
    lines = ["a0: [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]"
              .replace(f"*a{i - 1}", f"*r{i - 1}") for i in range(1, 9)]
    text = "\n".join(f"a{i}: &r{i} " + line.split(": ", 1)[1] for i, line in enumerate(lines))
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(text + "\n")
    assert main(["check", str(bomb)]) == 2
    assert "alias bomb" in capsys.readouterr().err


def test_subprocess_exit_code_and_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD + "cpus: 0\n")
    proc = subprocess.run([sys.executable, "-m", "sim", "run", str(bad), "-o",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("vmapsim: error: ") and "Traceback" not in proc.stderr


@pytest.mark.parametrize("text,ns", [("20ms", 2e7), ("1.5us", 1500.0), ("2s", 2e9),
                                     (500, 500.0), ("7ns", 7.0)])
def test_parse_time(text, ns) -> None:
    assert parse_time(text) == ns


@pytest.mark.parametrize("text,pages", [("4KiB", 1), ("4097B", 2), ("2MiB", 512), (3, 3),
                                        ("32TiB", 1 << 33)])
def test_parse_pages(text, pages) -> None:
    assert parse_pages(text) == pages


@pytest.mark.parametrize("bad", ["fast", True, "3 parsecs", None])
def test_parse_time_rejects(bad) -> None:
    with pytest.raises(ValueError):
        parse_time(bad)


def test_an_experiment_named_like_a_workload_does_not_shadow_it(tmp_path) -> None:
    """An experiment file ``seed-i915.yaml`` that names the workload ``seed-i915`` gets the
    catalog's workload, not itself."""
    from sim.experiment.experiment import load_experiment

    path = tmp_path / "seed-i915.yaml"
    path.write_text("name: x\nmachine: desktop-8c16t\nworkload: seed-i915\n"
                    "variants: [linux-4.7]\nduration: 1ms\n")
    experiment = load_experiment(path)
    assert experiment.specs()[0].config["workload"]["name"] == "seed-i915"
