"""The quality step's files and the statistics it keeps (docs/quality.md)."""

from __future__ import annotations

import re

import pyarrow as pa

from components.common import contract

# The files this step writes, from the contract (not components.common.datasets: it imports
# pyarrow.dataset, which imports pandas, ~0.3 s of the serial start before the workers fork).
from components.common.contract import CLEAN_FILE_SCHEMA, REJECTED_SCHEMA, RULE_COLUMN  # noqa: F401
from components.common.errors import UserError
from components.common.storage import resolve_filesystem

PART_FILE = "part-0.parquet"
# The name in each output's _SUCCESS marker (components.common.staged), with its role.
STEP = contract.QUALITY_STEP
PARTIAL_FILE = "partial.json"
PARTIAL_RESERVOIR = "reservoir.parquet"
PARTIAL_PROFILE_SAMPLE = "profile_sample.parquet"
PROFILE_SAMPLE_ROWS = 20_000  # raw rows kept for raw-column quantiles
SAMPLE_KEY = "_sample_key"
# Row groups of the per-partition sample files (written in key order): the merge reads only
# the leading groups that can hold rows of the merged bottom-k (see bottom_k_files).
SAMPLE_ROW_GROUP = 8192
PARTITION_DIR = re.compile(r"^year=(?P<year>\d{4})/month=(?P<month>\d{1,2})$")

STAT_COLUMNS: tuple[str, ...] = (contract.LABEL, *contract.FEATURES)
# Raw columns profiled with min/max/quantiles (the numeric ones) plus the derived distance.
RAW_DISTANCE = "raw_distance_km"
RAW_NUMERIC: tuple[str, ...] = tuple(
    f.name
    for f in contract.RAW_SCHEMA
    if (pa.types.is_floating(f.type) or pa.types.is_integer(f.type))
    and f.name not in ("OBJECTID", contract.SOURCE_LINE)
)
CLEAN_NUMERIC: tuple[str, ...] = tuple(
    f.name
    for f in contract.CLEAN_SCHEMA
    if (pa.types.is_floating(f.type) or pa.types.is_integer(f.type)) and f.name != "objectid"
)
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
# Fixed-bin histograms (mergeable by adding counts): column -> (low, high, bins).
# Values below/above the range are counted in the first/last bin (clipped).
HISTOGRAMS: dict[str, tuple[float, float, int]] = {
    contract.LABEL: (0.0, 100.0, 100),
    "distance_km": (0.0, 30.0, 60),
}
# over the classified table, which holds the raw distance as a column (computed once)
_HIST_RAW_SQL = {contract.LABEL: "FAREAMOUNT", "distance_km": RAW_DISTANCE}


def join_uri(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts if p)])


def write_text(uri: str, text: str) -> None:
    fs, path = resolve_filesystem(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as out:
        out.write(text.encode())


def read_text(uri: str) -> str:
    fs, path = resolve_filesystem(uri)
    try:
        with fs.open_input_stream(path) as src:
            return src.read().decode()
    except FileNotFoundError:
        raise UserError(f"{uri}: not found") from None


def to_numpy(values: pa.Array | pa.ChunkedArray):
    """A numeric Arrow array as a numpy array: a view of its data buffer when it has no nulls
    (pyarrow's ``to_numpy`` imports pandas, ~0.3 s of a run's serial part), else a copy with
    NaN for nulls."""
    import numpy as np

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if values.null_count == 0 and (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)):
        kind = (
            "f"
            if pa.types.is_floating(values.type)
            else "u"
            if pa.types.is_unsigned_integer(values.type)
            else "i"
        )
        dtype = np.dtype(f"{kind}{values.type.bit_width // 8}")
        return np.frombuffer(
            values.buffers()[1], dtype=dtype, count=len(values), offset=values.offset * dtype.itemsize
        )
    return values.to_numpy(zero_copy_only=False)
