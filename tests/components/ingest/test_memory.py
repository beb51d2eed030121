"""Bounded memory: peak RSS of an ingest run does not grow with the input size."""

from __future__ import annotations

import pytest

from bench.common import measure, python_cmd

pytestmark = pytest.mark.slow


def _peak_rss_mb(tmp_path, rows: int) -> float:
    from components.generate.core import GenerateConfig, generate

    data = tmp_path / f"data{rows}"
    generate(GenerateConfig(out=str(data), rows=rows, months="2015-01:2015-02", seed=1))
    out = tmp_path / f"raw{rows}"
    result = measure(
        python_cmd("-m", "components.ingest", "--source", str(data), "--output", str(out), "--no-progress")
    )
    assert (out / "_SUCCESS").exists()
    return result["peak_rss_mb"]


def test_peak_rss_does_not_scale_with_input(tmp_path) -> None:
    small = _peak_rss_mb(tmp_path, 200_000)
    large = _peak_rss_mb(tmp_path, 800_000)  # 4x the rows, ~180 MB of text
    assert large <= small * 1.25 + 20, f"peak RSS {small:.0f} MB for 200k rows, {large:.0f} MB for 800k rows"
    # absolute ceiling with headroom for thread timing and allocator caching (pandas needs
    # ~3x the text size); the scaling check above is the one that matters
    assert large < 600, f"peak RSS {large:.0f} MB for 800k rows"
