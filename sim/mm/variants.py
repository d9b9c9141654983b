"""Kernel variants: named presets (``presets.yaml``) and user compositions on top of them."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml

from sim.config.loader import Origins, did_you_mean
from sim.config.schema import Variant


@cache
def presets() -> dict[str, dict[str, Any]]:
    """The named presets, in file order, each with every choice of its base chain."""
    text = resources.files("sim.mm").joinpath("presets.yaml").read_text()
    data = yaml.safe_load(text)
    resolved: dict[str, dict[str, Any]] = {}
    for name, fields in data.items():
        base = fields.get("base")
        merged = dict(resolved[base]) if base else {}
        merged.update(fields)
        merged["name"] = name
        resolved[name] = merged
    return resolved


def resolve_variant(entry: Any, origins: Origins, path: tuple) -> dict[str, Any]:
    """A variant from an experiment: a preset name, or a mapping with ``name`` and ``base``."""
    known = list(presets())
    if isinstance(entry, str):
        if entry not in presets():
            raise origins.error(f"unknown variant '{entry}'{did_you_mean(entry, known)} "
                                f"(known: {', '.join(known)})", path)
        return dict(presets()[entry])
    if not isinstance(entry, dict):
        raise origins.error(f"expected a variant name or a mapping, found {entry!r}", path)
    base_name = entry.get("base")
    merged: dict[str, Any] = {}
    if base_name is not None and not isinstance(base_name, str):
        raise origins.error(f"expected the name of a preset to build on, found "
                            f"{type(base_name).__name__} {str(base_name)[:40]}",
                            path + ("base",))
    if base_name is not None:
        if base_name not in presets():
            raise origins.error(f"unknown base variant '{base_name}'"
                                f"{did_you_mean(str(base_name), known)} "
                                f"(known: {', '.join(known)})", path + ("base",))
        merged.update(presets()[base_name])
        for key in ("description", "kernel"):
            merged.pop(key, None)
    merged.update(entry)
    if "name" not in entry:
        raise origins.error("missing required key 'name'", path)
    return merged


def validate_variant(data: dict[str, Any]) -> Variant:
    return Variant.model_validate(data)
