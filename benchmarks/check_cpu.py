"""CPU time of ``vmapsim check`` on every bad input of ``tests/bad_inputs/``: each must answer
(one line, exit 2) in well under a second of CPU, however large what it describes.

Run from the repository root::

    python benchmarks/check_cpu.py            # the slowest inputs, and the start-up cost
    python benchmarks/check_cpu.py --json check.json

Each check runs in this process after the imports (``time.process_time`` around
``sim.cli.main``), so the figure is the check's own work; the start-up of a fresh ``vmapsim``
(interpreter and imports) is measured apart, as the CPU time of ``vmapsim --help`` in a child.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from sim.cli import main

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "bad_inputs"
HELPERS = (".machine.yaml", ".workload.yaml")


def check_cpu(path: Path) -> tuple[float, int]:
    """CPU seconds of one ``check`` and its exit code."""
    start = time.process_time()
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        code = main(["check", str(path)])
    return time.process_time() - start, code


def startup_cpu() -> float:
    """CPU seconds of ``python -m sim --help`` in a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-m", "sim", "--help"], check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main_benchmark() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    files = sorted(p for p in CORPUS.glob("*.yaml") if not p.name.endswith(HELPERS))
    check_cpu(files[0])  # the first call pays for lazy imports (pydantic schemas)
    figures = {p.name: check_cpu(p) for p in files}
    wrong = [name for name, (_, code) in figures.items() if code != 2]
    slowest = sorted(figures.items(), key=lambda kv: -kv[1][0])[:5]
    startup = startup_cpu()
    print(f"{len(figures)} bad inputs; start-up (vmapsim --help): {startup:.2f} s CPU")
    for name, (cpu, _) in slowest:
        print(f"  {cpu:6.3f} s  {name}")
    print(f"slowest check plus start-up: {slowest[0][1][0] + startup:.2f} s CPU")
    if wrong:
        print(f"not refused with exit 2: {', '.join(wrong)}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"startup_s": startup, "checks_s": {k: v[0] for k, v in figures.items()}},
            indent=1) + "\n")


if __name__ == "__main__":
    main_benchmark()
