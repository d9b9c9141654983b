"""vmapsim: a discrete-event simulator of the Linux vmalloc lazy-free path.

The notebook API::

    import sim
    exp = sim.load_experiment("seed", overrides=["sweep.cpus=[1,4]"])
    outcome = sim.run_experiment(exp, out_dir="results/seed", jobs=2)
    outcome.rows        # summary rows: variant, swept keys, metric, mean, ci_low, ci_high, n
    sim.format_table(outcome.rows, exp.swept_keys)
"""

from sim.config.loader import ConfigError
from sim.experiment.experiment import Experiment, load_experiment
from sim.experiment.runner import ExperimentResult, run_experiment
from sim.results.report import format_table
from sim.simulation import RunSpec, run

__all__ = ["ConfigError", "Experiment", "ExperimentResult", "RunSpec", "format_table",
           "load_experiment", "run", "run_experiment"]
