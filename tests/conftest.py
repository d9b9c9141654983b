"""Shared fixtures."""

from __future__ import annotations

import pytest


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
