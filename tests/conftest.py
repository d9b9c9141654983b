"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY = ("name: tiny\nmachine: desktop-8c16t\nworkload: seed-i915\nvariants: [linux-4.7]\n"
        "duration: 100us\nreplications: 1\nsweep: {cpus: [1, 2]}\n")
"""Two short runs: the experiment the output-directory tests finish (``finished``)."""


@pytest.fixture
def finished(tmp_path: Path) -> Path:
    """An output directory with the two finished runs of ``TINY`` (``tmp_path/tiny.yaml``),
    its tables written, no report."""
    from sim.cli import main

    exp, out = tmp_path / "tiny.yaml", tmp_path / "out"
    exp.write_text(TINY)
    assert main(["run", str(exp), "-o", str(out), "-q", "--no-report", "-j", "1"]) == 0
    return out


@pytest.fixture(scope="module")
def monkeypatch_module():
    """A monkeypatch usable inside hypothesis tests (not reset between examples)."""
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture
def bad_input(tmp_path, capsys):
    """``check(text, args, fragment)``: ``vmapsim check`` on a file holding ``text`` fails with
    exit code 2 and one line of stderr containing ``fragment``, and no traceback."""
    from sim.cli import main

    def check(text: str, args: list[str], fragment: str) -> None:
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        assert main(["check", str(bad), *args]) == 2
        err = capsys.readouterr().err
        assert fragment in err
        assert err.count("\n") == 1 and "Traceback" not in err
    return check
