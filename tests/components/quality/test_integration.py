"""generate -> ingest -> quality: the rules recover the generator's ground truth exactly."""

from __future__ import annotations

import pytest

from components.generate import core as generate_core
from components.ingest import core as ingest_core
from components.quality import core


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("integration")
    result = generate_core.run(
        generate_core.GenerateConfig(
            output_uri=str(root / "src"), rows=30_000, months="2015-01:2015-03", seed=5
        )
    )
    ingest_core.run(ingest_core.IngestConfig(source_uri=str(root / "src"), output_uri=str(root / "raw")))
    return root, result.truth


def test_clean_rows_and_fare_statistics_match_the_generator_truth(generated):
    root, truth = generated
    res = core.run(core.QualityConfig(input_uri=str(root / "raw"), output_uri=str(root / "clean"), workers=2))
    s = res.counts
    assert s["rows_in"] == truth["rows"] == s["rows_clean"] + s["rows_rejected"]
    assert s["rows_clean"] == truth["clean"]["rows"]
    fare = res.stats["columns"]["fare"]
    assert fare["mean"] == pytest.approx(truth["clean"]["fare_mean"], abs=1e-6)
    assert fare["std"] == pytest.approx(truth["clean"]["fare_std"], abs=1e-6)
    assert s["rejected_by_rule"]["missing_pickup_time"] == truth["defects"]["origin_timestamp_missing"]
    assert s["gate_passed"], s[
        "gate_violations"
    ]  # default thresholds accept data with the observed defect rates
    # ingest's quarantine (OUTPUT/_quarantine) is not mistaken for a partition
    assert s["partitions"] == ["year=2015/month=1", "year=2015/month=2", "year=2015/month=3"]
