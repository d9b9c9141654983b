"""The ``vmapsim`` command: run, check and list experiments.

Exit codes: 0 success, 1 a run failed, 2 bad input (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import ConfigError, catalog_names
from .experiment import load_experiment
from .mm.variants import presets
from .report import format_table
from .runner import default_jobs, run_experiment


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vmapsim",
        description="Simulate the Linux vmalloc lazy-free path on multi-CPU machines.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run an experiment and summarise it")
    run.add_argument("experiment", help="experiment YAML file or built-in experiment name")
    run.add_argument("-o", "--output", metavar="DIR",
                     help="output directory (default: results/<experiment name>)")
    run.add_argument("-j", "--jobs", type=int, default=None, metavar="N",
                     help="worker processes (default: all cores)")
    run.add_argument("--set", dest="overrides", action="append", default=[],
                     metavar="KEY=VALUE", help="override any dotted key, e.g. "
                     "--set workload.set_memory_rate=500 (repeatable)")
    run.add_argument("-q", "--quiet", action="store_true", help="print only the table")

    check = sub.add_parser("check", help="validate an experiment without running it")
    check.add_argument("experiment")
    check.add_argument("--set", dest="overrides", action="append", default=[],
                       metavar="KEY=VALUE")

    lister = sub.add_parser("list", help="list built-in catalog entries")
    lister.add_argument("what", choices=["cpus", "workloads", "variants", "experiments"])
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    experiment = load_experiment(args.experiment, args.overrides)
    out = Path(args.output) if args.output else Path("results") / experiment.name
    jobs = args.jobs if args.jobs is not None else default_jobs()
    if jobs < 1:
        raise ConfigError(f"-j expects at least 1 worker, found {jobs}", "command line")
    specs = experiment.specs()
    progress = not args.quiet and sys.stderr.isatty()
    if not args.quiet:
        print(f"{experiment.name}: {len(specs)} runs on {jobs} worker(s) -> {out}",
              file=sys.stderr)
    outcome = run_experiment(experiment, out, jobs=jobs, progress=progress)
    print(format_table(outcome.rows, experiment.swept_keys))
    if not args.quiet:
        print(f"\nsummary: {out / 'summary.csv'}   runs: {out / 'runs'}", file=sys.stderr)
    for failed in outcome.failures:
        print(f"run {failed['run_id']} failed: {failed['error']}", file=sys.stderr)
    return 1 if outcome.failures else 0


def cmd_check(args: argparse.Namespace) -> int:
    experiment = load_experiment(args.experiment, args.overrides)
    print(f"{experiment.file}: ok ({len(experiment.points())} points x "
          f"{len(experiment.variants)} variants x {experiment.replications} replications "
          f"= {len(experiment.points()) * len(experiment.variants) * experiment.replications}"
          " runs)")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    if args.what == "variants":
        for name, fields in presets().items():
            choices = ", ".join(f"{k}={v}" for k, v in fields.items()
                                if k not in ("name", "kernel", "description"))
            print(f"{name:<12} {choices}\n{'':<12} {fields.get('kernel', '')}")
        return 0
    for name in catalog_names(args.what):
        print(name)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler = {"run": cmd_run, "check": cmd_check, "list": cmd_list}[args.command]
    try:
        return handler(args)
    except ConfigError as exc:
        print(f"vmapsim: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vmapsim: interrupted; finished runs are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
