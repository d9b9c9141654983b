"""Units used in configuration files: times in nanoseconds, sizes in pages.

Times may be written as numbers (nanoseconds) or strings such as ``"20ms"``, ``"1.5us"``,
``"2s"``. Sizes may be written as numbers (pages) or strings such as ``"4KiB"`` or ``"32TiB"``.
"""

from __future__ import annotations

import math
import re

PAGE_SIZE = 4096
"""x86_64 base page size; every address and size in the model is in pages of this size."""

_TIME_UNITS = {"ns": 1.0, "us": 1e3, "\u00b5s": 1e3, "\u03bcs": 1e3, "ms": 1e6, "s": 1e9}
"""Both micro signs: U+00B5 (MICRO SIGN) and U+03BC (GREEK SMALL LETTER MU)."""
_SIZE_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
               "pages": PAGE_SIZE, "page": PAGE_SIZE,
               **{k: 1 << (10 * (i + 1)) for i, k in enumerate("KMGTPE")},
               **{k: 1 << (10 * (i + 1)) for i, k in enumerate("kmgtpe")}}
"""Binary units, pages, and the single-letter suffixes of the kernel's ``memparse()``."""
_NUMBER = r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*"
_TIME_RE = re.compile(_NUMBER + "(ns|us|\u00b5s|\u03bcs|ms|s)\\s*")
_SIZE_RE = re.compile(_NUMBER + r"(B|KiB|MiB|GiB|TiB|pages?|[KMGTPEkmgtpe])\s*")


def parse_time(value: object) -> float:
    """Return ``value`` in nanoseconds; raise ``ValueError`` with the accepted forms."""
    if isinstance(value, bool):
        raise ValueError(f"expected a time such as 20ms or 500 (ns), found {value!r}")
    ns: float | None = None
    if isinstance(value, (int, float)):
        ns = float(value)
    elif isinstance(value, str):
        m = _TIME_RE.fullmatch(value)
        if m:
            ns = float(m.group(1)) * _TIME_UNITS[m.group(2)]
    if ns is None:
        raise ValueError(f"expected a time such as 20ms, 1.5us or 500 (ns), found {value!r}")
    if not math.isfinite(ns):
        raise ValueError(f"expected a finite time, found {value!r}")
    return ns


def parse_pages(value: object) -> int:
    """Return ``value`` in pages (rounded up); raise ``ValueError`` with the accepted forms."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size such as 4KiB or 16 (pages), found {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        m = _SIZE_RE.fullmatch(value)
        if m:
            nbytes = float(m.group(1)) * _SIZE_UNITS[m.group(2)]
            if not math.isfinite(nbytes):
                raise ValueError(f"expected a finite size, found {value!r}")
            return int(-(-nbytes // PAGE_SIZE))
    raise ValueError(f"expected a size such as 4KiB, 2MiB or 16 (pages), found {value!r}")


def canonical(value: object) -> object:
    """A configured value as the run sees it: a time or size written with a unit as its
    number of ns or pages (``1ms`` and ``1000us`` are one value), a number as a float;
    anything else as it is."""
    if isinstance(value, str):
        for parse in (parse_time, parse_pages):
            try:
                return float(parse(value))
            except ValueError:
                continue
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


def format_ns(ns: float) -> str:
    """Render a duration for tables: ``"812ns"``, ``"3.41us"``, ``"12.0ms"``."""
    if ns != ns:  # NaN
        return "-"
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if abs(ns) >= scale:
            return f"{ns / scale:.3g}{unit}"
    return f"{ns:.0f}ns"
