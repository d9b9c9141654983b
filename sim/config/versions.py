"""What produced a result: the versions of vmapsim, Python and the libraries a run's numbers
depend on. Recorded in every run file and manifest, shown by ``vmapsim --version``, and
compared when a sweep is resumed or runs on a Dask cluster (an upgrade of numpy or simpy may
change results, so runs of two versions are not silently mixed)."""

from __future__ import annotations

import functools
import platform
from importlib import metadata

from sim.config.loader import ConfigError

PACKAGES = ("simpy", "numpy", "scipy", "pydantic")
"""The libraries whose versions a result records (besides vmapsim and Python)."""


@functools.lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    """``{"vmapsim": ..., "python": ..., "simpy": ..., ...}`` of this process."""
    found = {"vmapsim": _version("vmapsim"), "python": platform.python_version()}
    found.update({name: _version(name) for name in PACKAGES})
    return found


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def describe(found: dict[str, str]) -> str:
    """``vmapsim 0.1.0 (Python 3.11.7, simpy 4.1.1, ...)``."""
    rest = ", ".join(f"{name} {found.get(name, '?')}" for name in PACKAGES)
    return f"vmapsim {found.get('vmapsim', '?')} (Python {found.get('python', '?')}, {rest})"


def differences(mine: dict[str, str], theirs: object) -> str:
    """What differs in ``theirs`` (``numpy 1.26.4``), or "" when it matches ``mine``."""
    if not isinstance(theirs, dict):
        return "no versions recorded"
    return ", ".join(f"{name} {theirs.get(name, '?')}" for name in mine
                     if theirs.get(name) != mine[name])


def check_same_versions(mine: dict[str, str], workers: dict[str, object]) -> None:
    """Refuse a cluster whose workers run other versions than this process."""
    for worker, theirs in sorted(workers.items()):
        diff = differences(mine, theirs)
        if diff:
            raise ConfigError(f"the Dask worker {worker} runs other versions ({diff}; here: "
                              f"{describe(mine)}); install the same vmapsim and libraries on "
                              "every worker", "--scheduler")
