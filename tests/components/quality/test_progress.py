"""The quality step's progress feed: every partition's bytes and rows, in the pool and serially,
without changing what the step writes."""

from __future__ import annotations

from contextlib import contextmanager

import pytest

from components.common import datasets
from components.quality import core, partitions


@pytest.fixture
def recorder(monkeypatch):
    seen = {"bytes": 0, "rows": 0, "calls": 0, "total": None, "enabled": "unset"}

    @contextmanager
    def progress_bar(total, description, *, enabled=None, unit="bytes", rows=False):
        seen["total"], seen["enabled"] = total, enabled

        def advance(n, rows=0):
            seen["bytes"] += n
            seen["rows"] += rows
            seen["calls"] += 1

        yield advance

    monkeypatch.setattr(core, "progress_bar", progress_bar)
    return seen


@pytest.mark.parametrize("workers", [1, 2])
def test_progress_counts_each_partition_once(raw_dir, tmp_path, recorder, workers) -> None:
    cfg = core.QualityConfig(
        input_uri=str(raw_dir), output_uri=str(tmp_path / "clean"), workers=workers, progress=True
    )
    result = core.run(cfg)
    raw_bytes = sum(f.stat().st_size for f in raw_dir.rglob("*.parquet") if "year=" in str(f))
    assert recorder["enabled"] is True
    assert recorder["calls"] == len(partitions.plan_partitions(str(raw_dir))) >= 3  # one per partition
    assert recorder["rows"] == result.counts["rows_in"]
    assert recorder["bytes"] == recorder["total"] == raw_bytes


def test_progress_does_not_change_the_output(raw_dir, tmp_path) -> None:
    a = core.run(
        core.QualityConfig(input_uri=str(raw_dir), output_uri=str(tmp_path / "a"), workers=2, progress=True)
    )
    b = core.run(core.QualityConfig(input_uri=str(raw_dir), output_uri=str(tmp_path / "b"), workers=2))
    assert a.counts == b.counts
    assert datasets.read_clean(str(tmp_path / "a")).equals(datasets.read_clean(str(tmp_path / "b")))


@pytest.mark.parametrize("progress", [True, False])
def test_each_partition_is_listed_once_before_the_work(
    raw_dir, tmp_path, recorder, monkeypatch, progress
) -> None:
    """The row count (footers) and the bar's sizes come from one listing of each partition; the
    partition's own processing lists it once more (in-process here, so both are seen)."""
    from components.quality import clean_partition

    listed: list[str] = []
    real = clean_partition.raw_file_infos

    def counted(job):
        listed.append(job.partition.key)
        return real(job)

    monkeypatch.setattr(clean_partition, "raw_file_infos", counted)
    monkeypatch.setattr(core, "raw_file_infos", counted)
    core.run(
        core.QualityConfig(
            input_uri=str(raw_dir), output_uri=str(tmp_path / "c"), workers=1, progress=progress
        )
    )
    keys = [p.key for p in partitions.plan_partitions(str(raw_dir))]
    assert sorted(listed) == sorted(keys * 2)
    assert recorder["enabled"] is progress  # the sizes came with the listing: the same total either way
    assert recorder["total"] == sum(f.stat().st_size for f in raw_dir.rglob("*.parquet") if "year=" in str(f))


def test_run_partitions_lists_sizes_itself_only_for_a_bar(raw_dir, tmp_path, recorder, monkeypatch) -> None:
    """Called without ``sizes`` (another caller than ``run``), the bar's sizes are listed only
    when the bar is on, and then they are the partitions' bytes."""
    cfg = core.QualityConfig(input_uri=str(raw_dir), output_uri=str(tmp_path / "d")).resolved()
    jobs = core.jobs_for(cfg, partitions.plan_partitions(str(raw_dir)))
    real = core.raw_file_infos

    def fail(job):
        raise AssertionError("sizes listed with the bar off")

    monkeypatch.setattr(core, "raw_file_infos", fail)
    results = core.run_partitions(jobs, 1, progress=False)
    assert len(results) == len(jobs) and recorder["total"] is None
    monkeypatch.setattr(core, "raw_file_infos", real)
    core.run_partitions(jobs, 1, progress=True)
    assert recorder["total"] == sum(f.stat().st_size for f in raw_dir.rglob("*.parquet") if "year=" in str(f))


def test_worker_memory_limit_reaches_duckdb_and_changes_no_output(raw_dir, tmp_path, monkeypatch) -> None:
    import tempfile

    import duckdb

    seen, real = [], duckdb.connect

    def connect(*args, **kwargs):
        seen.append(dict(kwargs.get("config") or {}))
        return real(*args, **kwargs)

    monkeypatch.setattr(duckdb, "connect", connect)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    limited = core.run(
        core.QualityConfig(
            input_uri=str(raw_dir), output_uri=str(tmp_path / "a"), workers=1, worker_memory_mb=64
        )
    )
    spills = [c["temp_directory"] for c in seen if "memory_limit" in c]
    assert spills and all(c["memory_limit"] == "64MB" for c in seen if "memory_limit" in c)
    assert all(s.startswith(str(tmp_path / "tmp")) for s in spills)
    assert list((tmp_path / "tmp").iterdir()) == []  # each spill directory removed
    seen.clear()
    default = core.run(
        core.QualityConfig(
            input_uri=str(raw_dir), output_uri=str(tmp_path / "b"), workers=1, worker_memory_mb=0
        )
    )
    assert not any("memory_limit" in c for c in seen)
    assert limited.counts == default.counts
    assert datasets.read_clean(str(tmp_path / "a")).equals(datasets.read_clean(str(tmp_path / "b")))
    assert datasets.read_rejected(str(tmp_path / "a_rejected")).equals(
        datasets.read_rejected(str(tmp_path / "b_rejected"))
    )
