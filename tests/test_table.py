"""The terminal table: at most 120 columns, variants in the order given, only keys that vary,
a paired throughput column against the baseline, and each kind's own headline."""

from __future__ import annotations

from sim.results.table import format_table


def row(variant: str, metric: str, mean: float, **point) -> dict:
    return {"variant": variant, **point, "metric": metric, "mean": mean,
            "ci_low": mean * 0.9, "ci_high": mean * 1.1, "n": 3}


METRICS = ["ops_per_sec", "vmalloc_p99_ns", "vfree_p99_ns", "set_memory_p99_ns",
           "purge_mean_ns", "vmap_area_lock_wait_ns", "purges", "alloc_failures",
           "safety_violations"]
VARIANTS = ["linux-4.5", "linux-4.10", "a-very-long-proposal-name-of-sixty-chars-more-or-less"]


def rows_of(cpus: list[int], fixed: int = 1000) -> list[dict]:
    return [row(v, m, 1e5 * (i + 1) if m == "ops_per_sec" else 1e3, cpus=c,
                **{"workload.background.count": fixed})
            for c in cpus for i, v in enumerate(VARIANTS) for m in METRICS]


def test_the_table_fits_120_columns_and_says_what_it_left_out() -> None:
    text = format_table(rows_of([1, 2]), ["cpus", "workload.background.count"], VARIANTS)
    assert max(len(line) for line in text.splitlines()) <= 120
    assert "left out to fit 120 columns" in text.splitlines()[-1]


def test_variants_keep_their_order_and_constant_keys_go() -> None:
    text = format_table(rows_of([1, 2]), ["cpus", "workload.background.count"], VARIANTS)
    lines = text.splitlines()
    assert "background.count" not in lines[0] and "cpus" in lines[0]
    names = [line.split()[0] for line in lines[2:] if line.startswith(("linux", "a-"))]
    assert names[:3] == VARIANTS  # not linux-4.10 before linux-4.5


def test_a_baseline_adds_the_paired_throughput_difference() -> None:
    rows = rows_of([1])
    paired = [{"variant": "linux-4.10", "cpus": 1, "workload.background.count": 1000,
               "metric": "ops_per_sec", "mean": 1e5, "ci_low": 5e4, "ci_high": 1.5e5, "n": 3},
              {"variant": VARIANTS[2], "cpus": 1, "workload.background.count": 1000,
               "metric": "ops_per_sec", "mean": 2e5, "ci_low": -1e4, "ci_high": 4e5, "n": 3}]
    text = format_table(rows, ["cpus", "workload.background.count"], VARIANTS, paired,
                        "linux-4.5")
    lines = text.splitlines()
    assert lines[0].rstrip().endswith("vs linux-4.5")
    assert lines[2].rstrip().endswith("-") and lines[3].rstrip().endswith("+100%*")
    assert lines[4].rstrip().endswith("+200%")  # its interval holds 0: no star


def test_a_kind_adds_its_own_headline() -> None:
    rows = [row("linux-4.7", "ops_per_sec", 1e5, cpus=2),
            row("linux-4.7", "replay_late_mean_ns", 2500.0, cpus=2),
            row("linux-4.7", "fix_size_alloc_test_avg_usec", 0.43, cpus=2)]
    text = format_table(rows, ["cpus"], ["linux-4.7"])
    assert "late mean" in text and "2.5us" in text and "fix_size" in text and "0.43us" in text


def test_each_kind_of_violation_seen_gets_a_column() -> None:
    rows = rows_of([1])
    rows.append(row(VARIANTS[1], "safety_unmap_aliases_unflushed", 2.0, cpus=1,
                    **{"workload.background.count": 1000}))
    rows.append(row(VARIANTS[0], "safety_use_after_free", 0.0, cpus=1,
                    **{"workload.background.count": 1000}))
    header = format_table(rows, ["cpus"], VARIANTS).splitlines()[0]
    assert "unflushed" in header and "UAF" not in header  # a kind no run saw: no column
