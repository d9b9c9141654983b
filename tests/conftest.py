"""Shared fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def monkeypatch_module():
    """A monkeypatch usable inside hypothesis tests (not reset between examples)."""
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()
