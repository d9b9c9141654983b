"""The ``vmapsim`` command: run, check and list experiments; report an output directory;
search a capacity; verify variants by schedule exploration.

Exit codes: 0 success, 1 a run failed or the output could not be written mid-run (a full
disk: finished runs are kept), 2 bad input, an output directory that cannot be written or one
holding another experiment's runs (one line on stderr, no traceback), 130 interrupted
(finished runs are kept; ``--resume`` continues).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sim.config.loader import ConfigError, catalog_names
from sim.config.units import format_ns
from sim.config.versions import describe, versions
from sim.experiment.executors import EXECUTORS, default_jobs
from sim.experiment.experiment import Experiment, load_experiment
from sim.experiment.limits import DEFAULT_BUDGET, MAX_BUDGET
from sim.experiment.progress import on_terminal
from sim.results.stats import FEW
from sim.results.store import OutputError

if TYPE_CHECKING:
    from sim.experiment.capacity import Capacity, Limit
    from sim.experiment.runner import ExperimentResult
    from sim.simulation import RunSpec
# The simulator (numpy, SimPy, the model) and the reports are imported by the commands that
# use them, so that --help, list and check start in a fraction of a second.

PLOT_SETS = ("headline", "all")
PLOTS_HELP = ("which metrics get plots: the headline set (throughput, p99 latencies, purge "
              "time, lock wait, safety violations, the workload's own; default) or all")
TRACES = "traces"
"""``DIR/traces/<run_id>.json``: the timelines written by ``--trace-window``."""


class _Version(argparse.Action):
    """``--version``: one unwrapped line (argparse's own wraps it to the terminal)."""

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        print(describe(versions()))
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vmapsim",
        description="Simulate the Linux vmalloc lazy-free path on multi-CPU machines.")
    parser.add_argument("--version", action=_Version, nargs=0,
                        help="show the versions of vmapsim, Python and its libraries")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run an experiment and summarise it")
    run.add_argument("experiment", help="experiment YAML file or built-in experiment name")
    run.add_argument("-o", "--output", metavar="DIR",
                     help="output directory (default: results/<experiment name>)")
    run.add_argument("-j", "--jobs", type=int, default=None, metavar="N",
                     help="worker processes (default: all cores); 1 runs in this process")
    run.add_argument("--executor", choices=EXECUTORS, default=None,
                     help="local worker processes (default) or a Dask cluster (the 'dask' "
                     "extra): a new local one of N workers, or the one at --scheduler")
    run.add_argument("--scheduler", metavar="ADDR",
                     help="join the Dask cluster whose scheduler is at ADDR "
                     "(tcp://host:port); implies --executor dask")
    again = run.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="keep the finished runs in DIR and compute only the others "
                       "(failed and damaged ones again)")
    run.add_argument("--reuse-other-versions", action="store_true",
                     help="with --resume: keep finished runs written by other versions of "
                     "vmapsim or its libraries (refused by default)")
    again.add_argument("--force", action="store_true",
                       help="replace the runs of another experiment found in DIR")
    run.add_argument("--set", dest="overrides", action="append", default=[],
                     metavar="KEY=VALUE", help="override any dotted key, e.g. "
                     "--set workload.set_memory_rate=500 (repeatable)")
    run.add_argument("--verify", action=argparse.BooleanOptionalAction, default=None,
                     help="also verify every variant by schedule exploration, cached in "
                          "DIR/verify/ (default: the experiment's verify:, else when a "
                          "variant is a proposal mapping)")
    run.add_argument("--no-report", action="store_true",
                     help="write the tables only (no plots, no report.md)")
    run.add_argument("--plots", choices=PLOT_SETS, default="headline",
                     help=PLOTS_HELP)
    run.add_argument("-q", "--quiet", action="store_true",
                     help="print only the table (no progress bar, no notes)")
    run.add_argument("--trace-window", metavar="START..END",
                     help="after the sweep, rerun one run in this process with tracing and "
                     "write what each CPU did in simulated time START..END (e.g. 1ms..2ms) "
                     "to DIR/traces/<run_id>.json, for Perfetto or chrome://tracing")
    run.add_argument("--trace-run", metavar="RUN_ID",
                     help="the run to trace: a run id or a unique prefix of one (default: "
                     "the experiment's first run)")

    report = sub.add_parser("report", help="write the tables, plots and report.md of an "
                            "output directory from its run files")
    report.add_argument("directory", metavar="DIR")
    report.add_argument("--no-plots", action="store_true",
                        help="tables and report.md only (no matplotlib needed)")
    report.add_argument("--plots", choices=PLOT_SETS, default="headline", help=PLOTS_HELP)

    check = sub.add_parser("check", help="validate an experiment without running it")
    check.add_argument("experiment")
    check.add_argument("--set", dest="overrides", action="append", default=[],
                       metavar="KEY=VALUE")

    capacity = sub.add_parser(
        "capacity", help="per variant, the largest value of an integer key (e.g. cpus) at "
        "which a metric stays within a limit, by bisection")
    capacity.add_argument("experiment", help="experiment YAML file or built-in experiment name")
    capacity.add_argument("--key", required=True, help="the integer key to search, e.g. cpus")
    capacity.add_argument("--range", required=True, metavar="LOW..HIGH", dest="bounds",
                          help="values of the key to search, e.g. 1..256")
    capacity.add_argument("--metric", required=True, help="a summary.csv metric, e.g. "
                          "vmalloc_p99_ns")
    capacity.add_argument("--max", dest="maximum", metavar="LIMIT",
                          help="within: mean <= LIMIT (times such as 100us for *_ns metrics)")
    capacity.add_argument("--min", dest="minimum", metavar="LIMIT",
                          help="within: mean >= LIMIT")
    capacity.add_argument("-o", "--output", metavar="DIR",
                          help="runs and report (default: results/<experiment name>-capacity)")
    capacity.add_argument("-j", "--jobs", type=int, default=None, metavar="N")
    capacity.add_argument("--executor", choices=EXECUTORS, default=None)
    capacity.add_argument("--scheduler", metavar="ADDR")
    capacity.add_argument("--set", dest="overrides", action="append", default=[],
                          metavar="KEY=VALUE")
    capacity.add_argument("--no-report", action="store_true",
                          help="write the tables only (no plots, no report.md)")
    capacity.add_argument("-q", "--quiet", action="store_true")

    verify = sub.add_parser(
        "verify", help="explore the schedules of small racing scenarios: is a variant safe?",
        description="Run every scenario of workloads/scenarios/ under many perturbed "
                    "schedules and report each safety violation found, with its shortest "
                    "counterexample. Exit 0: nothing found within the budget; 1: a violation "
                    "was found; 2: bad input.")
    verify.add_argument("targets", nargs="+", metavar="VARIANT|EXPERIMENT",
                        help="a preset, a YAML file of one proposal mapping, or an experiment "
                             "(file or built-in name) whose variants are verified")
    verify.add_argument("--budget", type=int, default=DEFAULT_BUDGET, metavar="N",
                        help=f"schedules per scenario (default {DEFAULT_BUDGET})")
    verify.add_argument("--seed", type=int, default=0, metavar="S")
    verify.add_argument("--scenario", action="append", default=[], metavar="NAME",
                        help="only this scenario (repeatable; default: all)")
    verify.add_argument("--json", metavar="FILE", help="also write the verdicts as JSON")
    verify.add_argument("--trace-dir", metavar="DIR",
                        help="write each shortest counterexample's schedule as a Chrome "
                             "trace, DIR/<variant>.<kind>.json")
    verify.add_argument("-j", "--jobs", type=int, default=1, metavar="N",
                        help="worker processes, each verifying one variant on one scenario "
                             "at a time (default 1)")
    verify.add_argument("--executor", choices=EXECUTORS, default="local")
    verify.add_argument("--scheduler", metavar="ADDR", help="a Dask scheduler to run on")

    lister = sub.add_parser("list", help="list built-in catalog entries")
    lister.add_argument("what", choices=["cpus", "workloads", "variants", "experiments"])
    return parser


