from __future__ import annotations

from pathlib import Path

import pytest

from .rawdata import DEFECTS, raw_table, write_raw

MONTHS = ((2015, 1), (2015, 2), (2015, 3))
ROWS_PER_MONTH = 400
DEFECTS_PER_MONTH = 5


@pytest.fixture(scope="session")
def raw_dir(tmp_path_factory) -> Path:
    """3 source months x 400 rows, 5 rows of each defect per month, 2 files per partition."""
    root = tmp_path_factory.mktemp("raw")
    tables = [
        raw_table(ROWS_PER_MONTH, y, m, seed=7, defects=dict.fromkeys(DEFECTS, DEFECTS_PER_MONTH))
        for y, m in MONTHS
    ]
    return write_raw(root, tables, files_per_partition=2)


@pytest.fixture(scope="session")
def quality_run(raw_dir, tmp_path_factory):
    """The default rules over raw_dir, in-process path with one worker."""
    from components.quality import core

    out = tmp_path_factory.mktemp("run")
    cfg = core.QualityConfig(input_uri=str(raw_dir), output_uri=str(out / "clean"), workers=1)
    result = core.run(cfg)
    return result, out
