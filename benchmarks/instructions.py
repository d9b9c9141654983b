"""Instructions per operation of vmapsim's benchmark cases, counted by callgrind.

Run from the repository root (needs ``valgrind``; ~6 min on 2 cores)::

    python benchmarks/instructions.py                  # each case twice: figure and spread
    python benchmarks/instructions.py --repeats 1 seed-i915/64/bg=1e3

Wall time on a shared machine moves by 20% from run to run; executed instructions hardly
move. Each case is built as ``benchmarks/run.py`` builds it in ``--quick`` mode (``xeon-2s-112``,
``linux-4.7``): warmed up to the end of its first purge, then a window of at least a fifth of
its operations and at least one purge (``fix_size``: exactly one purge cycle, so the figure
is the steady-state cost with the purge's share). The run goes under
``valgrind --tool=callgrind --collect-atstart=no --toggle-collect=_operator_call``, and the
window alone is run through ``operator.call``, whose C function (``_operator_call``) nothing
else in a run calls: callgrind counts the window's instructions and nothing of Python's
start-up (~5.5e9 instructions), the imports, the set-up or the warm-up. The figure is those
instructions over the window's operations. ``PYTHONHASHSEED=0`` keeps hashing the same in
every run; what is left to move is allocation addresses (object hashes by identity) and the
collector, which the spread over repeats shows.
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]  # this checkout, not an installed copy

import run  # noqa: E402

CASES = ["fix_size/64", "seed-i915/64/bg=1e3", "seed-i915/64/bg=1e5"]
MODE = "quick"
"""The benchmark's mode whose windows are counted (one purge cycle of ``fix_size/64``)."""
TOGGLE = "_operator_call"
"""The C function of ``operator.call``: callgrind collects only while it runs."""


def child(name: str) -> None:
    """Under callgrind: build ``name``, warm it up, run its window through ``operator.call``;
    print the window's operations and purges as JSON."""
    case = next(c for c in run.CASES if c.name == name)
    prepared = run.builder(case, case.n_ops(run.SCALES[MODE]), MODE)()
    prepared.start()
    with prepared.context():
        prepared.warm_up()
        ops, purges = prepared.ops(), prepared.purges()
        operator.call(prepared.window)
    print(json.dumps({"ops": prepared.ops() - ops, "purges": prepared.purges() - purges,
                      "warmup_ops": ops}))


def counted(name: str, out: Path) -> dict[str, float]:
    """Run the child of ``name`` under callgrind: its window's operations, purges and
    instructions."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--collect-atstart=no", f"--toggle-collect={TOGGLE}",
         f"--callgrind-out-file={out}", sys.executable, __file__, "--child", name],
        capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{name}: callgrind run failed:\n{done.stderr[-2000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    totals = re.search(r"^totals:\s+(\d+)", out.read_text(), re.MULTILINE)
    if totals is None or int(totals.group(1)) == 0:
        raise RuntimeError(f"{name}: callgrind collected nothing (is {TOGGLE} a symbol?)")
    figures["instructions"] = int(totals.group(1))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", nargs="*", default=CASES, help=f"default: {' '.join(CASES)}")
    parser.add_argument("--repeats", type=int, default=2, help="callgrind runs per case")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return 0
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed")
    record = {}
    print("| case | warm-up ops | window ops | purges | instructions/op | spread |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cases:
            runs = [counted(name, Path(tmp) / f"callgrind.{k}") for k in range(args.repeats)]
            per_op = [r["instructions"] / r["ops"] for r in runs]
            mean = sum(per_op) / len(per_op)
            spread = (max(per_op) - min(per_op)) / mean
            record[name] = {"runs": runs, "instructions_per_op": per_op, "mean": mean,
                            "spread": spread}
            first = runs[0]
            print(f"| {name} | {first['warmup_ops']:,} | {first['ops']:,} | "
                  f"{first['purges']:,} | {mean:,.0f} | {spread:.3%} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
