"""Experiments: loading and validation, sweeps and sampling, run specs and seeds, executors,
the runner, resume, progress and capacity search."""
