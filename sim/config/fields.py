"""The field types of the configuration schema: times, sizes, costs and names as users write
them, and the validation context that makes a time or size without its unit an error."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo

from sim.config.units import parse_pages, parse_time

__all__ = ["NAME_CHARS", "USER_INPUT", "Cost", "Name", "Pages", "PositiveTimeNs", "TimeNs"]

USER_INPUT = {"units": "required"}
"""The validation context of what a user wrote (files, sweeps, ``--set``): a time or size
must carry its unit. Resolved configurations (run files) hold plain ns and pages."""


def _unit_given(value: Any, info: ValidationInfo, what: str, example: str, bare: str) -> None:
    """Refuse a bare non-zero number where a user must write a unit (``duration: 5`` would
    silently be 5 ns)."""
    if (info.context or {}).get("units") == "required" and value and value == value \
            and isinstance(value, (int, float)) and not isinstance(value, bool) \
            and abs(value) != float("inf"):  # 0 needs no unit; inf and NaN fail as such
        raise ValueError(f"expected {what} with its unit, such as {example}, found {value!r} "
                         f"(a bare number is ambiguous; it would be {value!r} {bare})")


def _time(value: Any, info: ValidationInfo) -> float:
    _unit_given(value, info, "a time", "20ms, 1.5us or 500ns", "ns")
    return parse_time(value)


def _pages(value: Any, info: ValidationInfo) -> int:
    _unit_given(value, info, "a size", "16KiB, 4K or 4 pages", "page(s)")
    return parse_pages(value)


TimeNs = Annotated[float, BeforeValidator(_time), Field(ge=0)]
PositiveTimeNs = Annotated[float, BeforeValidator(_time), Field(gt=0)]
Pages = Annotated[int, BeforeValidator(_pages), Field(ge=1)]
Cost = Annotated[float, Field(ge=0)]
NAME_CHARS = 64
"""Longest name of a machine, workload, variant or object type (names fill table columns)."""


def _printable_name(name: str) -> str:
    if not name or len(name) > NAME_CHARS or not name.isprintable():
        shown = repr(name if len(name) <= 40 else name[:37] + "...")
        raise ValueError(f"expected a printable name of at most {NAME_CHARS} characters, "
                         f"found {shown}")
    return name


Name = Annotated[str, AfterValidator(_printable_name)]
"""A name shown in tables and on the terminal: printable, at most ``NAME_CHARS`` long."""
