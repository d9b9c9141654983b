"""``test_vmalloc.log``: the Summary lines of every ``test_vmalloc`` run of an experiment, as
the kernel module prints them (lib/test_vmalloc.c; the lines are made by
``sim/workloads/lib_test_vmalloc.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sim.results.store import write_atomic

LOG = "test_vmalloc.log"


def write_log(out_dir: Path, results: list[dict[str, Any]], swept: list[str]) -> Path | None:
    """``test_vmalloc.log``: the Summary lines of every run, grouped as summary.csv orders its
    rows (variant and point in order of first appearance), replications in order, each block
    headed by a ``#`` line naming the variant, point, replication and run id. None (and no
    file) when no run has them."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for result in results:
        if result.get("status") != "ok" or "test_vmalloc" not in result:
            continue
        spec = result["spec"]
        key = (spec["config"]["variant"]["name"], *(repr(spec["point"].get(k)) for k in swept))
        groups.setdefault(key, []).append(result)
    if not groups:
        return None
    out: list[str] = []
    for members in groups.values():
        for result in sorted(members, key=lambda r: r["spec"]["replication"]):
            spec = result["spec"]
            point = "".join(f" {k}={spec['point'].get(k)}" for k in swept)
            out.append(f"# {spec['config']['variant']['name']}{point} replication="
                       f"{spec['replication']} run={result['run_id']}")
            out += result["test_vmalloc"]["summary"]
            out += [f"# note: {note}" for note in result["test_vmalloc"]["notes"]]
    path = out_dir / LOG
    write_atomic(path, "\n".join(out) + "\n")
    return path
