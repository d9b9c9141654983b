"""Progress bars on stderr: one step per finished run, with an ETA, for a sweep; simulated
time for a single run.

Shown only on a terminal; silent in pipes, in files and with ``--quiet``.
"""

from __future__ import annotations

import sys
from typing import Any


class Progress:
    """A tqdm bar over runs (or nothing, when disabled)."""

    def __init__(self, total: int, done: int = 0, enabled: bool = True) -> None:
        self.bar: Any = None
        if enabled and total > done:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, unit="run", desc="runs",
                            file=sys.stderr, dynamic_ncols=True, smoothing=0.1)

    def update(self, failed: bool = False) -> None:
        if self.bar is not None:
            self.bar.update(1)
            if failed:
                self.bar.set_postfix_str("some runs failed", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def on_terminal(quiet: bool) -> bool:
    """Whether to show progress: not ``--quiet`` and stderr is a terminal."""
    return not quiet and sys.stderr.isatty()


class SimTimeProgress:
    """A tqdm bar over the simulated time of one long run (percent done)."""

    def __init__(self, label: str) -> None:
        from tqdm import tqdm

        self.label = label
        self.bar = tqdm(total=100, unit="%", desc=f"setting up ({label})", file=sys.stderr,
                        dynamic_ncols=True, bar_format="{l_bar}{bar}| {n:.1f}% [{elapsed}<"
                        "{remaining}]")

    def __call__(self, fraction: float) -> None:
        if self.bar.n == 0:  # set-up (background areas placed) is over
            self.bar.set_description(f"simulated time ({self.label})", refresh=False)
        self.bar.update(round(fraction * 100, 1) - self.bar.n)

    def close(self) -> None:
        self.bar.close()
