"""bench.bench_scale: the process-tree measurement and the chain's invariants on a small set."""

from __future__ import annotations

import json
import sys

import pytest

from bench import bench_scale
from bench.common import ratios

# A parent that stays small while two children hold ~200 MB each at the same time: the tree's
# peak must be their sum (no single process of the tree ever holds more than ~200 MB).
_PARENT_AND_CHILDREN = """
import subprocess, sys
child = "import time; x = bytearray(200 << 20); x[::4096] = b'1' * len(x[::4096]); time.sleep(1.5)"
procs = [subprocess.Popen([sys.executable, "-c", child]) for _ in range(2)]
assert all(p.wait() == 0 for p in procs)
"""

# A step that ends before the sampler's steady interval: its ~150 MB must still be counted.
_SHORT_STEP = "x = bytearray(150 << 20); x[::4096] = b'1' * len(x[::4096])"


def test_peak_rss_counts_the_whole_process_tree() -> None:
    run = bench_scale.run_step([sys.executable, "-c", _PARENT_AND_CHILDREN])
    assert run.samples >= 3
    assert run.peak_rss_bytes >= 400 << 20
    assert run.seconds >= 1.5
    assert 0 < run.cpu_s < run.seconds + 5


def test_a_short_step_peak_is_not_missed_between_samples() -> None:
    run = bench_scale.run_step([sys.executable, "-c", _SHORT_STEP])
    assert run.peak_rss_bytes >= 150 << 20


def test_a_failing_step_raises_with_its_output(tmp_path) -> None:
    log = tmp_path / "log"
    with pytest.raises(RuntimeError, match="step failed"):
        bench_scale.run_step([sys.executable, "-c", "import sys; sys.exit(3)"], log=log)


@pytest.fixture(scope="module")
def small_chain(tmp_path_factory):
    work = tmp_path_factory.mktemp("scale")
    records = bench_scale.run_chain(
        work,
        40_000,
        months="2015-11:2016-02",
        sample_rows=8_000,
        train_epochs=1,
        progress=False,
        say=lambda m: None,
    )
    return work, {r.step: r for r in records}


def test_chain_runs_every_step_on_the_real_layout(small_chain) -> None:
    work, rec = small_chain
    assert list(rec) == ["generate", "ingest", "quality", "sample", "train"]
    assert rec["generate"].checks["zips"] == ["taxi_2015.zip", "taxi_2016.zip"]
    assert rec["ingest"].checks["files"] == 4
    assert not list((work / "raw").glob("*.txt"))  # only the yearly archives


def test_chain_rows_add_up_from_step_to_step(small_chain) -> None:
    work, rec = small_chain
    ing, qual = rec["ingest"].checks, rec["quality"].checks
    assert ing["rows_read"] == 40_000 == ing["rows_written"] + ing["rows_quarantined"]
    assert qual["rows_in"] == ing["rows_written"] == qual["rows_clean"] + qual["rows_rejected"]
    assert sum(rec["sample"].checks["rows"].values()) == 8_000
    assert rec["train"].rows == rec["sample"].checks["rows"]["train"]
    quality = json.loads((work / "quality-summary.json").read_text())
    assert rec["sample"].rows == quality["rows_clean"]


def test_chain_records_are_measured(small_chain) -> None:
    _, rec = small_chain
    disk = 0
    for r in rec.values():
        assert r.seconds > 0 and r.cpu_s > 0 and r.peak_rss_mb > 20
        assert r.bytes_written > 0
        disk += r.bytes_written
        assert r.disk_needed_bytes == disk  # every output is kept for the next step
    # MB/s of ingest counts the uncompressed text (larger than the archives it read)
    assert rec["ingest"].input_bytes > rec["generate"].bytes_written


def test_ratios_pair_fareflow_with_every_peer() -> None:
    rows = [
        {"case": "ingest", "impl": "fareflow", "rows_per_s": 300.0, "peak_rss_mb": 100.0},
        {"case": "ingest", "impl": "pandas 3.1.1", "rows_per_s": 100.0, "peak_rss_mb": 400.0},
        {"case": "ingest", "impl": "polars 2.1.0", "rows_per_s": 600.0, "peak_rss_mb": 200.0},
    ]
    assert [(s["baseline"], s["speedup"], s["memory_ratio"]) for s in ratios(rows)] == [
        ("pandas 3.1.1", 3.0, 0.25),
        ("polars 2.1.0", 0.5, 0.5),
    ]
