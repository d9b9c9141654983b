"""vmapsim: a discrete-event simulator of the Linux vmalloc lazy-free path.

The notebook API::

    import sim
    exp = sim.load_experiment("seed", overrides=["sweep.cpus=[1,4]"])
    outcome = sim.run_experiment(exp, out_dir="results/seed", jobs=2)
    outcome.rows        # summary rows: variant, swept keys, metric, mean, ci_low, ci_high, n
    sim.format_table(outcome.rows, exp.swept_keys)
"""

from __future__ import annotations

import importlib
from typing import Any

_API = {"ConfigError": "sim.config.loader", "Experiment": "sim.experiment.experiment",
        "load_experiment": "sim.experiment.experiment",
        "ExperimentResult": "sim.experiment.runner", "run_experiment": "sim.experiment.runner",
        "format_table": "sim.results.report", "RunSpec": "sim.simulation",
        "run": "sim.simulation"}
"""Where each name of the notebook API lives; imported on first use, so that ``vmapsim
--help`` or ``check`` does not pay for the simulator, numpy and scipy (PEP 562)."""

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sim' has no attribute {name!r}")
