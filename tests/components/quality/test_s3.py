"""The quality step reads the ingest output from s3:// and writes its outputs there
(moto S3 server over real HTTP), giving the same rows as a local run."""

from __future__ import annotations

import pytest

from components.common import datasets
from components.quality import core

from .rawdata import raw_table, write_raw


@pytest.mark.slow
def test_quality_reads_and_writes_s3(tmp_path, s3):
    raw = write_raw(
        tmp_path / "raw", [raw_table(400, 2015, 1, defects={"missing_fare": 7}), raw_table(300, 2015, 2)]
    )
    bucket = s3.bucket("fareflow")
    for path in sorted([*raw.rglob("*.parquet"), raw / "_SUCCESS"]):
        s3.put(bucket, f"raw/{path.relative_to(raw)}", path)

    remote = core.run(
        core.QualityConfig(
            input_uri="s3://fareflow/raw",
            output_uri="s3://fareflow/clean",
            rejected_uri="s3://fareflow/rejected",
            stats_uri="s3://fareflow/stats",
            workers=1,
        )
    )
    local = core.run(core.QualityConfig(input_uri=str(raw), output_uri=str(tmp_path / "clean"), workers=1))

    assert remote.counts["rows_in"] == 700
    assert remote.counts["rejected_by_rule"] == local.counts["rejected_by_rule"]
    assert remote.counts["rejected_by_rule"]["missing_fare"] == 7
    keys = s3.keys(bucket, "")
    assert any(k.startswith("clean/year=2015/month=1/") for k in keys)
    assert any(k.startswith("stats/") and k.endswith("stats.json") for k in keys)
    sort = [("objectid", "ascending")]
    assert (
        datasets.read_clean("s3://fareflow/clean")
        .sort_by(sort)
        .equals(datasets.read_clean(str(tmp_path / "clean")).sort_by(sort))
    )


@pytest.mark.slow
def test_a_killed_workers_upload_file_goes_with_the_next_s3_write(tmp_path, s3, dead_scratch):
    """A file written for upload to s3:// is made in a scratch directory: one a killed worker
    left goes with the next partition written there, and none is left after the run."""
    from components.quality.clean_partition import SPILL_SCRATCH, UPLOAD_SCRATCH

    left = dead_scratch(UPLOAD_SCRATCH)
    raw = write_raw(tmp_path / "raw", [raw_table(200, 2015, 1)])
    bucket = s3.bucket("fareflow")
    for path in sorted([*raw.rglob("*.parquet"), raw / "_SUCCESS"]):
        s3.put(bucket, f"raw/{path.relative_to(raw)}", path)
    core.run(core.QualityConfig(input_uri="s3://fareflow/raw", output_uri="s3://fareflow/clean", workers=1))
    assert not left.exists()
    assert [p for p in left.parent.iterdir() if p.name.startswith((UPLOAD_SCRATCH, SPILL_SCRATCH))] == []
