from __future__ import annotations

import pytest

from components.common.errors import UserError
from components.sample import core


@pytest.mark.slow
def test_sample_reads_and_writes_s3(inputs, s3):
    clean, stats, _ = inputs
    bucket = s3.bucket("fareflow")
    for path in sorted(p for p in clean.rglob("*") if p.is_file()):  # Parquet + quality marker
        s3.put(bucket, f"clean/{path.relative_to(clean)}", path)
    for path in sorted(stats.iterdir()):
        s3.put(bucket, f"stats/{path.name}", path)
    config = core.SampleConfig(
        "s3://fareflow/clean", "s3://fareflow/stats", "s3://fareflow/splits", rows=2000, shards=2
    )
    result = core.run(config)
    assert result.passed and result.size.population_rows == 6000
    keys = [k for k in s3.keys(bucket, "splits/") if not k.endswith("/")]  # pyarrow's directory markers
    assert keys == ["splits/_SUCCESS"] + [
        f"splits/{s}/part-0000{i}.parquet" for s in ("test", "train", "validation") for i in (0, 1)
    ]
    # a rerun replaces its own output; an unrelated non-empty prefix is refused before any work
    core.run(config)
    s3.put(bucket, "other/keep.txt", clean.parent / "stats" / "stats.json")
    with pytest.raises(UserError, match="not an earlier output of the sample step"):
        core.run(
            core.SampleConfig("s3://fareflow/clean", "s3://fareflow/stats", "s3://fareflow/other", rows=2000)
        )
    assert s3.keys(bucket, "other/") == ["other/keep.txt"]
    local = core.run(
        core.SampleConfig(str(clean), str(stats), str(clean.parent / "local"), rows=2000, shards=2)
    )
    for name in core.SPLITS:  # same rows whatever the storage
        assert result.splits[name].equals(local.splits[name])
