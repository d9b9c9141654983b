"""``lock_stat.txt`` in the format of the kernel's ``/proc/lock_stat`` (lock_stat version 0.4),
and the counters behind it (``LockStat``: bounces and minima as lockdep counts them).

The parser here is written from the kernel's format strings in kernel/locking/lockdep_proc.c
(``seq_header``, ``seq_stats``, ``seq_lock_time``, ``seq_time``), not from the writer: a row is
``"%40s:%14lu %14lu %14s %14s %14s %14s %14lu %14lu %14s %14s %14s %14s"``, times printed as
``"%lld.%02d"`` microseconds.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import simpy

from sim.cli import main
from sim.engine.locks import SpinLock, no_handoff
from sim.results.lock_stat import class_name, kernel_time, lock_stat_row, run_classes

TINY = str(Path(__file__).parent / "data" / "tiny.yaml")
ROW_FORMAT = "%40s:%14lu %14lu %14s %14s %14s %14s %14lu %14lu %14s %14s %14s %14s"
HEADER_FORMAT = "%40s" + " %14s" * 12
COLUMNS = ["con-bounces", "contentions", "waittime-min", "waittime-max", "waittime-total",
           "waittime-avg", "acq-bounces", "acquisitions", "holdtime-min", "holdtime-max",
           "holdtime-total", "holdtime-avg"]
SEPARATOR = "-" * (40 + 1 + 12 * (14 + 1))


def conversions(fmt: str) -> list[tuple[int, str]]:
    return [(int(w), kind) for w, kind in re.findall(r"%(\d+)(lu|s)", fmt)]


def row_regex(fmt: str) -> re.Pattern[str]:
    """Each ``%<w>s``/``%<w>lu`` of the format is a field of exactly ``w`` characters (the
    values fit their widths); the literal text between them stays as it is."""
    pieces = re.split(r"%(\d+)(?:lu|s)", fmt)  # literal, width, literal, width, ..., literal
    return re.compile("".join(re.escape(piece) if i % 2 == 0 else f"(.{{{piece}}})"
                              for i, piece in enumerate(pieces)) + "$")


ROW = row_regex(ROW_FORMAT)
KINDS = [kind for _, kind in conversions(ROW_FORMAT)]
TIME = re.compile(r"\d+\.\d\d")


def parse_row(line: str) -> tuple[str, dict[str, float]] | None:
    """One class row of /proc/lock_stat, or None for any other line."""
    m = ROW.match(line)
    if m is None:
        return None
    fields = [f.strip() for f in m.groups()]
    name, values = fields[0], {}
    for column, kind, text in zip(COLUMNS, KINDS[1:], fields[1:], strict=True):
        if kind == "lu":
            assert text.isdigit(), line
            values[column] = int(text)
        else:
            assert TIME.fullmatch(text), line
            values[column] = float(text)
    return name, values


def blocks(text: str) -> list[list[str]]:
    """The file cut at each ``lock_stat version 0.4`` line."""
    out: list[list[str]] = []
    for line in text.splitlines():
        if line == "lock_stat version 0.4":
            out.append([])
        assert out, "the file starts with the kernel's header"
        out[-1].append(line)
    return out


def parse_block(block: list[str]) -> tuple[list[str], dict[str, dict[str, float]]]:
    """A block read as /proc/lock_stat: header, then rows; ``#`` comments are kept apart."""
    assert block[0] == "lock_stat version 0.4"
    assert block[1] == SEPARATOR and block[3] == SEPARATOR and block[4] == ""
    assert block[2] == HEADER_FORMAT.replace("%40s", "{:>40}").replace("%14s", "{:>14}").format(
        "class name", *COLUMNS)
    comments, rows = [], {}
    for line in block[5:]:
        if line.startswith("#"):
            comments.append(line)
            continue
        if not line:
            continue
        parsed = parse_row(line)
        assert parsed is not None, f"not a kernel row: {line!r}"
        name, values = parsed
        assert name not in rows
        rows[name] = values
    return comments, rows


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> Path:
    """8 runs of 1 ms from the start (no warm-up: no wait straddles the start of the window,
    whose request the model would count before it and its grant in it)."""
    out = tmp_path_factory.mktemp("lock-stat")
    assert main(["run", TINY, "-o", str(out), "-j", "2", "-q", "--no-report",
                 "--set", "sweep.workload.background.count=[100]", "--set", "warmup=0"]) == 0
    return out


POINT = re.compile(r"# vmapsim variant=(\S+) cpus=(\d+) workload\.background\.count=100$")


