"""The sample step's splits as the trainer reads them: part-file discovery (footers only),
each rank's shard (``shard_plan``) and the encoded arrays of a split (docs/train.md)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from components.common import contract, storage
from components.common.errors import UserError
from components.common.features import columns_from_table

from .distributed import Dist

SPLITS: tuple[str, ...] = ("train", "validation", "test")
PART_PREFIX, PART_SUFFIX = "part-", ".parquet"


@dataclass(frozen=True)
class PartFile:
    path: str  # inside the filesystem
    uri: str  # for messages
    rows: int


@dataclass(frozen=True)
class Splits:
    uri: str
    fs: pafs.FileSystem
    files: dict[str, list[PartFile]]

    def rows(self, split: str) -> int:
        return sum(f.rows for f in self.files[split])


NEEDED_COLUMNS: tuple[str, ...] = (contract.LABEL, *contract.FEATURES)


def _display(uri: str, root: str, path: str) -> str:
    return uri.rstrip("/") + path[len(root) :]


def _check_part_schema(schema: pa.Schema, uri: str) -> None:
    missing = [c for c in NEEDED_COLUMNS if c not in schema.names]
    if missing:
        raise UserError(
            f"{uri}: no column(s) {missing} (expected the sample step's splits with contract.CLEAN_SCHEMA columns)"
        )
    for name in NEEDED_COLUMNS:
        t = schema.field(name).type
        if not (pa.types.is_integer(t) or pa.types.is_floating(t)):
            raise UserError(
                f"{uri}: column {name!r} is {t}, expected a number ({contract.CLEAN_SCHEMA.field(name).type})"
            )


def discover(splits_uri: str) -> Splits:
    """List and check every split's part files (footers only): ``UserError`` naming the path
    for a missing ``_SUCCESS``, a missing or empty split, or a file without the needed columns."""
    storage.require_complete(splits_uri)
    fs, root = storage.resolve_filesystem(splits_uri)
    files: dict[str, list[PartFile]] = {}
    for split in SPLITS:
        directory = f"{root}/{split}"
        shown = _display(splits_uri, root, directory)
        try:
            infos = fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True))
        except OSError as err:
            raise UserError(f"{shown}: cannot list the {split} split ({err})") from None
        parts = sorted(
            i.path
            for i in infos
            if i.type == pafs.FileType.File
            and i.base_name.startswith(PART_PREFIX)
            and i.base_name.endswith(PART_SUFFIX)
        )
        if not parts:
            raise UserError(f"{shown}: no {PART_PREFIX}*{PART_SUFFIX} files (missing {split} split?)")
        files[split] = []
        for path in parts:
            uri = _display(splits_uri, root, path)
            try:
                meta = pq.ParquetFile(fs.open_input_file(path)).metadata
                schema = meta.schema.to_arrow_schema()
            except (pa.ArrowInvalid, OSError) as err:
                raise UserError(f"{uri}: not a readable Parquet file ({err})") from None
            _check_part_schema(schema, uri)
            files[split].append(PartFile(path, uri, meta.num_rows))
        if sum(f.rows for f in files[split]) == 0:
            raise UserError(f"{shown}: the {split} split has no rows")
    return Splits(splits_uri, fs, files)


def _whole_files(file_rows: list[int], world: int) -> bool:
    """Whole files per rank only when they deal out evenly: the file count is a multiple of
    ``world`` and the ranks' row totals (files r, r+W, ...) are within 1% (at least one row)."""
    if len(file_rows) % world:
        return False
    totals = [sum(file_rows[r::world]) for r in range(world)]
    return max(totals) - min(totals) <= max(1, sum(file_rows) // (100 * world))


def shard_plan(
    file_rows: list[int], rank: int, world: int, max_rows: int | None = None
) -> list[tuple[int, int, int]]:
    """The ``(file index, start row, stop row)`` pieces rank ``rank`` of ``world`` trains on.

    Files that deal out evenly (:func:`_whole_files`, e.g. the sample step's ``--shards`` =
    workers): files ``rank, rank + world, ...`` whole. Otherwise the rows of all files in order,
    cut into ``world`` contiguous ranges (sizes differ by at most one). ``max_rows`` caps the
    rows of all ranks together (each rank keeps the head of its share of ``max_rows``)."""
    if _whole_files(file_rows, world):
        pieces = [(i, 0, file_rows[i]) for i in range(rank, len(file_rows), world)]
    else:
        total = sum(file_rows)
        lo, hi = (rank * total) // world, ((rank + 1) * total) // world
        pieces, offset = [], 0
        for i, n in enumerate(file_rows):
            start, stop = max(lo, offset), min(hi, offset + n)
            if start < stop:
                pieces.append((i, start - offset, stop - offset))
            offset += n
    if max_rows is not None:
        budget = ((rank + 1) * max_rows) // world - (rank * max_rows) // world
        capped = []
        for i, start, stop in pieces:
            take = min(stop - start, budget)
            if take > 0:
                capped.append((i, start, start + take))
            budget -= take
        pieces = capped
    return pieces


def shard_sizes(file_rows: list[int], world: int, max_rows: int | None = None) -> list[int]:
    """Rows per rank under :func:`shard_plan`."""
    return [sum(b - a for _, a, b in shard_plan(file_rows, r, world, max_rows)) for r in range(world)]


def check_max_rows(max_rows: int | None, world: int) -> None:
    if max_rows is not None and max_rows < world:
        raise UserError(
            f"--max-rows {max_rows}: fewer than the {world} workers (each needs at least one train row)"
        )


def _no_rows_message(where: str, file_rows: list[int], world: int, max_rows: int | None, rank: int) -> str:
    capped = f" (--max-rows {max_rows})" if max_rows is not None and max_rows < sum(file_rows) else ""
    return (
        f"{where}: {sum(file_rows):,} row(s) in {len(file_rows)} file(s){capped} for {world} workers: "
        f"rank {rank} gets no rows (give fewer workers or more rows)"
    )


def check_shards(file_rows: list[int], world: int, max_rows: int | None, where: str) -> None:
    """``UserError`` when a rank's train shard would be empty (every rank decides the same)."""
    check_max_rows(max_rows, world)
    sizes = shard_sizes(file_rows, world, max_rows)
    if min(sizes) == 0:
        raise UserError(_no_rows_message(where, file_rows, world, max_rows, sizes.index(0)))


def _read_pieces(splits: Splits, split: str, pieces: list[tuple[int, int, int]]) -> pa.Table:
    tables = []
    for index, start, stop in pieces:
        part = splits.files[split][index]
        try:
            table = pq.read_table(part.path, filesystem=splits.fs, columns=list(NEEDED_COLUMNS))
        except (pa.ArrowInvalid, OSError) as err:
            raise UserError(f"{part.uri}: cannot read ({err})") from None
        tables.append(table.slice(start, stop - start))
    if not tables:
        return pa.table({c: pa.array([], pa.float64()) for c in NEEDED_COLUMNS})
    return pa.concat_tables(tables, promote_options="permissive")


@dataclass
class Arrays:
    """Encoded rows of one split (or one rank's shard of it)."""

    columns: dict[str, np.ndarray]
    label: np.ndarray  # float64
    where: str  # for messages

    @property
    def rows(self) -> int:
        return int(self.label.size)


def _arrays(table: pa.Table, where: str) -> Arrays:
    columns = columns_from_table(table)
    label = table.column(contract.LABEL).to_numpy(zero_copy_only=False).astype(np.float64)
    for name, values in {contract.LABEL: label, **columns}.items():
        bad = ~np.isfinite(values)
        if bad.any():
            raise UserError(f"{where}: column {name!r} has {int(bad.sum()):,} missing or non-finite value(s)")
    return Arrays(columns, label, where)


def load_split(splits: Splits, split: str, d: Dist, *, sharded: bool, max_rows: int | None) -> Arrays:
    files = splits.files[split]
    rows = [f.rows for f in files]
    if sharded:
        pieces = shard_plan(rows, d.rank, d.world, max_rows)
        where = (
            f"{splits.uri.rstrip('/')}/{split} (rank {d.rank} of {d.world})"
            if d.distributed
            else f"{splits.uri.rstrip('/')}/{split}"
        )
    else:
        pieces = shard_plan(rows, 0, 1, max_rows)
        where = f"{splits.uri.rstrip('/')}/{split}"
    return _arrays(_read_pieces(splits, split, pieces), where)
