"""Writing: the ``year=/month=`` Parquet part files and the quarantine file."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from components.common import contract
from components.common.staged import StagedOutput

from .parse import _DICTIONARY_COLUMNS, _STATS_COLUMNS

ROW_GROUP_ROWS = 1 << 16  # rows buffered per partition before a Parquet row group is written
FILE_ROWS = 1 << 22  # rows per Parquet file before the next part-NNNNN file starts
# Values encoded per step inside a row group (pyarrow's default is 1024): fewer, longer
# steps: about 5% less CPU in the writer at 2M rows. Values are the same; on the generated
# data the files are byte-identical (a page may break elsewhere on other data).
WRITE_BATCH_ROWS = 1 << 16
# The row ids (OBJECTID) and line numbers (source_line) count up: stored as deltas they take
# a few bits a row instead of 8 bytes (the files 28% smaller on generated data, slightly less
# CPU); every Parquet reader in use here reads DELTA_BINARY_PACKED (pyarrow, DuckDB, Spark).
_DELTA_ENCODED = {c: "DELTA_BINARY_PACKED" for c in contract.RAW_SCHEMA.names if c not in _DICTIONARY_COLUMNS}
QUARANTINE_DIR = "_quarantine"
QUARANTINE_FILE = "part-00000.parquet"
QUARANTINE_FLUSH_ROWS = 1 << 16


class _PartitionWriter:
    """Parquet files per ``year=/month=`` partition, in input order, deterministic names."""

    def __init__(self, out: StagedOutput, compression: str) -> None:
        self.out = out
        self.compression = compression
        self.buffers: dict[int, list[pa.Table]] = {}
        self.buffered: dict[int, int] = {}
        self.writers: dict[int, pq.ParquetWriter] = {}
        self.file_rows: dict[int, int] = {}
        self.file_index: dict[int, int] = {}
        self.rows: Counter[int] = Counter()
        self.files: list[str] = []
        self.rows_written = 0

    def add(self, table: pa.Table, keys: np.ndarray) -> None:
        if keys.size and (keys == keys[0]).all():
            groups = [(int(keys[0]), table)]
        else:
            groups = [(int(k), table.take(np.flatnonzero(keys == k))) for k in np.unique(keys)]
        for key, part in groups:
            self.buffers.setdefault(key, []).append(part)
            self.buffered[key] = self.buffered.get(key, 0) + part.num_rows
            self.rows[key] += part.num_rows
            self.rows_written += part.num_rows
            if self.buffered[key] >= ROW_GROUP_ROWS:
                self._flush(key)
        if sum(self.buffered.values()) > 2 * ROW_GROUP_ROWS:  # many partitions at once: bound memory
            self._flush(max(self.buffered, key=self.buffered.__getitem__))

    def _flush(self, key: int) -> None:
        table = pa.concat_tables(self.buffers.pop(key))
        self.buffered.pop(key)
        while table.num_rows:
            writer = self.writers.get(key)
            if writer is None:
                index = self.file_index.get(key, 0)
                self.file_index[key] = index + 1
                rel = f"year={key // 100}/month={key % 100}/part-{index:05d}.parquet"
                self.files.append(rel)
                writer = pq.ParquetWriter(
                    self.out.path(rel),
                    contract.RAW_SCHEMA,
                    filesystem=self.out.fs,
                    compression=self.compression,
                    write_statistics=_STATS_COLUMNS,
                    use_dictionary=_DICTIONARY_COLUMNS,
                    column_encoding=_DELTA_ENCODED,
                    write_batch_size=WRITE_BATCH_ROWS,
                )
                self.writers[key], self.file_rows[key] = writer, 0
            take = min(table.num_rows, FILE_ROWS - self.file_rows[key])
            writer.write_table(table.slice(0, take), row_group_size=take)
            self.file_rows[key] += take
            table = table.slice(take)
            if self.file_rows[key] >= FILE_ROWS:
                self.writers.pop(key).close()

    def close(self) -> None:
        for key in sorted(self.buffers):
            self._flush(key)
        for key in sorted(self.writers):
            self.writers.pop(key).close()
        self.files.sort()
        # The schema even when no row was written (the Parquet convention readers such as Spark use).
        pq.write_metadata(contract.RAW_SCHEMA, self.out.path("_common_metadata"), filesystem=self.out.fs)

    def partition_rows(self) -> dict[str, int]:
        return {f"year={k // 100}/month={k % 100}": n for k, n in sorted(self.rows.items())}


class _QuarantineWriter:
    """One Parquet file of quarantined lines (written even when empty, for its schema)."""

    def __init__(self, out: StagedOutput, relative: str, compression: str) -> None:
        self.writer = pq.ParquetWriter(
            out.path(relative), contract.QUARANTINE_SCHEMA, filesystem=out.fs, compression=compression
        )
        self.rows: list[tuple] = []
        self.rows_written = 0

    def add(self, name: str, rows: list[tuple[int, bytes, str, str]]) -> None:
        self.rows += [(name, line, raw, reason) for line, raw, reason, _ in rows]
        self.rows_written += len(rows)
        if len(self.rows) >= QUARANTINE_FLUSH_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self.rows:
            cols = list(zip(*self.rows, strict=True))
            self.writer.write_table(pa.Table.from_arrays(cols, schema=contract.QUARANTINE_SCHEMA))
            self.rows = []

    def close(self) -> None:
        self._flush()
        self.writer.close()