@pytest.fixture(scope="module")
def parsed(small_run: Path) -> dict[tuple[str, int], tuple[list[str], dict[str, dict]]]:
    """Each block by the variant and CPU count of its ``# vmapsim`` point line."""
    out = {}
    for block in blocks((small_run / "lock_stat.txt").read_text()):
        comments, rows = parse_block(block)
        points = [m for m in map(POINT.match, comments) if m]
        assert len(points) == 1, comments
        out[points[0].group(1), int(points[0].group(2))] = (comments, rows)
    return out


def runs_of(out: Path, variant: str, cpus: int) -> list[dict]:
    found = []
    for path in sorted((out / "runs").glob("*.json")):
        result = json.loads(path.read_text())
        spec = result["spec"]
        if spec["config"]["variant"]["name"] == variant and spec["point"]["cpus"] == cpus:
            found.append(result)
    return found


def test_every_line_is_the_kernels_or_a_comment(parsed) -> None:
    assert len(parsed) == 4  # 2 variants x cpus 1, 4
    for comments, rows in parsed.values():
        assert rows and all(c.startswith("# vmapsim ") for c in comments)
        assert "vmap_area_lock" in rows and "purge_lock" in rows


def test_a_class_row_is_the_per_run_mean_of_the_run_files(small_run: Path, parsed) -> None:
    runs = runs_of(small_run, "linux-4.7", 4)
    assert len(runs) == 2
    stats = [r["lock_stat"]["vmap_area_lock"] for r in runs]
    comments, rows = parsed["linux-4.7", 4]
    row = rows["vmap_area_lock"]

    def mean(key: str) -> float:
        return sum(s[key] for s in stats) / len(stats)

    assert row["contentions"] == math.floor(mean("contentions") + 0.5) > 0
    assert row["acquisitions"] == math.floor(mean("acquisitions") + 0.5)
    assert row["waittime-total"] == float(kernel_time(mean("wait_total")))
    assert row["holdtime-max"] == float(kernel_time(max(s["hold_max"] for s in stats)))
    assert row["holdtime-min"] == float(kernel_time(min(s["hold_min"] for s in stats)))
    pooled = sum(s["wait_total"] for s in stats) / sum(s["contentions"] for s in stats)
    assert row["waittime-avg"] == float(kernel_time(math.floor(pooled)))
    assert abs(row["waittime-avg"] - row["waittime-total"] / row["contentions"]) < 0.02
    assert any("means over 2 replications" in c for c in comments)


def test_rows_sorted_by_contentions_as_the_kernel(parsed) -> None:
    for _, rows in parsed.values():
        counts = [values["contentions"] for values in rows.values()]
        assert counts == sorted(counts, reverse=True)


def test_bounces_are_bounded_by_their_events(small_run: Path, parsed) -> None:
    """A bounce is an event of its count: at most as many. (The model counts an acquisition
    when it is requested and a contention or bounce when it is granted, so with a warm-up the
    waits under way at its end are granted in the window without their request.)"""
    for _, rows in parsed.values():
        for values in rows.values():
            assert values["con-bounces"] <= values["contentions"]
            assert values["acq-bounces"] <= values["acquisitions"]
    for path in (small_run / "runs").glob("*.json"):
        for stat in json.loads(path.read_text())["lock_stat"].values():
            assert stat["con_bounces"] <= stat["contentions"]
            assert stat["acq_bounces"] <= stat["acquisitions"]


def test_one_cpu_never_bounces_and_four_do(parsed) -> None:
    for point, (_, rows) in parsed.items():
        bounces = sum(v["con-bounces"] + v["acq-bounces"] for v in rows.values())
        if point[1] == 1:
            assert bounces == 0, point
        else:
            assert rows["vmap_area_lock"]["acq-bounces"] > 0, point


def test_a_long_class_name_does_not_shift_the_columns() -> None:
    stat = {"contentions": 3, "acquisitions": 7, "wait_total": 1234.0, "wait_min": 5.0,
            "wait_max": 1000.0, "hold_total": 7000.0, "hold_min": 1.0, "hold_max": 4000.0,
            "con_bounces": 2, "acq_bounces": 6}
    long_name = "&a_very_long_structure_name->with_a_long_member.lock"
    short = lock_stat_row("l", stat)
    line = lock_stat_row(long_name, stat)
    assert len(line) == len(short) == 40 + 1 + 14 + 11 * 15
    name, values = parse_row(line)
    assert name == long_name[:37]  # the kernel's char name[39], snprintf(name, 38, ...)
    assert values == parse_row(short)[1]
    assert values["waittime-avg"] == 0.41  # 1234 ns / 3, in whole ns: 411


