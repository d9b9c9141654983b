"""Schema validation errors as one-line :class:`ConfigError`s.

pydantic reports an error location inside the model (with union tags); this module maps it back
to the key path of the data the user wrote, finds the file and line it came from (or the sweep
entry or ``--set`` that supplied it), and phrases what was expected and what was found, with a
"did you mean" for misspelt keys.
"""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from sim.config.loader import ConfigError, Origins, did_you_mean, shown

if typing.TYPE_CHECKING:
    from sim.experiment.sweep import Sweep


def config_error(exc: ValidationError, data: Any, model: type[BaseModel], origins: Origins,
                  point: dict[str, Any] | None = None, sweep: Sweep | None = None,
                  prefix: tuple = ()) -> ConfigError:
    errors = exc.errors(include_url=False)
    err = _first(errors)
    path = _data_path(data, err["loc"], err["type"] == "missing")
    if not path and err["type"] == "value_error":
        path = _root_check_path(err["msg"], data)
    if err["type"] == "union_tag_invalid" and isinstance(_node_at(data, path), dict):
        path += (err["ctx"]["discriminator"].strip("'"),)  # the key with the unknown tag
    message = _message(err, model, path, data)
    alternatives = [_message(e, model, path, data) for e in errors
                    if e is not err and _data_path(data, e["loc"]) == path
                    and e["type"] not in ("missing", "extra_forbidden")]
    if alternatives and err["type"] not in ("missing", "extra_forbidden"):
        message = _either([message, *alternatives])
    where = prefix + path
    if err["type"] == "extra_forbidden" and sweep is not None:
        for key in point or {}:
            if where[: len(key.split("."))] == tuple(key.split(".")) and key in sweep:
                return origins.error(message, sweep.key_path(key))  # the swept key is unknown
    return origins.error(message, swept_path(where, point, sweep))


def swept_path(where: tuple, point: dict[str, Any] | None, sweep: Sweep | None) -> tuple:
    """Where a value of a run configuration came from: the sweep entry (or zipped group) that
    supplied it when its key, or a key above it, is swept at ``point``; else ``where``."""
    for key, value in (point or {}).items():
        swept = tuple(key.split("."))
        if where[: len(swept)] == swept and sweep is not None and key in sweep:
            return sweep.value_path(key, value) + where[len(swept):]
    return where


def _first(errors: list[dict]) -> dict:
    """The error to report: an unknown key first (a misspelt key also makes the key it was
    meant to be missing, and "did you mean" is the better hint), else pydantic's first."""
    return next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])


ROOT_CHECKS = {"workload size": ("workload", "size")}
"""Model-level checks (``model_validator``) whose message names the key at fault: the key path
to locate them at, by the start of their message."""


def _root_check_path(message: str, data: Any) -> tuple:
    """The key path a model-level check is about (empty when unknown or not in the data)."""
    text = message.removeprefix("Value error, ")
    for start, path in ROOT_CHECKS.items():
        node = data
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if text.startswith(start) and node is not None:
            return path
    return ()


def _either(messages: list[str]) -> str:
    """Join what each alternative of a union expected, keeping one ``found``:
    ``input should be 'auto' or greater than or equal to 1, found 0``."""
    parts, found = [], ""
    for text in messages:
        head, sep, tail = text.rpartition(", found ")
        if sep:
            text, found = head, sep + tail
        if parts:
            text = text.removeprefix("input should be ")
        if text not in parts:
            parts.append(text)
    return " or ".join(parts) + found


def _data_path(data: Any, loc: tuple, missing: bool = False) -> tuple:
    """Drop the union tags pydantic puts in error locations, keeping real keys (and, for a
    ``missing`` key, the last part: the key that is not there)."""
    path: list = []
    node = data
    tag = False
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if not tag and isinstance(node, dict) and node.get("kind") == part:
            tag = True  # the tag of a kind-discriminated union (it may also name a key)
            continue
        tag = False
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and part < len(node)
        if in_dict or in_list:
            path.append(part)
            node = node[part]
        elif last and missing and isinstance(node, dict):
            path.append(part)
    return tuple(path)


def _message(err: dict, model: type[BaseModel], path: tuple, data: Any = None) -> str:
    kind = err["type"]
    if kind == "missing":
        return "missing required key"
    if kind == "union_tag_invalid":
        expected = err["ctx"]["expected_tags"]
        tags = [t.strip(" '") for t in expected.split(",")]
        tag = err["ctx"]["tag"]
        return f"expected one of {expected}, found {tag!r}{did_you_mean(tag, tags)}"
    if kind == "extra_forbidden":
        allowed = _fields_at(model, path[:-1], data)
        return (f"unknown key {shown(path[-1])}{did_you_mean(str(path[-1]), allowed)}"
                + (f" (allowed: {', '.join(allowed)})" if allowed else ""))
    text = err["msg"].removeprefix("Value error, ")
    text = text[:1].lower() + text[1:]
    if "found" in text or (kind == "value_error" and isinstance(err.get("input"), dict)):
        return text  # a check of a whole mapping names what it found itself
    found = repr(err.get("input"))
    if len(found) > 60:
        found = found[:57] + "..."
    return f"{text}, found {found}"


def _fields_at(model: type[BaseModel], path: tuple, data: Any = None) -> list[str]:
    """The keys a mapping at ``path`` of ``model`` may hold (for "did you mean"); of a union
    of kinds, those of the kind the data names."""
    cls: Any = model
    node = data
    for part in path:
        node = _child(node, part)
        if isinstance(part, int):
            continue
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            return []
        field = cls.model_fields.get(part)
        if field is None:
            return []
        cls = _model_in(field.annotation, node)
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        return list(cls.model_fields)
    return []


def _node_at(data: Any, path: tuple) -> Any:
    for part in path:
        data = _child(data, part)
    return data


def _child(node: Any, part: Any) -> Any:
    if isinstance(node, dict):
        return node.get(part)
    if isinstance(node, list) and isinstance(part, int) and part < len(node):
        return node[part]
    return None


def _model_in(annotation: Any, node: Any = None) -> Any:
    """The model in ``annotation``: the member of a union whose ``kind`` is the one ``node``
    names, else the first."""
    members = _models(annotation)
    kind = node.get("kind") if isinstance(node, dict) else None
    for member in members:
        field = member.model_fields.get("kind")
        if kind is not None and field is not None and kind in typing.get_args(field.annotation):
            return member
    return members[0] if members else None


def _models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]
