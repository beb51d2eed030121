"""The data sets one step hands the next, read one way: the quality step's clean and
rejected rows and its population statistics (docs/quality.md), refused unless their
``_SUCCESS`` marker says the quality step finished them (``components.common.staged``)."""

from __future__ import annotations

import json
import re

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from . import contract
from .contract import CLEAN_FILE_SCHEMA, REJECTED_SCHEMA, RULE_COLUMN  # noqa: F401  (readers' names)
from .errors import UserError
from .staged import require_complete
from .storage import resolve_filesystem


def _compatible(got: pa.DataType, want: pa.DataType) -> bool:
    return (
        got == want
        or pa.types.is_null(got)
        or (pa.types.is_timestamp(got) and pa.types.is_timestamp(want))  # units may differ
        or (pa.types.is_string(want) and pa.types.is_large_string(got))
    )


def check_schema(dataset: ds.Dataset, uri: str) -> None:
    """Every file must hold the CLEAN_SCHEMA columns (year/month may come from the path)
    with compatible types: raw or foreign Parquet would otherwise read as all-null columns."""
    for fragment in dataset.get_fragments():
        try:
            physical = fragment.physical_schema
        except (pa.ArrowInvalid, OSError) as err:
            raise UserError(f"{fragment.path}: not a readable Parquet file ({err})") from None
        for want in contract.CLEAN_SCHEMA:
            if want.name not in physical.names:
                if want.name in contract.PARTITION_COLUMNS:
                    continue
                raise UserError(
                    f"{fragment.path}: no column {want.name!r} (is {uri} the clean data set of the quality step?)"
                )
            got = physical.field(want.name).type
            if not _compatible(got, want.type):
                raise UserError(f"{fragment.path}: column {want.name!r} is {got}, expected {want.type}")


def open_clean(uri: str) -> ds.Dataset:
    """The clean, hive-partitioned (year=/month=) Parquet data set, typed per CLEAN_SCHEMA;
    only once the quality step has marked it complete."""
    fs, path = resolve_filesystem(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise UserError(f"{uri}: clean data set not found")
    require_complete(uri, contract.QUALITY_STEP)  # never read a half-written clean output
    try:
        dataset = ds.dataset(
            path,
            filesystem=fs,
            format="parquet",
            schema=contract.CLEAN_SCHEMA,
            partitioning=ds.partitioning(contract.PARTITION_SCHEMA, flavor="hive"),
            exclude_invalid_files=False,
        )
    except (pa.ArrowInvalid, OSError) as err:
        raise UserError(f"{uri}: not a readable Parquet data set ({err})") from None
    check_schema(dataset, uri)
    return dataset


def clean_dataset(uri: str) -> ds.Dataset:
    """The clean data set with contract.CLEAN_SCHEMA types (year/month from the paths)."""
    require_complete(uri, contract.QUALITY_STEP)
    fs, root = resolve_filesystem(uri)
    return ds.dataset(
        root,
        filesystem=fs,
        format="parquet",
        schema=contract.CLEAN_SCHEMA,
        partitioning=ds.partitioning(contract.PARTITION_SCHEMA, flavor="hive"),
    )


def read_clean(uri: str) -> pa.Table:
    """All clean rows in partition order, then source order (deterministic)."""
    dataset = clean_dataset(uri)
    tables = [
        f.to_table(schema=contract.CLEAN_SCHEMA)
        for f in sorted(dataset.get_fragments(), key=lambda f: _frag_key(f.path))
    ]
    return pa.concat_tables(tables) if tables else contract.CLEAN_SCHEMA.empty_table()


def read_rejected(uri: str) -> pa.Table:
    """All rejected raw rows (with ``rule``, year, month) in partition order, then source order."""
    require_complete(uri, contract.QUALITY_STEP)
    fs, root = resolve_filesystem(uri)
    schema = REJECTED_SCHEMA.append(contract.PARTITION_SCHEMA.field("year")).append(
        contract.PARTITION_SCHEMA.field("month")
    )
    dataset = ds.dataset(
        root,
        filesystem=fs,
        format="parquet",
        schema=schema,
        partitioning=ds.partitioning(contract.PARTITION_SCHEMA, flavor="hive"),
    )
    tables = [
        f.to_table(schema=schema) for f in sorted(dataset.get_fragments(), key=lambda f: _frag_key(f.path))
    ]
    return pa.concat_tables(tables) if tables else schema.empty_table()


def _frag_key(path: str) -> tuple[int, int, str]:
    match = re.search(r"year=(\d+)/month=(\d+)/", path)
    return (int(match[1]), int(match[2]), path) if match else (0, 0, path)


def load_stats(stats_uri: str) -> tuple[dict, pa.Table]:
    """Population statistics written by the quality step: (stats.json, reservoir table)."""
    require_complete(stats_uri, contract.QUALITY_STEP)
    root = stats_uri.rstrip("/")
    fs, path = resolve_filesystem(f"{root}/{contract.POPULATION_STATS_FILE}")
    try:
        with fs.open_input_stream(path) as src:
            stats = json.loads(src.read().decode())
    except FileNotFoundError:
        raise UserError(f"{root}/{contract.POPULATION_STATS_FILE}: not found") from None
    fs, path = resolve_filesystem(f"{root}/{contract.POPULATION_RESERVOIR_FILE}")
    # Parquet has no seconds unit: timestamps come back as ms, so cast to the contract's types.
    table = pq.read_table(path, filesystem=fs)
    return stats, table.select(contract.CLEAN_SCHEMA.names).cast(contract.CLEAN_SCHEMA)
