"""vmapsim: a discrete-event simulator of the Linux vmalloc lazy-free path.

The notebook API::

    import sim
    exp = sim.load_experiment("seed", overrides=["sweep.cpus=[1,4]"])
    outcome = sim.run_experiment(exp, out_dir="results/seed", jobs=2)
    outcome.rows        # summary rows: variant, swept keys, metric, mean, ci_low, ci_high, n
    sim.format_table(outcome.rows, exp.swept_keys)
"""

from .config import ConfigError
from .experiment import Experiment, load_experiment
from .report import format_table
from .run import RunSpec, run
from .runner import ExperimentResult, run_experiment

__all__ = ["ConfigError", "Experiment", "ExperimentResult", "RunSpec", "format_table",
           "load_experiment", "run", "run_experiment"]