def _execution(args: argparse.Namespace) -> tuple[int, str]:
    """``-j``, ``--executor`` and ``--scheduler``: the number of workers and the executor."""
    cores = default_jobs()
    jobs = args.jobs if args.jobs is not None else cores
    if jobs < 1:
        raise ConfigError(f"-j expects at least 1 worker, found {jobs}", "command line")
    if args.executor == "local" and args.scheduler:
        raise ConfigError("--scheduler joins a Dask cluster; it needs --executor dask",
                          "command line")
    executor = args.executor or ("dask" if args.scheduler else "local")
    if jobs > cores and not args.scheduler:  # more processes than cores only adds memory
        _note(f"vmapsim: -j {jobs} is more than the {cores} cores this process may use; "
              f"using {cores}")
        jobs = cores
    return jobs, executor


def cmd_run(args: argparse.Namespace) -> int:
    from sim.experiment.runner import run_experiment
    from sim.experiment.verdicts import cached_verdicts, verdict_line
    from sim.results.plots import available as plots_available
    from sim.results.report import REPORT, format_table

    experiment = load_experiment(args.experiment, args.overrides)
    out = Path(args.output) if args.output else Path("results") / experiment.name
    jobs, executor = _execution(args)
    traced = _trace_target(args, experiment)
    note = None if args.quiet else _note
    if note and experiment.replications < FEW:
        note(f"note: {experiment.replications} replication(s) per point: intervals from fewer "
             f"than {FEW} are rough (--set replications={FEW} or more to compare)")
    if note:
        note(f"{experiment.name}: {len(experiment.specs())} runs "
             f"{_where(executor, jobs, args.scheduler)} -> {out}")
    outcome = run_experiment(experiment, out, jobs=jobs, progress=on_terminal(args.quiet),
                             executor=executor, scheduler=args.scheduler,
                             resume=args.resume, force=args.force,
                             reuse_other_versions=args.reuse_other_versions,
                             report=not args.no_report, log=note, plots=args.plots)
    print(format_table(outcome.rows, experiment.swept_keys, experiment.variant_names,
                       outcome.paired, experiment.baseline))
    if args.verify if args.verify is not None else experiment.verify:
        if note:
            note(f"\nverifying {len(experiment.variants)} variants ({DEFAULT_BUDGET} "
                 "schedules per scenario)...")
        print("\nverdicts by schedule exploration (the violations column is what this "
              "workload showed):")
        for verdict in cached_verdicts(experiment.variants, out, jobs):
            print("  " + verdict_line(verdict, experiment.file))
    if note:
        note(f"\nsummary: {out / 'summary.csv'}   runs: {out / 'runs'}"
             + (f"   paired: {out / 'paired.csv'}" if experiment.baseline else ""))
        if not args.no_report:
            note(f"report: {out / REPORT}" + ("" if plots_available() else
                 " (tables only: plots need pip install 'vmapsim[plots]')"))
    status = _trace(*traced, out, note) if traced else 0
    return max(_failures(outcome, experiment, out), status)