def test_kernel_time_rounds_as_snprint_time() -> None:
    """``nr += 5; div = nr / 1000; rem = nr % 1000; "%lld.%02d", div, rem / 10``."""
    assert kernel_time(0) == "0.00"
    assert kernel_time(4) == "0.00"
    assert kernel_time(5) == "0.01"
    assert kernel_time(1234) == "1.23"
    assert kernel_time(1235) == "1.24"
    assert kernel_time(999_995) == "1000.00"
    assert kernel_time(12_345_678_901) == "12345678.90"


def test_class_names_are_the_kernels_init_sites() -> None:
    assert class_name("vmap_area_lock") == "vmap_area_lock"
    assert class_name("vmap_purge_lock") == "vmap_purge_lock"
    assert class_name("vmap_node.busy.lock") == "&vn->busy.lock"
    assert class_name("vmap_node.pool_lock") == "&vn->pool_lock"
    assert class_name("vmap_node.lazy.lock") == "&vn->lazy.lock"
    assert class_name("vmap_block.lock") == "&vb->lock"
    assert class_name("vmap_block_queue.lock") == "&vbq->lock"


def test_instances_of_one_class_are_one_row() -> None:
    """Counts, totals and bounces add up over instances; min and max are over them (a min
    only over instances that saw the event)."""
    a = {"contentions": 2, "acquisitions": 5, "wait_total": 30.0, "wait_min": 10.0,
         "wait_max": 20.0, "hold_total": 50.0, "hold_min": 4.0, "hold_max": 20.0,
         "con_bounces": 1, "acq_bounces": 3}
    b = {"contentions": 0, "acquisitions": 2, "wait_total": 0.0, "wait_min": 0.0,
         "wait_max": 0.0, "hold_total": 9.0, "hold_min": 2.0, "hold_max": 7.0,
         "con_bounces": 0, "acq_bounces": 1}
    names = {"vmap_node.busy.lock": "&vn->busy.lock", "x": "&vn->busy.lock"}
    classes = run_classes({"vmap_node.busy.lock": a, "x": b}, names)
    assert list(classes) == ["&vn->busy.lock"]
    c = classes["&vn->busy.lock"]
    assert (c["contentions"], c["acquisitions"], c["con_bounces"], c["acq_bounces"]) == \
        (2, 7, 1, 4)
    assert (c["wait_total"], c["hold_total"]) == (30.0, 59.0)
    assert (c["wait_min"], c["wait_max"], c["hold_min"], c["hold_max"]) == \
        (10.0, 20.0, 2.0, 20.0)


# --- the counters (sim/engine/locks.py) -----------------------------------------------------

def cpu(i: int) -> SimpleNamespace:
    return SimpleNamespace(id=i)


def test_bounces_as_lockdep_counts_them() -> None:
    """``__lock_acquired``: an acquisition by another CPU than the lock's last acquirer
    (``lock->cpu``, CPU 0 for a statically initialised lock); ``__lock_contended``: a
    contention by another CPU than that last acquirer; a trylock calls neither."""
    env = simpy.Environment()
    lock = SpinLock(env, "l", no_handoff)
    c0, c1, c2 = cpu(0), cpu(1), cpu(2)
    assert lock.acquire(c0) is None
    lock.release(c0)
    assert (lock.stat.acq_bounces, lock.stat.con_bounces) == (0, 0)
    assert lock.trylock(c2)  # no lock_acquired(): neither counted nor the last acquirer
    lock.release(c2)
    assert lock.stat.acq_bounces == 0
    assert lock.acquire(c1) is None
    assert lock.stat.acq_bounces == 1
    assert lock.acquire(c0) is not None  # contends with CPU 1 the last acquirer: a bounce
    assert lock.acquire(c1) is not None  # CPU 1 contends on its own last acquisition
    lock.release(c1)  # to CPU 0: acquired after CPU 1
    lock.release(c0)  # to CPU 1: acquired after CPU 0
    lock.release(c1)
    s = lock.stat
    assert (s.contentions, s.con_bounces, s.acquisitions, s.acq_bounces) == (2, 1, 5, 3)


def test_minima_are_over_the_events() -> None:
    env = simpy.Environment()
    lock = SpinLock(env, "l", no_handoff)
    c0, c1 = cpu(0), cpu(1)

    def holder(who, start: float, hold: float):
        yield env.timeout(start)
        wait = lock.acquire(who)
        if wait is not None:
            yield wait
        yield env.timeout(hold)
        lock.release(who)

    env.process(holder(c0, 0.0, 100.0))
    env.process(holder(c1, 30.0, 50.0))  # waits 70
    env.process(holder(c0, 500.0, 20.0))  # alone
    env.run()
    s = lock.stat
    assert (s.hold_min, s.hold_max, s.wait_min, s.wait_max) == (20.0, 100.0, 70.0, 70.0)
