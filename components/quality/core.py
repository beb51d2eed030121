"""Quality step: raw partitions -> clean features + rejected rows + population statistics + gate.

Pure logic (no kfp). The unit of work is one ``year=/month=`` partition of the ingest
output; each is processed independently by :func:`process_partition`, which writes

- ``<clean>/year=Y/month=M/part-0.parquet``    clean rows (contract.CLEAN_SCHEMA; year/month
  come from the path, as in the raw data set; read with :func:`read_clean`),
- ``<rejected>/year=Y/month=M/part-0.parquet`` rejected raw rows + ``rule``,
- ``<partials>/year=Y/month=M/``                mergeable statistics: ``partial.json`` and two
  bottom-k hash samples (clean reservoir, raw profile sample).

:func:`merge` combines the partials exactly (counts, sums, min/max, Chan's pairwise
mean/variance, histogram bins, bottom-k samples) in partition order, writes the population
statistics and evaluates the gate. :func:`run_quality` is plan + process (in a process
pool) + merge; the cluster pipeline runs the same three steps as separate tasks
(``plan_partitions`` -> ``process_partition`` per partition -> ``merge``), so both paths
produce identical files and numbers.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_all_start_methods, get_context

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from components.common import contract
from components.common.errors import UserError
from components.common.storage import require_complete, resolve_filesystem

from . import sql
from .rules import RuleSet, load_rules

PART_FILE = "part-0.parquet"
# In each output directory (clean, rejected, stats): says a quality run wrote it, so that
# --overwrite may empty it; "complete" turns true once the run has finished writing.
QUALITY_MARKER = contract.QUALITY_MARKER
PARTIAL_FILE = "partial.json"
PARTIAL_RESERVOIR = "reservoir.parquet"
PARTIAL_PROFILE_SAMPLE = "profile_sample.parquet"
PROFILE_SAMPLE_ROWS = 20_000  # raw rows kept for raw-column quantiles
SAMPLE_KEY = "_sample_key"
# Row groups of the per-partition sample files (written in key order): the merge reads only
# the leading groups that can hold rows of the merged bottom-k (see bottom_k_files).
SAMPLE_ROW_GROUP = 8192
RULE_COLUMN = "rule"
PARTITION_DIR = re.compile(r"^year=(?P<year>\d{4})/month=(?P<month>\d{1,2})$")

# Clean files hold CLEAN_SCHEMA minus the partition keys (which the path carries).
CLEAN_FILE_SCHEMA = pa.schema([f for f in contract.CLEAN_SCHEMA if f.name not in contract.PARTITION_COLUMNS])
REJECTED_SCHEMA = contract.RAW_SCHEMA.append(pa.field(RULE_COLUMN, pa.string()))
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


class GateFailed(UserError):
    """The share of rejected rows exceeded a threshold: the pipeline must stop here."""

    exit_code = 3


# --- partitions -------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Partition:
    year: int
    month: int
    path: str = field(default="", compare=False)  # directory relative to the data set root

    @property
    def key(self) -> str:
        """Canonical partition directory: ``year=2015/month=1``."""
        return f"year={self.year}/month={self.month}"

    @classmethod
    def parse(cls, key: str) -> Partition:
        match = PARTITION_DIR.match(key.strip("/"))
        if not match:
            raise UserError(f"{key!r}: expected a partition like 'year=2015/month=1'")
        year, month = int(match["year"]), int(match["month"])
        if not 1 <= month <= 12:
            raise UserError(f"{key!r}: month must be 1-12")
        return cls(year, month, key.strip("/"))


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts if p)])


def plan_partitions(raw_uri: str) -> list[Partition]:
    """The ``year=/month=`` partitions holding Parquet files under ``raw_uri``, in order."""
    fs, root = resolve_filesystem(raw_uri)
    info = fs.get_file_info(root)
    if info.type != pafs.FileType.Directory:
        raise UserError(
            f"{raw_uri}: input is not a directory (expected the ingest output, year=/month= Parquet)"
        )
    require_complete(raw_uri)  # ingest writes _SUCCESS last: never clean a half-written input
    found: dict[tuple[int, int], Partition] = {}
    for entry in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
        if entry.type != pafs.FileType.File or not entry.base_name.endswith(".parquet"):
            continue
        rel = entry.path[len(root) :].strip("/")
        if any(part.startswith((".", "_")) for part in rel.split("/")):
            continue
        parent = rel.rsplit("/", 1)[0] if "/" in rel else ""
        if not PARTITION_DIR.match(parent):
            raise UserError(f"{raw_uri}: {rel}: Parquet file outside a year=YYYY/month=M partition directory")
        part = Partition.parse(parent)
        if (part.year, part.month) in found and found[(part.year, part.month)].path != part.path:
            raise UserError(
                f"{raw_uri}: partition {part.key} appears twice ({found[(part.year, part.month)].path}, {part.path})"
            )
        found[(part.year, part.month)] = part
    if not found:
        raise UserError(
            f"{raw_uri}: no Parquet files under year=YYYY/month=M directories (is this the ingest output?)"
        )
    return sorted(found.values())


def find_partition(raw_uri: str, partition_key: str) -> Partition:
    """One partition of ``raw_uri`` by key, listing only its own directory (a fan-out task
    must not list the whole raw tree: on S3 that is one full listing per partition)."""
    wanted = Partition.parse(partition_key)
    fs, root = resolve_filesystem(raw_uri)
    found: list[Partition] = []
    for rel in dict.fromkeys((wanted.path, wanted.key, f"year={wanted.year}/month={wanted.month:02d}")):
        where = _join(root, rel)
        if fs.get_file_info(where).type != pafs.FileType.Directory:
            continue
        for entry in fs.get_file_info(pafs.FileSelector(where, recursive=True)):
            sub = entry.path[len(where) :].strip("/")
            if (
                entry.type == pafs.FileType.File
                and entry.base_name.endswith(".parquet")
                and not any(part.startswith((".", "_")) for part in sub.split("/"))
            ):
                if "/" in sub:
                    raise UserError(
                        f"{raw_uri}: {rel}/{sub}: Parquet file outside a year=YYYY/month=M partition directory"
                    )
                found.append(Partition(wanted.year, wanted.month, rel))
                break
    if not found:
        raise UserError(f"{raw_uri}: no partition {partition_key}")
    if len(found) > 1:
        raise UserError(f"{raw_uri}: partition {wanted.key} appears twice ({found[0].path}, {found[1].path})")
    return found[0]


# --- one partition ----------------------------------------------------------------


@dataclass(frozen=True)
class PartitionJob:
    raw_uri: str
    partition: Partition
    ruleset: RuleSet
    clean_uri: str
    rejected_uri: str
    partials_uri: str
    seed: int = 0
    reservoir_rows: int = contract.RESERVOIR_ROWS
    profile_rows: int = PROFILE_SAMPLE_ROWS
    threads: int = 1


def _open_raw(job: PartitionJob) -> ds.Dataset:
    fs, root = resolve_filesystem(job.raw_uri)
    where = _join(root, job.partition.path or job.partition.key)
    dataset = ds.dataset(where, filesystem=fs, format="parquet", schema=contract.RAW_SCHEMA)
    for fragment in dataset.get_fragments():
        try:
            physical = fragment.physical_schema
        except (pa.ArrowInvalid, OSError) as err:
            raise UserError(f"{fragment.path}: not a readable Parquet file: {err}") from None
        missing = [c for c in contract.RAW_SCHEMA.names if c not in physical.names]
        if missing:
            raise UserError(
                f"{fragment.path}: missing raw column(s) {missing} (expected contract.RAW_SCHEMA)"
            )
        for name in contract.RAW_SCHEMA.names:
            want, got = contract.RAW_SCHEMA.field(name).type, physical.field(name).type
            if (
                got != want
                and not (pa.types.is_timestamp(got) and pa.types.is_timestamp(want))
                and not pa.types.is_null(got)
            ):
                raise UserError(f"{fragment.path}: column {name} is {got}, expected {want}")
    return dataset


def _write(con, query: str, schema: pa.Schema, uri: str, row_group_rows: int | None = None) -> int:
    """Write a query result to one Parquet file with ``schema``'s columns; return rows written.

    DuckDB's own Parquet writer (streaming, several times faster than fetching Arrow
    batches) writes it; for other URIs (s3://) into a local temporary file that is then
    uploaded, so the remote object appears only once it is complete.
    """
    fs, path = resolve_filesystem(uri)
    cols = ", ".join(
        f"CAST({sql.quote(f.name)} AS {_DUCK_TYPES[f.type]}) AS {sql.quote(f.name)}" for f in schema
    )
    groups = f", ROW_GROUP_SIZE {int(row_group_rows)}" if row_group_rows else ""

    def copy_to(local_path: str) -> int:
        target = local_path.replace("'", "''")
        written = con.execute(
            f"COPY (SELECT {cols} FROM ({query})) TO '{target}' (FORMAT parquet, COMPRESSION snappy{groups})"
        ).fetchone()
        return int(written[0])  # COPY returns the number of rows it wrote

    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        return copy_to(path)
    with tempfile.TemporaryDirectory(prefix="fareflow-quality-") as tmp:
        local = os.path.join(tmp, "part.parquet")
        rows = copy_to(local)
        pafs.copy_files(local, path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
    return rows


_DUCK_TYPES = {
    pa.int8(): "TINYINT",
    pa.int16(): "SMALLINT",
    pa.int32(): "INTEGER",
    pa.int64(): "BIGINT",
    pa.uint64(): "UBIGINT",
    pa.float64(): "DOUBLE",
    pa.string(): "VARCHAR",
    pa.timestamp("s"): "TIMESTAMP",
}


def _sample_key(seed: int) -> str:
    return f"hash({int(seed)}, source_file, source_line)"


def _json_value(value):
    if value is None or isinstance(value, (int, str, bool)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if hasattr(value, "isoformat"):
        return value.isoformat(sep=" ")
    return float(value)


def _profile_items(columns: Sequence[str], numeric: Sequence[str]) -> list[tuple[str, str, str]]:
    """(column, statistic, SQL aggregate) for the per-column profile: nulls, min and max."""
    items = []
    for col in columns:
        q = sql.quote(col)
        items.append((col, "nulls", f"count(*) - count({q})"))
        if col in numeric or col in (contract.PICKUP, *contract.TIMESTAMP_COLUMNS):
            items += [(col, "min", f"min({q})"), (col, "max", f"max({q})")]
    return items


def _histogram_sql(expr: str, spec: tuple[float, float, int]) -> str:
    """Fixed-bin histogram as one aggregate (a MAP bin -> count); NULL and non-finite skipped."""
    low, high, bins = spec
    width = (high - low) / bins
    return (
        f"histogram(CASE WHEN isfinite({expr}) THEN "
        f"least(greatest(CAST(floor((({expr}) - {low}) / {width}) AS BIGINT), 0), {bins - 1}) END)"
    )


def _histogram_counts(value, spec: tuple[float, float, int]) -> list[int]:
    counts = [0] * spec[2]
    for b, n in (value or {}).items():
        counts[int(b)] = int(n)
    return counts


def _aggregate(con, table: str, items: Sequence[tuple[str, str, str]]) -> list:
    """The values of every (column, statistic, SQL aggregate) item, in one pass over ``table``."""
    return list(con.execute(f"SELECT {', '.join(expr for _, _, expr in items)} FROM {table}").fetchone())


def _keyed(items: Sequence[tuple[str, str, str]], values: Sequence) -> dict[tuple[str, str], object]:
    return {(col, stat): value for (col, stat, _), value in zip(items, values, strict=True)}


def _profile_from(agg: dict, columns: Sequence[str], rows: int) -> dict:
    out: dict[str, dict] = {}
    for col in columns:
        entry = out[col] = {"rows": rows}
        for stat in ("nulls", "min", "max"):
            if (col, stat) in agg:
                entry[stat] = _json_value(agg[(col, stat)])
    return out


def _input_sorted(con) -> bool:
    """Whether ``raw_input`` already comes in (source_file, source_line) order (ingest writes
    rows in source order), so the classified table needs no sort to give ordered outputs."""
    import pyarrow.compute as pc

    table = con.sql("SELECT source_file, source_line FROM raw_input").to_arrow_table()
    n = table.num_rows
    if n < 2:
        return True
    files = table.column(contract.SOURCE_FILE).combine_chunks()
    lines = table.column(contract.SOURCE_LINE).combine_chunks()
    if files.null_count or lines.null_count:
        return False
    f0, f1, l0, l1 = files.slice(0, n - 1), files.slice(1), lines.slice(0, n - 1), lines.slice(1)
    if pc.any(pc.less(f1, f0)).as_py():
        return False
    return not pc.any(pc.and_(pc.equal(f1, f0), pc.less(l1, l0))).as_py()


def process_partition(job: PartitionJob) -> dict:
    """Apply the rules to one partition; write clean, rejected and partial statistics.

    Returns the partial statistics (also written as ``partial.json``).

    The raw rows are loaded once into a DuckDB table in (source_file, source_line) order
    (sorted only when the input is not already in that order) and classified in place
    (:func:`sql.classify_statements`); clean and rejected rows are then written in that
    order without another sort, and the statistics take one aggregate pass over the raw
    rows and one over the clean rows.
    """
    import duckdb

    part = job.partition
    dataset = _open_raw(job)
    con = duckdb.connect(config={"threads": max(1, job.threads)})
    try:
        fs, _ = resolve_filesystem(job.raw_uri)
        if isinstance(fs, pafs.LocalFileSystem):  # DuckDB's Parquet reader: faster than an Arrow scan
            files = ", ".join("'" + f.replace("'", "''") + "'" for f in sorted(dataset.files))
            con.execute(f"CREATE TEMP VIEW raw_input AS SELECT * FROM read_parquet([{files}])")
        else:
            con.register("raw_input", dataset)
        try:
            ordered = _input_sorted(con)
            for statement in sql.classify_statements(
                job.ruleset,
                part.year,
                part.month,
                "classified",
                order=not ordered,
                extra={RAW_DISTANCE: sql.RAW_DISTANCE},
            ):
                con.execute(statement)
        except (duckdb.Error, pa.ArrowException) as err:
            raise UserError(
                f"{job.raw_uri}/{part.key}: could not apply the rules: {str(err).splitlines()[0]}"
            ) from None
        key = _sample_key(job.seed)
        con.execute(
            f"CREATE TEMP TABLE clean AS SELECT {sql.clean_projection({'distance_km': RAW_DISTANCE})}, source_file, source_line, {key} AS {SAMPLE_KEY} "
            "FROM classified WHERE rule IS NULL"
        )
        counts = con.execute("SELECT rule, count(*) FROM classified GROUP BY rule").fetchall()
        rows_in = sum(n for _, n in counts)
        by_rule = {r: n for r, n in counts if r is not None}
        rows_clean = _write(
            con,
            f"SELECT {', '.join(CLEAN_FILE_SCHEMA.names)} FROM clean",
            CLEAN_FILE_SCHEMA,
            _join(job.clean_uri, part.key, PART_FILE),
        )
        raw_cols = ", ".join(sql.quote(c) for c in REJECTED_SCHEMA.names)
        rows_rejected = _write(
            con,
            f"SELECT {raw_cols} FROM classified WHERE rule IS NOT NULL",
            REJECTED_SCHEMA,
            _join(job.rejected_uri, part.key, PART_FILE),
        )
        if rows_in != rows_clean + rows_rejected or rows_rejected != sum(by_rule.values()):
            raise RuntimeError(
                f"{part.key}: rows in ({rows_in}) != clean ({rows_clean}) + rejected ({rows_rejected})"
            )

        # clean rows: moments, profile and histograms in one pass
        items = [("", "rows", "count(*)")]
        for col in STAT_COLUMNS:
            q = sql.quote(col)
            items += [
                (col, "count", f"count({q})"),
                (col, "sum", f"fsum({q})"),
                (col, "mean", f"avg({q})"),
                (col, "var", f"var_pop({q})"),
                (col, "min", f"min({q})"),
                (col, "max", f"max({q})"),
            ]
        moment_items = len(items)
        items += _profile_items(contract.CLEAN_SCHEMA.names, CLEAN_NUMERIC)
        items += [(col, "hist", _histogram_sql(sql.quote(col), spec)) for col, spec in HISTOGRAMS.items()]
        values = _aggregate(con, "clean", items)
        moments = {}
        for i, col in enumerate(STAT_COLUMNS):
            n, total, mean, var, lo, hi = values[1 + 6 * i : 7 + 6 * i]
            moments[col] = {
                "count": int(n),
                "sum": float(total or 0.0),
                "mean": float(mean) if n else 0.0,
                "m2": float(var) * n if n else 0.0,
                "min": _json_value(lo),
                "max": _json_value(hi),
            }
        clean_agg = _keyed(items[moment_items:], values[moment_items:])
        clean_profile = _profile_from(clean_agg, contract.CLEAN_SCHEMA.names, values[0])

        # raw rows: profile and histograms in one pass
        raw_columns = [*contract.RAW_SCHEMA.names, RAW_DISTANCE]
        raw_items = [("", "rows", "count(*)"), *_profile_items(raw_columns, [*RAW_NUMERIC, RAW_DISTANCE])]
        raw_items += [
            (col, "hist", _histogram_sql(_HIST_RAW_SQL[col], spec)) for col, spec in HISTOGRAMS.items()
        ]
        raw_agg = _keyed(raw_items, _aggregate(con, "classified", raw_items))
        raw_profile = _profile_from(raw_agg, raw_columns, raw_agg[("", "rows")])
        histograms = {
            col: {
                "raw": _histogram_counts(raw_agg[(col, "hist")], spec),
                "clean": _histogram_counts(clean_agg[(col, "hist")], spec),
            }
            for col, spec in HISTOGRAMS.items()
        }
        partials_dir = _join(job.partials_uri, part.key)
        _write(
            con,
            f"SELECT * FROM clean ORDER BY {SAMPLE_KEY}, source_file, source_line LIMIT {int(job.reservoir_rows)}",
            reservoir_schema(),
            _join(partials_dir, PARTIAL_RESERVOIR),
            SAMPLE_ROW_GROUP,
        )
        _write(
            con,
            f"SELECT {', '.join(sql.quote(c) for c in RAW_NUMERIC)}, {RAW_DISTANCE}, "
            f"source_file, source_line, {SAMPLE_KEY} FROM (SELECT *, {key} AS {SAMPLE_KEY} FROM classified "
            f"ORDER BY {SAMPLE_KEY}, source_file, source_line LIMIT {int(job.profile_rows)})",
            profile_sample_schema(),
            _join(partials_dir, PARTIAL_PROFILE_SAMPLE),
            SAMPLE_ROW_GROUP,
        )
    finally:
        con.close()
    partial = {
        "partition": part.key,
        "year": part.year,
        "month": part.month,
        "rows_in": int(rows_in),
        "rows_clean": int(rows_clean),
        "rows_rejected": int(rows_rejected),
        "rejected_by_rule": {r.name: int(by_rule.get(r.name, 0)) for r in job.ruleset.rules},
        "moments": moments,
        "raw_profile": raw_profile,
        "clean_profile": clean_profile,
        "histograms": histograms,
        "seed": job.seed,
        "reservoir_rows": job.reservoir_rows,
        "profile_rows": job.profile_rows,
        "rules": list(job.ruleset.names),
    }
    _write_text(_join(partials_dir, PARTIAL_FILE), json.dumps(partial, indent=1))
    return partial


def reservoir_schema() -> pa.Schema:
    return pa.schema(
        [
            *contract.CLEAN_SCHEMA,
            contract.RAW_SCHEMA.field(contract.SOURCE_FILE),
            contract.RAW_SCHEMA.field(contract.SOURCE_LINE),
            pa.field(SAMPLE_KEY, pa.uint64()),
        ]
    )


def profile_sample_schema() -> pa.Schema:
    return pa.schema(
        [contract.RAW_SCHEMA.field(c) for c in RAW_NUMERIC]
        + [pa.field(RAW_DISTANCE, pa.float64())]
        + [
            contract.RAW_SCHEMA.field(contract.SOURCE_FILE),
            contract.RAW_SCHEMA.field(contract.SOURCE_LINE),
            pa.field(SAMPLE_KEY, pa.uint64()),
        ]
    )


def _write_text(uri: str, text: str) -> None:
    fs, path = resolve_filesystem(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as out:
        out.write(text.encode())


def _read_text(uri: str) -> str:
    fs, path = resolve_filesystem(uri)
    try:
        with fs.open_input_stream(path) as src:
            return src.read().decode()
    except FileNotFoundError:
        raise UserError(f"{uri}: not found") from None


# --- merge --------------------------------------------------------------------------


def merge_moments(parts: Iterable[dict]) -> dict:
    """Chan et al.'s pairwise update: exact counts/sums/min/max, stable mean and M2."""
    n, total, mean, m2, lo, hi = 0, [], 0.0, 0.0, None, None
    for p in parts:
        nb = p["count"]
        if nb == 0:
            continue
        delta = p["mean"] - mean
        combined = n + nb
        mean += delta * nb / combined
        m2 += p["m2"] + delta * delta * n * nb / combined
        n = combined
        total.append(p["sum"])
        lo = p["min"] if lo is None else min(lo, p["min"])
        hi = p["max"] if hi is None else max(hi, p["max"])
    return {
        "count": n,
        "sum": math.fsum(total),
        "mean": mean if n else None,
        "std": math.sqrt(m2 / n) if n else None,
        "min": lo,
        "max": hi,
    }


def merge_profiles(parts: Sequence[dict]) -> dict:
    out: dict[str, dict] = {}
    for profile in parts:
        for col, stats in profile.items():
            acc = out.setdefault(col, {"rows": 0, "nulls": 0})
            acc["rows"] += stats["rows"]
            acc["nulls"] += stats["nulls"]
            for stat, pick in (("min", min), ("max", max)):
                if stat in stats and stats[stat] is not None:
                    acc[stat] = stats[stat] if acc.get(stat) is None else pick(acc[stat], stats[stat])
                elif stat in stats:
                    acc.setdefault(stat, None)
    return out


def bottom_k(tables: Iterable[pa.Table], k: int) -> pa.Table | None:
    """Merge bottom-k samples: the k smallest (key, source_file, source_line) of the union.

    Streaming (at most 2k rows held), and exact: the bottom-k of a union is the bottom-k of
    the union of each part's bottom-k, in any order.
    """
    keep: pa.Table | None = None
    order = [
        (SAMPLE_KEY, "ascending"),
        (contract.SOURCE_FILE, "ascending"),
        (contract.SOURCE_LINE, "ascending"),
    ]
    for table in tables:
        keep = table if keep is None else pa.concat_tables([keep, table])
        keep = keep.sort_by(order).slice(0, k)
    return keep


def bottom_k_files(uris: Sequence[str], k: int, schema: pa.Schema) -> pa.Table | None:
    """:func:`bottom_k` over per-partition sample files, reading only what can be in it.

    Pass 1 reads just the key column of each file and keeps the k smallest keys (a numpy
    partition), giving T, the k-th smallest key overall. Every row of the bottom-k has a key
    <= T (rows with key == T are then ordered by source_file, source_line), so pass 2 reads
    only the row groups whose minimum key is <= T (the files are written in key order with
    small row groups, so that is a prefix) and keeps rows with key <= T. The result is exactly
    ``bottom_k`` of the whole files; at most k keys plus one file are held at a time.
    """
    import numpy as np
    import pyarrow.compute as pc

    if not uris:
        return None
    smallest = np.empty(0, dtype=np.uint64)
    for uri in uris:
        fs, path = resolve_filesystem(uri)
        keys = pq.read_table(path, filesystem=fs, columns=[SAMPLE_KEY]).column(0)
        smallest = np.concatenate([smallest, keys.to_numpy().astype(np.uint64, copy=False)])
        if smallest.size > k:
            smallest = np.partition(smallest, k - 1)[:k]
    threshold = int(smallest.max()) if smallest.size else 0
    parts = []
    for uri in uris:
        fs, path = resolve_filesystem(uri)
        pf = pq.ParquetFile(fs.open_input_file(path))
        col = pf.schema_arrow.get_field_index(SAMPLE_KEY)
        groups = []
        for i in range(pf.metadata.num_row_groups):
            stats = pf.metadata.row_group(i).column(col).statistics
            if stats is None or not stats.has_min_max or int(stats.min) <= threshold:
                groups.append(i)
        if not groups:
            continue
        table = pf.read_row_groups(groups)
        table = table.filter(pc.less_equal(table.column(SAMPLE_KEY), pa.scalar(threshold, pa.uint64())))
        parts.append(table.select(schema.names).cast(schema))
    order = [
        (SAMPLE_KEY, "ascending"),
        (contract.SOURCE_FILE, "ascending"),
        (contract.SOURCE_LINE, "ascending"),
    ]
    table = pa.concat_tables(parts) if parts else schema.empty_table()
    return table.sort_by(order).slice(0, k)


def _read_parquet(uri: str, schema: pa.Schema | None = None) -> pa.Table:
    """One Parquet file, cast to ``schema`` when given (nullability and units as in the contract)."""
    fs, path = resolve_filesystem(uri)
    table = pq.read_table(path, filesystem=fs)
    return table.select(schema.names).cast(schema) if schema is not None else table


@dataclass
class QualityResult:
    summary: dict  # the CLI's --summary-json content
    stats: dict  # population stats.json content
    partials: list[dict]
    raw_profile: dict
    clean_profile: dict
    histograms: dict
    reservoir: pa.Table  # CLEAN_SCHEMA rows (uniform sample of the clean rows)
    violations: list[dict]
    ruleset: RuleSet

    @property
    def gate_passed(self) -> bool:
        return not self.violations

    def gate_message(self) -> str:
        parts = [
            f"{v['rule']} rejected {v['observed_pct']:.2f}% of rows (allowed {v['allowed_pct']:.2f}%)"
            for v in self.violations
        ]
        return f"quality gate failed: {'; '.join(parts)}"

    def check_gate(self) -> None:
        if self.violations:
            raise GateFailed(self.gate_message())


def evaluate_gate(ruleset: RuleSet, rows_in: int, by_rule: dict[str, int]) -> list[dict]:
    """Every threshold exceeded: [{"rule", "observed_pct", "allowed_pct", "rows"}]."""
    violations = []
    pct = (lambda n: 100.0 * n / rows_in) if rows_in else (lambda n: 0.0)
    for rule in ruleset.rules:
        n = by_rule.get(rule.name, 0)
        if rule.max_reject_pct is not None and pct(n) > rule.max_reject_pct:
            violations.append(
                {"rule": rule.name, "observed_pct": pct(n), "allowed_pct": rule.max_reject_pct, "rows": n}
            )
    total = sum(by_rule.values())
    if ruleset.max_total_reject_pct is not None and pct(total) > ruleset.max_total_reject_pct:
        violations.append(
            {
                "rule": "total",
                "observed_pct": pct(total),
                "allowed_pct": ruleset.max_total_reject_pct,
                "rows": total,
            }
        )
    return violations


def quantiles(table: pa.Table | None, columns: Sequence[str]) -> dict[str, dict[str, float | None]]:
    import numpy as np

    out: dict[str, dict[str, float | None]] = {}
    for col in columns:
        if table is None or col not in table.column_names:
            out[col] = dict.fromkeys(f"p{round(q * 100)}" for q in QUANTILES)
            continue
        values = table.column(col).drop_null().to_numpy(zero_copy_only=False).astype("float64")
        values = values[np.isfinite(values)]
        found = np.quantile(values, QUANTILES) if values.size else [None] * len(QUANTILES)
        out[col] = {
            f"p{round(q * 100)}": (None if v is None else float(v))
            for q, v in zip(QUANTILES, found, strict=True)
        }
    return out


def merge(
    partials_uris: Sequence[str],
    ruleset: RuleSet,
    stats_uri: str | None = None,
) -> QualityResult:
    """Combine per-partition partial statistics (in partition order) into the population view.

    ``partials_uris``: directories holding ``partial.json`` + samples, either one per
    partition or data-set roots containing ``year=/month=`` sub-directories.
    Writes ``stats.json`` and ``reservoir.parquet`` under ``stats_uri`` when given.
    """
    dirs: list[str] = []
    for uri in partials_uris:
        fs, root = resolve_filesystem(uri)
        if fs.get_file_info(_join(root, PARTIAL_FILE)).type == pafs.FileType.File:
            dirs.append(uri)
            continue
        found = [
            e.path[len(root) :].strip("/").rsplit("/", 1)[0]
            for e in fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
            if e.type == pafs.FileType.File and e.base_name == PARTIAL_FILE
        ]
        if not found:
            raise UserError(f"{uri}: no {PARTIAL_FILE} found (expected quality partition outputs)")
        dirs += [_join(uri, rel) for rel in found]
    loaded = [(json.loads(_read_text(_join(d, PARTIAL_FILE))), d) for d in dirs]
    loaded.sort(key=lambda item: (item[0]["year"], item[0]["month"]))
    keys = [p["partition"] for p, _ in loaded]
    if len(set(keys)) != len(keys):
        raise UserError(f"partition results overlap: {sorted(k for k in set(keys) if keys.count(k) > 1)}")
    names = list(ruleset.names)
    for p, d in loaded:
        if p["rules"] != names:
            raise UserError(f"{d}: processed with rules {p['rules']}, merging with {names}")
    partials = [p for p, _ in loaded]
    if not partials:
        raise UserError("no partitions to merge")
    seed, k = partials[0]["seed"], partials[0]["reservoir_rows"]
    if any(p["seed"] != seed or p["reservoir_rows"] != k for p in partials):
        raise UserError("partition results were made with different seeds or reservoir sizes")

    rows_in = sum(p["rows_in"] for p in partials)
    rows_clean = sum(p["rows_clean"] for p in partials)
    by_rule = {name: sum(p["rejected_by_rule"][name] for p in partials) for name in names}
    rows_rejected = sum(by_rule.values())
    invariant_ok = rows_in == rows_clean + rows_rejected and all(
        p["rows_in"] == p["rows_clean"] + sum(p["rejected_by_rule"].values()) for p in partials
    )
    if not invariant_ok:
        raise RuntimeError(f"rows in ({rows_in}) != clean ({rows_clean}) + rejected ({rows_rejected})")
    if rows_in == 0:
        raise UserError("input unusable: the partitions hold no rows")

    columns = {col: merge_moments(p["moments"][col] for p in partials) for col in STAT_COLUMNS}
    raw_profile = merge_profiles([p["raw_profile"] for p in partials])
    clean_profile = merge_profiles([p["clean_profile"] for p in partials])
    histograms = {
        col: {
            kind: [sum(v) for v in zip(*(p["histograms"][col][kind] for p in partials), strict=True)]
            for kind in ("raw", "clean")
        }
        for col in HISTOGRAMS
    }
    res_schema, prof_schema = reservoir_schema(), profile_sample_schema()
    reservoir = bottom_k_files([_join(d, PARTIAL_RESERVOIR) for _, d in loaded], k, res_schema)
    profile_sample = bottom_k_files(
        [_join(d, PARTIAL_PROFILE_SAMPLE) for _, d in loaded], partials[0]["profile_rows"], prof_schema
    )
    raw_q = quantiles(profile_sample, [*RAW_NUMERIC, RAW_DISTANCE])
    clean_q = quantiles(reservoir, CLEAN_NUMERIC)
    for col, q in raw_q.items():
        raw_profile[col]["quantiles"] = q
    for col, q in clean_q.items():
        clean_profile[col]["quantiles"] = q
    reservoir = reservoir.select(contract.CLEAN_SCHEMA.names).cast(contract.CLEAN_SCHEMA)

    stats = {
        "rows": rows_clean,
        "columns": {
            col: {key: columns[col][key] for key in ("count", "mean", "std", "min", "max")}
            for col in STAT_COLUMNS
        },
        "std_ddof": 0,
        "reservoir_rows": reservoir.num_rows,
        "seed": seed,
    }
    violations = evaluate_gate(ruleset, rows_in, by_rule)
    pct = {name: (100.0 * n / rows_in) for name, n in by_rule.items()}
    summary = {
        "rows_in": rows_in,
        "rows_clean": rows_clean,
        "rows_rejected": rows_rejected,
        "rejected_by_rule": by_rule,
        "rejected_pct_by_rule": pct,
        "rejected_pct": 100.0 * rows_rejected / rows_in,
        "invariant_ok": invariant_ok,
        "partitions": keys,
        "gate_passed": not violations,
        "gate_violations": violations,
        "thresholds": {r.name: r.max_reject_pct for r in ruleset.rules}
        | {"total": ruleset.max_total_reject_pct},
    }
    if stats_uri is not None:
        _write_text(_join(stats_uri, contract.POPULATION_STATS_FILE), json.dumps(stats, indent=1))
        fs, path = resolve_filesystem(_join(stats_uri, contract.POPULATION_RESERVOIR_FILE))
        pq.write_table(reservoir, path, filesystem=fs, compression="zstd")
    return QualityResult(
        summary=summary,
        stats=stats,
        partials=partials,
        raw_profile=raw_profile,
        clean_profile=clean_profile,
        histograms=histograms,
        reservoir=reservoir,
        violations=violations,
        ruleset=ruleset,
    )


# --- whole data set ---------------------------------------------------------------


@dataclass
class QualityConfig:
    input: str
    output: str  # clean data set
    rejected: str | None = None  # default: <output>_rejected
    stats: str | None = None  # population statistics directory; default: <output>_stats
    partials: str | None = None  # per-partition statistics; default: <stats>/partitions
    ruleset: RuleSet | None = None  # default: the shipped rules
    workers: int = 0  # processes; 0 = one per CPU core
    seed: int = 0
    reservoir_rows: int = contract.RESERVOIR_ROWS
    overwrite: bool = False

    def resolved(self) -> QualityConfig:
        rejected = self.rejected or self.output.rstrip("/") + "_rejected"
        stats = self.stats or self.output.rstrip("/") + "_stats"
        return QualityConfig(
            **{
                **asdict(self),
                "ruleset": self.ruleset or load_rules(),
                "rejected": rejected,
                "stats": stats,
                "partials": self.partials or _join(stats, "partitions"),
                "workers": self.workers or os.cpu_count() or 1,
            }
        )


def _is_quality_output(fs: pafs.FileSystem, path: str) -> bool:
    """Whether the directory carries the marker of a quality run (finished or not)."""
    marker = _join(path, QUALITY_MARKER)
    if fs.get_file_info(marker).type != pafs.FileType.File:
        return False
    try:
        with fs.open_input_stream(marker) as src:
            return json.loads(src.read().decode()).get("step") == "quality"
    except (OSError, ValueError, AttributeError):
        return False


def write_marker(uri: str, role: str, complete: bool) -> None:
    """``<uri>/_fareflow_quality.json``: written (``complete`` false) when the directory is
    prepared, rewritten (``complete`` true) once the step has written all of it."""
    _write_text(
        _join(uri, QUALITY_MARKER), json.dumps({"step": "quality", "role": role, "complete": complete})
    )


def prepare_output(uri: str, overwrite: bool, role: str = "output") -> None:
    """Refuse to mix with an earlier run's files. With ``overwrite``, empty the directory,
    but only when it carries the quality marker (an earlier quality output): anything else
    is refused, so a wrong location cannot wipe unrelated data. Marks it as being written."""
    fs, path = resolve_filesystem(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.File:
        raise UserError(f"{uri}: exists and is a file; expected a directory")
    if info.type == pafs.FileType.Directory and fs.get_file_info(pafs.FileSelector(path)):
        if not overwrite:
            raise UserError(f"{uri}: output directory is not empty (pass --overwrite to replace it)")
        if not _is_quality_output(fs, path):
            raise UserError(
                f"{uri}: not empty and not a previous quality output (no {QUALITY_MARKER}); "
                "refusing to delete it with --overwrite: give a new or empty directory"
            )
        fs.delete_dir_contents(path)
    fs.create_dir(path, recursive=True)
    write_marker(uri, role, complete=False)


def _location(uri: str) -> tuple[str, str]:
    fs, path = resolve_filesystem(uri)
    if isinstance(fs, pafs.LocalFileSystem):
        return "local", os.path.realpath(path).rstrip("/")
    return type(fs).__name__, path.rstrip("/")


def _within(inner: tuple[str, str], outer: tuple[str, str]) -> bool:
    return inner[0] == outer[0] and (inner[1] == outer[1] or inner[1].startswith(outer[1] + "/"))


def check_locations(input_uri: str, outputs: dict[str, str]) -> None:
    """Refuse an input inside an output (or the reverse) and outputs nested in each other:
    preparing one output (``--overwrite`` empties it) must never touch another or the input."""
    source = _location(input_uri)
    places = {name: _location(uri) for name, uri in outputs.items()}
    for name, place in places.items():
        if _within(source, place):
            raise UserError(
                f"input {input_uri} is inside the {name} location {outputs[name]}; give separate locations"
            )
        if _within(place, source):
            raise UserError(
                f"{name} location {outputs[name]} is inside the input {input_uri}; give separate locations"
            )
    names = list(places)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if _within(places[a], places[b]) or _within(places[b], places[a]):
                raise UserError(
                    f"{a} location {outputs[a]} and {b} location {outputs[b]} overlap (one is inside the other)"
                )


def jobs_for(cfg: QualityConfig, partitions: Sequence[Partition], threads: int = 1) -> list[PartitionJob]:
    return [
        PartitionJob(
            raw_uri=cfg.input,
            partition=p,
            ruleset=cfg.ruleset,
            clean_uri=cfg.output,
            rejected_uri=cfg.rejected,
            partials_uri=cfg.partials,
            seed=cfg.seed,
            reservoir_rows=cfg.reservoir_rows,
            threads=threads,
        )
        for p in partitions
    ]


def run_partitions(jobs: Sequence[PartitionJob], workers: int) -> list[dict]:
    """Process partitions, in a pool of ``workers`` processes when there is more than one job."""
    if workers <= 1 or len(jobs) <= 1:
        return [process_partition(j) for j in jobs]
    # fork: workers need no re-import of __main__ (which spawn requires, and which fails for
    # stdin scripts and unguarded user scripts); the parent holds no DuckDB threads (the rule
    # check closes its connection) and Arrow resets its thread pools after a fork.
    methods = get_all_start_methods()
    with ProcessPoolExecutor(
        max_workers=min(workers, len(jobs)), mp_context=get_context("fork" if "fork" in methods else "spawn")
    ) as pool:
        return list(pool.map(process_partition, jobs))


def run_quality(config: QualityConfig) -> QualityResult:
    """Plan, process every partition (in parallel), merge. Does not raise on a failed gate:
    call ``result.check_gate()`` after writing reports."""
    cfg = config.resolved()
    outputs = {"output": cfg.output, "rejected": cfg.rejected, "stats": cfg.stats}
    if not _within(_location(cfg.partials), _location(cfg.stats)):
        outputs["partials"] = cfg.partials
    check_locations(cfg.input, outputs)
    partitions = plan_partitions(cfg.input)
    for role in ("output", "rejected", "stats"):
        prepare_output(outputs[role], cfg.overwrite, role)
    workers = min(cfg.workers, len(partitions))
    threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    run_partitions(jobs_for(cfg, partitions, threads), workers)
    result = merge([cfg.partials], cfg.ruleset, cfg.stats)
    for role in ("output", "rejected", "stats"):
        write_marker(outputs[role], role, complete=True)
    return result


# --- fan-out helpers (cluster pipeline tasks) ---------------------------------------


def process_partition_to(
    raw_uri: str,
    partition_key: str,
    ruleset: RuleSet,
    out_uri: str,
    *,
    seed: int = 0,
    reservoir_rows: int = contract.RESERVOIR_ROWS,
    threads: int = 0,
) -> dict:
    """One fan-out task: write ``out/clean``, ``out/rejected`` and ``out/partials`` for one partition."""
    partition = find_partition(raw_uri, partition_key)
    job = PartitionJob(
        raw_uri=raw_uri,
        partition=partition,
        ruleset=ruleset,
        clean_uri=_join(out_uri, "clean"),
        rejected_uri=_join(out_uri, "rejected"),
        partials_uri=_join(out_uri, "partials"),
        seed=seed,
        reservoir_rows=reservoir_rows,
        threads=threads or os.cpu_count() or 1,
    )
    return process_partition(job)


def merge_partition_outputs(
    part_uris: Sequence[str], ruleset: RuleSet, clean_uri: str, rejected_uri: str, stats_uri: str
) -> QualityResult:
    """The merge task: gather the fan-out outputs into one clean/rejected data set + statistics."""
    outputs = {"output": clean_uri, "rejected": rejected_uri, "stats": stats_uri}
    for role, uri in outputs.items():
        prepare_output(uri, overwrite=False, role=role)
    for uri in part_uris:
        for sub, dest in (
            ("clean", clean_uri),
            ("rejected", rejected_uri),
            ("partials", _join(stats_uri, "partitions")),
        ):
            src_fs, src = resolve_filesystem(_join(uri, sub))
            dst_fs, dst = resolve_filesystem(dest)
            for entry in src_fs.get_file_info(pafs.FileSelector(src, recursive=True)):
                if entry.type != pafs.FileType.File:
                    continue
                rel = entry.path[len(src) :].strip("/")
                target = _join(dst, rel)
                if dst_fs.get_file_info(target).type != pafs.FileType.NotFound:
                    raise UserError(f"{uri}: {sub}/{rel} was produced by more than one partition task")
                dst_fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
                pafs.copy_files(entry.path, target, source_filesystem=src_fs, destination_filesystem=dst_fs)
    result = merge([_join(stats_uri, "partitions")], ruleset, stats_uri)
    for role, uri in outputs.items():
        write_marker(uri, role, complete=True)
    return result


# --- readers for downstream steps -----------------------------------------------------


def clean_dataset(uri: str) -> ds.Dataset:
    """The clean data set with contract.CLEAN_SCHEMA types (year/month from the paths)."""
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
    stats = json.loads(_read_text(_join(stats_uri, contract.POPULATION_STATS_FILE)))
    # Parquet has no seconds unit: timestamps come back as ms, so cast to the contract's types.
    return stats, _read_parquet(_join(stats_uri, contract.POPULATION_RESERVOIR_FILE), contract.CLEAN_SCHEMA)
