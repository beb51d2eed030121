"""Bounded memory: peak RSS of an ingest run does not grow with the input size."""

from __future__ import annotations

import pytest

from bench.common import measure, python_cmd

pytestmark = pytest.mark.slow


def _peak_rss_mb(tmp_path, rows: int, *args: str) -> float:
    from components.generate import core

    data = tmp_path / f"data{rows}"
    if not data.exists():
        core.run(core.GenerateConfig(output_uri=str(data), rows=rows, months="2015-01:2015-02", seed=1))
    out = tmp_path / f"raw{rows}{'-'.join(args)}"
    result = measure(
        python_cmd(
            "-m", "components.ingest", "--source", str(data), "--output", str(out), "--no-progress", *args
        )
    )  # fmt: skip
    assert (out / "_SUCCESS").exists()
    return result["peak_rss_mb"]


def test_peak_rss_does_not_scale_with_input(tmp_path) -> None:
    # 1 MiB blocks: both inputs run many blocks, so both reach the steady state (blocks in
    # flight + one row group per partition) -- with the default 8 MiB blocks 200k rows (~45 MB
    # of text) end before the pipeline is full, and the comparison would measure the ramp-up.
    small = _peak_rss_mb(tmp_path, 200_000, "--block-mb", "1")
    large = _peak_rss_mb(tmp_path, 800_000, "--block-mb", "1")  # 4x the rows, ~180 MB of text
    assert large <= small * 1.15 + 20, f"peak RSS {small:.0f} MB for 200k rows, {large:.0f} MB for 800k rows"


def test_peak_rss_with_default_blocks_is_a_fraction_of_the_text(tmp_path) -> None:
    # pandas' read_csv needs ~3x the text size; ingest stays near its fixed working set
    # (measured ~350-400 MB for 0.8-2M rows) -- headroom for thread timing and allocator caching.
    large = _peak_rss_mb(tmp_path, 800_000)
    assert large < 600, f"peak RSS {large:.0f} MB for 800k rows"