def _trace_target(args: argparse.Namespace, experiment: Experiment
                  ) -> tuple[RunSpec, tuple[float, float]] | None:
    """``--trace-window`` and ``--trace-run``, checked before the sweep starts."""
    if args.trace_window is None:
        if args.trace_run is not None:
            raise ConfigError("--trace-run needs --trace-window", "command line")
        return None
    from sim.results.timeline import parse_window, pick_run

    window = parse_window(args.trace_window)
    return pick_run(experiment.specs(), args.trace_run), window


def _trace(spec: RunSpec, window: tuple[float, float], out: Path,
           note: Callable[[str], None] | None) -> int:
    """Rerun ``spec`` here with a tracer and write ``DIR/traces/<run_id>.json``. Runs are
    deterministic, so its metrics are the sweep's. The exit status: 1 if the run fails."""
    from sim.results.timeline import trace_run

    path = out / TRACES / f"{spec.run_id}.json"
    try:
        _, tracer = trace_run(spec, *window, path)
    except Exception as exc:  # the sweep's results stand; say why there is no full trace
        print(f"vmapsim: tracing run {spec.run_id} failed: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return 1
    if note:
        end = spec.config["warmup"] + spec.config["duration"]
        hint = "" if tracer.events else f"; the run's window ends at {format_ns(end)}"
        note(f"trace: {path} ({tracer.summary()}{hint}); open it in https://ui.perfetto.dev "
             "or chrome://tracing")
    return 0


def _note(text: str) -> None:
    print(text, file=sys.stderr)


def _where(executor: str, jobs: int, scheduler: str | None) -> str:
    if scheduler:
        return f"on the Dask cluster at {scheduler}"
    if executor == "dask":
        return f"on a local Dask cluster of {jobs} worker(s)"
    return "in this process" if jobs == 1 else f"on {jobs} local processes"


def _failures(outcome: ExperimentResult, experiment: Experiment, out: Path) -> int:
    """Name every failed run on stderr; the exit status (1 when any failed)."""
    failed = outcome.failures
    if not failed:
        return 0
    print(f"vmapsim: {len(failed)} of {len(outcome.results)} runs failed (recorded in "
          f"{out / 'runs'}; --resume retries them):", file=sys.stderr)
    for result in failed:
        spec = result["spec"]
        point = " ".join(f"{k}={spec['point'].get(k)}" for k in experiment.swept_keys)
        print(f"  {result['run_id']} {spec['config']['variant']['name']} {point} "
              f"replication {spec['replication']}: {result['error']}", file=sys.stderr)
    return 1


def cmd_report(args: argparse.Namespace) -> int:
    from sim.results.report import format_table, report_directory

    out = Path(args.directory)
    manifest, report, missing = report_directory(out, plots=not args.no_plots,
                                                 every=args.plots == "all")
    print(format_table(report.rows, manifest.swept_keys, manifest.variants, report.paired,
                       manifest.baseline))
    _note(f"\nreport: {report.path} ({len(report.plots)} plots)"
          + (f"; {missing} run(s) have no result file" if missing else ""))
    return 0


def cmd_capacity(args: argparse.Namespace) -> int:
    from sim.experiment.capacity import Limit, capacity_search
    from sim.results.report import REPORT

    experiment = load_experiment(args.experiment, args.overrides)
    out = Path(args.output) if args.output else Path("results") / f"{experiment.name}-capacity"
    jobs, executor = _execution(args)
    limit = Limit.parse(args.metric, args.maximum, args.minimum)
    low, high = _range(args.bounds)
    note = None if args.quiet else _note
    dropped = [k for k in experiment.swept_keys if k != args.key]
    if note and dropped:
        note(f"capacity: the search replaces the experiment's sweep of {', '.join(dropped)}; "
             "those keys take their unswept values (pin them with --set)")
    found, final = capacity_search(experiment, args.key, low, high, limit, out, log=note,
                                   report=not args.no_report, jobs=jobs, executor=executor,
                                   scheduler=args.scheduler, progress=on_terminal(args.quiet))
    print(_capacity_table(found, args.key, limit, final.rows))
    if note:
        note(f"\ncapacity: {out / 'capacity.csv'}   report: {out / REPORT}")
    return _failures(final, final.experiment, out)


def _range(text: str) -> tuple[int, int]:
    low, sep, high = text.partition("..")
    try:
        if not sep:
            raise ValueError
        bounds = int(low), int(high)
    except ValueError:
        raise ConfigError(f"expected LOW..HIGH (integers), found {text!r}", "--range") from None
    if not bounds[0] < bounds[1]:
        raise ConfigError(f"the range needs low < high, found {text}", "--range")
    return bounds


def _capacity_table(found: list[Capacity], key: str, limit: Limit,
                    rows: list[dict]) -> str:
    at = {(r["variant"], r[key]): r for r in rows if r["metric"] == limit.metric}
    sign = "<=" if limit.upper else ">="
    show = format_ns if limit.metric.endswith("_ns") else (lambda v: f"{v:.4g}")
    lines = [f"{limit.metric} {sign} {show(limit.bound)}", ""]
    lines.append(f"{'variant':<16} {key.split('.')[-1]:>8} {'first beyond':>13} "
                 f"{'mean at ' + key.split('.')[-1]:>18} {'probes':>7}")
    for cap in found:
        row = at.get((cap.variant, cap.within))
        mean = "-" if row is None else show(row["mean"])
        within = "none" if cap.within is None else str(cap.within)
        beyond = "none" if cap.beyond is None else str(cap.beyond)
        lines.append(f"{cap.variant:<16} {within:>8} {beyond:>13} {mean:>18} "
                     f"{len(cap.probes):>7}")
    return "\n".join(lines)


def cmd_check(args: argparse.Namespace) -> int:
    experiment = load_experiment(args.experiment, args.overrides)
    print(f"{experiment.file}: ok ({len(experiment.points())} points x "
          f"{len(experiment.variants)} variants x {experiment.replications} replications "
          f"= {len(experiment.points()) * len(experiment.variants) * experiment.replications}"
          " runs)")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    if not 1 <= args.budget <= MAX_BUDGET:
        raise ConfigError(f"--budget expects 1 to {MAX_BUDGET} schedules per scenario, found "
                          f"{args.budget}", "command line")
    if args.jobs < 1:
        raise ConfigError(f"-j expects at least 1 worker, found {args.jobs}", "command line")
    from sim.experiment.verdicts import format_report, to_json, write_traces
    from sim.experiment.verify import pick_scenarios, targets, verify_all

    variants = targets(args.targets)
    chosen = pick_scenarios(args.scenario)
    reports = verify_all(variants, args.budget, args.seed, chosen, args.jobs,
                         "dask" if args.scheduler else args.executor, args.scheduler)
    for variant, report in zip(variants, reports):
        print("\n".join(format_report(report)))
        if args.trace_dir:
            for path in write_traces(report, variant, args.seed, Path(args.trace_dir), chosen):
                print(f"    trace: {path}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            [to_json(r, args.budget, args.seed) for r in reports], indent=1) + "\n")
    return 0 if all(r.safe for r in reports) else 1


def cmd_list(args: argparse.Namespace) -> int:
    if args.what == "variants":
        from sim.mm.variants import presets

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
    handler = {"run": cmd_run, "check": cmd_check, "list": cmd_list, "capacity": cmd_capacity,
               "report": cmd_report, "verify": cmd_verify}[args.command]
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return handler(args)
    except ConfigError as exc:
        print(f"vmapsim: error: {exc}", file=sys.stderr)
        return 2
    except OutputError as exc:  # the disk filled (or went away) mid-run
        print(f"vmapsim: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `vmapsim list variants | head -1`: the reader had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # any other failure to read or write a file: one line, no traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"vmapsim: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (timeout, a batch scheduler)
        what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        print(f"vmapsim: {what}; finished runs are kept (rerun with --resume to continue)",
              file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is: the workers stop, finished runs stay (exit 143)."""


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated


if __name__ == "__main__":
    sys.exit(main())
