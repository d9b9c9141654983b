"""Reports: plots (PNG files that open), report.md embedding them with the tables, lock_stat,
``vmapsim report DIR``, and what happens without matplotlib."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from sim.cli import main

TINY = str(Path(__file__).parent / "data" / "tiny.yaml")
TWO_KEYS = [TINY, "-q", "--set", "sweep.cpus=[1,2]", "--set", "baseline=linux-4.5"]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def reported(tmp_path_factory) -> Path:
    """A two-key sweep with a baseline: runs first, then ``vmapsim report DIR``."""
    out = tmp_path_factory.mktemp("two-keys")
    assert main(["run", *TWO_KEYS, "-o", str(out), "-j", "2", "--no-report"]) == 0
    assert not (out / "report.md").exists() and not (out / "plots").exists()
    assert main(["report", str(out)]) == 0
    return out


def _embedded(report: Path) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report.read_text())


def test_plots_are_png_files_that_open(reported: Path) -> None:
    from matplotlib.image import imread

    pngs = sorted((reported / "plots").glob("*.png"))
    names = {p.name for p in pngs}
    assert {"ops_per_sec.png", "ops_per_sec-paired.png", "purge_mean_ns.png",
            "vmalloc_p99_ns-paired.png"} <= names
    assert "purges.png" not in names  # not a headline metric: only with --plots all
    assert not any("heatmap" in n for n in names)  # 2 x 2 points: the panels show them all
    for png in pngs:
        assert png.read_bytes()[:8] == PNG
        height, width, channels = imread(png).shape
        assert height > 100 and width > 100 and channels in (3, 4)


def test_report_md_embeds_every_plot_and_the_tables(reported: Path) -> None:
    report = reported / "report.md"
    embedded = _embedded(report)
    on_disk = sorted(p.relative_to(reported).as_posix()
                     for p in (reported / "plots").glob("*.png"))
    assert sorted(embedded) == on_disk and len(on_disk) > 10
    text = report.read_text()
    assert text.startswith("# tiny\n")
    assert "## Headline metrics" in text and "## Paired differences: variant - linux-4.5" in text
    assert "| linux-4.7 | 2 | 2000 |" in text  # a paired row: variant, cpus, count
    assert "[summary.csv](summary.csv)" in text and "[paired.csv](paired.csv)" in text
    assert "class name" in text and "vmap_area_lock" in text  # lock_stat embedded
    assert "16 ok, 0 failed, 0 missing, of 16" in text


def test_lock_stat_in_proc_layout(reported: Path) -> None:
    lines = (reported / "lock_stat.txt").read_text().splitlines()
    assert lines[0].startswith("lock_stat version 0.4")
    header = next(line for line in lines if "class name" in line)
    assert header.split() == ["class", "name", "con-bounces", "contentions", "waittime-min",
                              "waittime-max", "waittime-total", "waittime-avg", "acq-bounces",
                              "acquisitions", "holdtime-min", "holdtime-max",
                              "holdtime-total", "holdtime-avg"]
    assert lines[1] == lines[3] == "-" * 221 and len(header) == 220


def test_paired_csv(reported: Path) -> None:
    lines = (reported / "paired.csv").read_text().splitlines()
    assert lines[0] == ("variant,baseline,cpus,workload.background.count,metric,mean,ci_low,"
                        "ci_high,n")
    assert all(line.startswith("linux-4.7,linux-4.5,") for line in lines[1:])
    assert len(lines) - 1 == 4 * len({line.split(",")[4] for line in lines[1:]})


def test_run_writes_the_report_for_one_swept_key(tmp_path: Path) -> None:
    assert main(["run", TINY, "-q", "-o", str(tmp_path), "-j", "2", "--set",
                 "workload.background.count=100", "--plots", "all"]) == 0
    names = {p.name for p in (tmp_path / "plots").glob("*.png")}
    assert {"ops_per_sec.png", "purges.png", "lazy_pages_peak.png"} <= names  # every metric
    assert "Every metric against `cpus`" in (tmp_path / "report.md").read_text()
    assert not any("heatmap" in n or "paired" in n for n in names)  # one key, no baseline
    assert sorted(_embedded(tmp_path / "report.md")) == sorted(f"plots/{n}" for n in names)


def test_without_matplotlib(tmp_path: Path, monkeypatch, capsys) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    out = tmp_path / "out"
    assert main(["run", TINY, "-o", str(out), "-j", "1", "--set", "sweep.cpus=[1]"]) == 0
    err = capsys.readouterr().err
    assert "tables only: plots need pip install 'vmapsim[plots]'" in err
    assert (out / "summary.csv").is_file() and not (out / "plots").exists()
    text = (out / "report.md").read_text()
    assert "## Headline metrics" in text and "pip install 'vmapsim[plots]'" in text
    assert _embedded(out / "report.md") == []

    assert main(["report", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the 'plots' extra" in err and "Traceback" not in err
    assert main(["report", str(out), "--no-plots"]) == 0


def test_report_of_a_directory_that_is_not_one(tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "not a vmapsim output directory" in capsys.readouterr().err


def test_sampled_keys_give_scatter_plots(tmp_path: Path) -> None:
    """A Latin-hypercube sweep: one panel per sampled key, no line per (meaningless) x grid."""
    from matplotlib.image import imread

    from sim.results.plots import write_plots

    rows = [{"variant": v, "a": a, "b": b, "metric": "m", "mean": a + b + (v == "new"),
             "ci_low": a + b - 1, "ci_high": a + b + 2, "n": 2}
            for v in ("base", "new") for a, b in ((1.5, 20.0), (2.5, 10.0), (3.5, 30.0))]
    paired = [{**r, "variant": "new", "baseline": "base", "mean": 1.0, "ci_low": 0.5,
               "ci_high": 1.5} for r in rows if r["variant"] == "new"]
    paths = write_plots(tmp_path, rows, ["a", "b"], ["base", "new"], paired, ["m"], ["a", "b"])
    assert [p.name for p in paths] == ["m.png", "m-paired.png"]  # no heatmap of samples
    for png in paths:
        assert png.read_bytes()[:8] == PNG
        height, width, _ = imread(png).shape
        assert width > 1.5 * height  # two panels side by side
