"""Timeline export: simulate one run with a :class:`~sim.engine.tracer.Tracer` attached and
write its Chrome trace-event JSON (``vmapsim run --trace-window``).

``trace_run(spec, start, end, path)`` runs the spec with a tracer over simulated times
``[start, end]`` (ns); ``parse_window`` and ``pick_run`` read the command line's
``--trace-window`` and ``--trace-run``. The tracer itself, and the format, are
``sim/engine/tracer.py``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sim.config.loader import ConfigError
from sim.config.units import format_ns, parse_time
from sim.engine.tracer import MAX_EVENTS, Tracer
from sim.simulation import RunSpec, run


def run_name(spec: RunSpec) -> str:
    """The process name of a traced run: experiment, variant, point, replication, id."""
    point = " ".join(f"{k}={v}" for k, v in spec.point.items())
    return (f"{spec.experiment}: {spec.variant} {point} replication {spec.replication} "
            f"(run {spec.run_id})")


def trace_run(spec: RunSpec, start: float, end: float, path: str | Path | None = None,
              max_events: int = MAX_EVENTS) -> tuple[dict[str, Any], Tracer]:
    """Simulate ``spec`` with a tracer over ``[start, end]`` ns; write the trace to ``path``
    (also when the run raises, up to where it failed). Return the run's result (as from
    :func:`sim.run.run`: the same metrics as untraced) and the tracer."""
    tracer = Tracer(start, end, max_events, run_name(spec))
    try:
        result = run(spec, tracer)
    except Exception as exc:
        tracer.error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        if path is not None:
            tracer.write(path)
    return result, tracer


_PLAIN = re.compile(r"\s*[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?\s*")


def parse_window(text: str) -> tuple[float, float]:
    """``--trace-window START..END`` in ns (``1ms..2ms``; a bare number is ns); a
    :class:`ConfigError` on bad input."""
    first, sep, last = text.partition("..")
    if not sep:
        raise ConfigError(f"expected START..END such as 1ms..2ms, found {text!r}",
                          "--trace-window")
    start = _parse_bound(first, "START")
    end = _parse_bound(last, "END")
    if end < start:
        raise ConfigError(f"END ({format_ns(end)}) is before START ({format_ns(start)})",
                          "--trace-window")
    return start, end


def _parse_bound(text: str, what: str) -> float:
    try:
        return parse_time(float(text) if _PLAIN.fullmatch(text) else text.strip())
    except ValueError as exc:
        raise ConfigError(f"{what}: {exc}", "--trace-window") from None


def pick_run(specs: list[RunSpec], run_id: str | None) -> RunSpec:
    """The spec ``--trace-run`` names (a run id or a unique prefix); default the first."""
    if run_id is None:
        return specs[0]
    matches = [spec for spec in specs if spec.run_id.startswith(run_id.strip())]
    if len(matches) == 1 and run_id.strip():
        return matches[0]
    found = "matches no run" if not matches else f"matches {len(matches)} runs"
    raise ConfigError(f"{run_id!r} {found} of this experiment ({len(specs)} runs; the run ids "
                      "are the file names in DIR/runs)", "--trace-run")
