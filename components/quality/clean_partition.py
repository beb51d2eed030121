"""One partition: classify its rows with the rule SQL, write clean/rejected rows and the
mergeable partial statistics (docs/quality.md)."""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs

from components.common import contract, scratch
from components.common.errors import UserError
from components.common.storage import resolve_filesystem

from . import sql
from .layout import (
    _HIST_RAW_SQL,
    CLEAN_FILE_SCHEMA,
    CLEAN_NUMERIC,
    HISTOGRAMS,
    PART_FILE,
    PARTIAL_FILE,
    PARTIAL_PROFILE_SAMPLE,
    PARTIAL_RESERVOIR,
    PROFILE_SAMPLE_ROWS,
    RAW_DISTANCE,
    RAW_NUMERIC,
    REJECTED_SCHEMA,
    SAMPLE_KEY,
    SAMPLE_ROW_GROUP,
    STAT_COLUMNS,
    join_uri,
    write_text,
)
from .partitions import Partition
from .rules import RuleSet


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
    memory_mb: int = 0  # DuckDB's memory limit (it spills to a temporary directory past it); 0: its default
    # Keep in the reservoir partial only clean rows whose sample key is <= this bound (None:
    # no bound). ``core.run`` sets it from the whole input's row count so that the partials
    # together still hold the merged bottom-k (the merge checks it: ``merge.SampleIncomplete``).
    reservoir_bound: int | None = None
    profile_bound: int | None = None  # the same for the raw profile sample


KEY_MAX = 2**64 - 1  # the sample key is a uint64 hash
# scratch directories (components.common.scratch): a file for an upload; DuckDB's spill
UPLOAD_SCRATCH = "fareflow-quality-part"
SPILL_SCRATCH = "fareflow-quality-spill"


def key_bound(expected: float, rows: int) -> int | None:
    """A sample-key bound under which about ``expected`` of ``rows`` uniformly hashed keys fall
    (None: no bound, when that is all of them)."""
    if rows <= 0 or expected >= rows:
        return None
    return int(KEY_MAX * (expected / rows))


def raw_file_infos(job: PartitionJob) -> tuple[pafs.FileSystem, list[pafs.FileInfo]]:
    """The partition's Parquet files as a dataset discovers them (recursively, skipping names
    starting with ``.`` or ``_``), in path order, with their sizes: one listing."""
    fs, root = resolve_filesystem(job.raw_uri)
    where = join_uri(root, job.partition.path or job.partition.key)
    infos = sorted(
        (
            entry
            for entry in fs.get_file_info(pafs.FileSelector(where, recursive=True))
            if entry.type == pafs.FileType.File
            and not any(
                part.startswith((".", "_")) for part in entry.path[len(where) :].strip("/").split("/")
            )
        ),
        key=lambda entry: entry.path,
    )
    return fs, infos


def _raw_files(job: PartitionJob) -> tuple[pafs.FileSystem, list[str], list]:
    """The partition's Parquet files (:func:`raw_file_infos`), each checked against
    ``contract.RAW_SCHEMA``, and their footers (``pyarrow.parquet.FileMetaData``)."""
    import pyarrow.parquet as pq

    fs, infos = raw_file_infos(job)
    files = [entry.path for entry in infos]
    footers = []
    for path in files:
        try:
            with fs.open_input_file(path) as f:
                parquet = pq.ParquetFile(f)
                physical, footer = parquet.schema_arrow, parquet.metadata
        except (pa.ArrowInvalid, OSError) as err:
            raise UserError(f"{path}: not a readable Parquet file: {err}") from None
        missing = [c for c in contract.RAW_SCHEMA.names if c not in physical.names]
        if missing:
            raise UserError(f"{path}: missing raw column(s) {missing} (expected contract.RAW_SCHEMA)")
        for name in contract.RAW_SCHEMA.names:
            want, got = contract.RAW_SCHEMA.field(name).type, physical.field(name).type
            if (
                got != want
                and not (pa.types.is_timestamp(got) and pa.types.is_timestamp(want))
                and not pa.types.is_null(got)
            ):
                raise UserError(f"{path}: column {name} is {got}, expected {want}")
        footers.append(footer)
    return fs, files, footers


def _footer_value(value, kind: type):
    """A Parquet statistic as the aggregate gives it, or None when it cannot stand for it
    (another type, a time zone, NaN). A float zero is +0.0: the statistics write a minimum
    of 0 as -0.0 and a maximum as +0.0, whatever sign the values had."""
    import datetime

    if kind is float:
        return value + 0.0 if type(value) is float and not math.isnan(value) else None
    if kind is datetime.datetime:
        return value if type(value) is datetime.datetime and value.tzinfo is None else None
    return value if type(value) is int else None


def footer_profile(footers: Sequence, wanted: Iterable[tuple[str, str]]) -> dict:
    """Those of the ``wanted`` (column, "nulls" | "min" | "max") profile values (the keys of
    :func:`_profile_items`) that the files' Parquet statistics give exactly, without reading
    a row: the same as the aggregates over the rows (min and max leave NaN out, as
    :func:`_nan_free_max` does). A value that any row group's statistics lack (ingest writes
    none for strings; another writer may write none at all) is left out, for the aggregate
    to compute."""
    import datetime

    wanted = set(wanted)
    known: dict[tuple[str, str], object] = {}
    for col in sorted({c for c, _ in wanted if c in contract.RAW_SCHEMA.names}):
        field_type = contract.RAW_SCHEMA.field(col).type
        kind = (
            float
            if pa.types.is_floating(field_type)
            else (datetime.datetime if pa.types.is_timestamp(field_type) else int)
        )
        nulls, bounds = 0, []
        exact_nulls, exact_bounds = True, (col, "min") in wanted or (col, "max") in wanted
        for footer in footers:
            names = footer.schema.names
            if col not in names:
                exact_nulls = exact_bounds = False
                break
            index = names.index(col)
            for g in range(footer.num_row_groups):
                group = footer.row_group(g)
                stats = group.column(index).statistics
                if stats is None or not stats.has_null_count:
                    exact_nulls = exact_bounds = False
                    break
                nulls += stats.null_count
                if not exact_bounds or stats.null_count == group.num_rows:  # no value to bound
                    continue
                low, high = (
                    (_footer_value(stats.min, kind), _footer_value(stats.max, kind))
                    if stats.has_min_max
                    else (None, None)
                )
                if low is None or high is None:
                    exact_bounds = False
                else:
                    bounds.append((low, high))
            if not exact_nulls:
                break
        found = {"nulls": nulls} if exact_nulls else {}
        if exact_bounds:
            found["min"] = min((b[0] for b in bounds), default=None)
            found["max"] = max((b[1] for b in bounds), default=None)
        known.update({(col, stat): value for stat, value in found.items() if (col, stat) in wanted})
    return known


def _write(con, query: str, schema: pa.Schema, uri: str, row_group_rows: int | None = None) -> int:
    """Write a query result to one Parquet file with ``schema``'s columns; return rows written.

    DuckDB's own Parquet writer (streaming, several times faster than fetching Arrow
    batches) writes it; for other URIs (s3://) into a local temporary file that is then
    uploaded, so the remote object appears only once it is complete.
    """
    fs, path = resolve_filesystem(uri)
    cols = ", ".join(
        f"CAST({sql.quote(f.name)} AS {sql.DUCK_TYPES[f.type]}) AS {sql.quote(f.name)}" for f in schema
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
    with scratch.scratch_dir(UPLOAD_SCRATCH) as tmp:
        local = os.path.join(tmp, "part.parquet")
        rows = copy_to(local)
        pafs.copy_files(local, path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
    return rows


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


def _nan_free_max(con, table: str, agg: dict) -> dict:
    """``agg`` with every profile maximum that came back NaN taken again over the values that
    are not NaN: DuckDB orders NaN above every number (its ``min`` skips NaN unless all values
    are NaN, its ``max`` does not), and Parquet statistics (:func:`footer_profile`) leave NaN
    out, so either way a profile's min and max are those of the numbers. A second pass runs
    only for a column that holds NaN."""
    redo = [
        key
        for key, value in agg.items()
        if key[1] == "max" and isinstance(value, float) and math.isnan(value)
    ]
    if not redo:
        return agg
    exprs = [f"max({sql.quote(col)}) FILTER (WHERE NOT isnan({sql.quote(col)}))" for col, _ in redo]
    values = con.execute(f"SELECT {', '.join(exprs)} FROM {table}").fetchone()
    return agg | dict(zip(redo, values, strict=True))


def _profile_from(agg: dict, columns: Sequence[str], rows: int) -> dict:
    out: dict[str, dict] = {}
    for col in columns:
        entry = out[col] = {"rows": rows}
        for stat in ("nulls", "min", "max"):
            if (col, stat) in agg:
                entry[stat] = _json_value(agg[(col, stat)])
    return out


# Pool workers (``keep_database`` is their initializer) keep one DuckDB database per process
# and settings, its start being ~10 ms of each partition, and run each partition on a cursor
# of it: a cursor's temporary tables and views go with it. Anywhere else (a parent process
# that forks later must hold no DuckDB threads) each partition has a database of its own.
_KEEP_DATABASE = False
_DATABASES: dict[tuple, object] = {}


def keep_database() -> None:
    global _KEEP_DATABASE
    _KEEP_DATABASE = True


def _connection(job: PartitionJob):
    """A DuckDB connection for ``job`` and the function that releases it."""
    import duckdb

    config: dict = {"threads": max(1, job.threads)}
    if job.memory_mb:
        config["memory_limit"] = f"{int(job.memory_mb)}MB"
    key = tuple(sorted(config.items()))

    def new_database():
        spill = None
        if job.memory_mb:
            # Past the limit DuckDB spills its temporary tables to disk (default: ./.tmp, which
            # may be read-only in a container): give it a directory of its own, removed with it
            # (and, should the worker be killed, by the next one to make one: scratch.make).
            spill = scratch.make(SPILL_SCRATCH)
        db = duckdb.connect(config=config | ({"temp_directory": spill} if spill else {}))

        def close() -> None:
            db.close()
            if spill is not None:
                shutil.rmtree(spill, ignore_errors=True)

        return db, close

    if not _KEEP_DATABASE:
        return new_database()
    if key not in _DATABASES:
        from multiprocessing import util

        db, close = new_database()
        _DATABASES[key] = db
        util.Finalize(None, close, exitpriority=10)  # when the worker process exits
    cursor = _DATABASES[key].cursor()
    return cursor, cursor.close


def _input_sorted(con) -> bool:
    """Whether ``raw_input`` already comes in (source_file, source_line) order (ingest writes
    rows in source order), so the classified table needs no sort to give ordered outputs."""
    table = con.sql("SELECT source_file, source_line FROM raw_input").to_arrow_table()
    if table.num_rows < 2:
        return True
    files = table.column(contract.SOURCE_FILE).combine_chunks()
    lines = table.column(contract.SOURCE_LINE).combine_chunks()
    if files.null_count or lines.null_count:
        return False
    sorted_ = _sorted_numpy(files, lines)
    return _sorted_arrow(files, lines) if sorted_ is None else sorted_


# At most this many changes of source file between neighbouring rows are compared one by one.
_FILE_CHANGES_CHECKED = 1024


def _sorted_numpy(files: pa.Array, lines: pa.Array) -> bool | None:
    """The order check over the Arrow buffers (numpy: a worker then never imports
    ``pyarrow.compute``, ~50 ms of its start). None where it does not apply: names of
    different lengths side by side or too many changes of file (then :func:`_sorted_arrow`)."""
    import numpy as np

    if files.type != pa.string() or lines.type != pa.int64():
        return None
    n = len(files)
    offsets = np.frombuffer(files.buffers()[1], np.int32, count=n + 1, offset=files.offset * 4)
    lengths = np.diff(offsets)
    if (lengths != lengths[0]).any():
        return None
    width = int(lengths[0])
    data = files.buffers()[2]
    names = (
        np.frombuffer(data, np.uint8, count=n * width, offset=int(offsets[0])).reshape(n, width)
        if width
        else np.zeros((n, 0), np.uint8)
    )
    changed = (names[1:] != names[:-1]).any(axis=1)  # row i + 1 names another file than row i
    at = np.flatnonzero(changed)
    if len(at) > _FILE_CHANGES_CHECKED:
        return None
    for i in at:
        if names[i + 1].tobytes() < names[i].tobytes():  # bytes order, as the sort's
            return False
    values = np.frombuffer(lines.buffers()[1], np.int64, count=n, offset=lines.offset * 8)
    return not ((values[1:] < values[:-1]) & ~changed).any()


def _sorted_arrow(files: pa.Array, lines: pa.Array) -> bool:
    import pyarrow.compute as pc

    n = len(files)
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
    fs, raw_files, footers = _raw_files(job)
    con, release = _connection(job)
    try:
        if isinstance(fs, pafs.LocalFileSystem):  # DuckDB's Parquet reader: faster than an Arrow scan
            files = ", ".join("'" + f.replace("'", "''") + "'" for f in raw_files)
            con.execute(
                f"CREATE TEMP VIEW raw_input AS SELECT * FROM read_parquet([{files}], hive_partitioning = false)"
            )
        else:  # pyarrow.dataset (imported only here: it imports pandas) reads other stores
            import pyarrow.dataset as ds

            con.register(
                "raw_input",
                ds.dataset(raw_files, filesystem=fs, format="parquet", schema=contract.RAW_SCHEMA),
            )
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
        # raw rows: the rows of each rule, histograms and the profile values the footers do
        # not give (footer_profile), in one pass
        raw_columns = [*contract.RAW_SCHEMA.names, RAW_DISTANCE]
        profile_items = _profile_items(raw_columns, [*RAW_NUMERIC, RAW_DISTANCE])
        footer_known = footer_profile(footers, [(col, stat) for col, stat, _ in profile_items])
        raw_items = [
            ("", "rows", "count(*)"),
            ("", "by_rule", "histogram(rule)"),  # NULL (clean) is not counted
            *(item for item in profile_items if (item[0], item[1]) not in footer_known),
        ]
        raw_items += [
            (col, "hist", _histogram_sql(_HIST_RAW_SQL[col], spec)) for col, spec in HISTOGRAMS.items()
        ]
        raw_agg = footer_known | _nan_free_max(
            con, "classified", _keyed(raw_items, _aggregate(con, "classified", raw_items))
        )
        raw_profile = _profile_from(raw_agg, raw_columns, raw_agg[("", "rows")])
        rows_in = int(raw_agg[("", "rows")])
        by_rule = {str(r): int(n) for r, n in (raw_agg[("", "by_rule")] or {}).items()}
        rows_clean = _write(
            con,
            f"SELECT {', '.join(CLEAN_FILE_SCHEMA.names)} FROM clean",
            CLEAN_FILE_SCHEMA,
            join_uri(job.clean_uri, part.key, PART_FILE),
        )
        raw_cols = ", ".join(sql.quote(c) for c in REJECTED_SCHEMA.names)
        rows_rejected = _write(
            con,
            f"SELECT {raw_cols} FROM classified WHERE rule IS NOT NULL",
            REJECTED_SCHEMA,
            join_uri(job.rejected_uri, part.key, PART_FILE),
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
        clean_agg = _nan_free_max(con, "clean", _keyed(items[moment_items:], values[moment_items:]))
        clean_profile = _profile_from(clean_agg, contract.CLEAN_SCHEMA.names, values[0])

        histograms = {
            col: {
                "raw": _histogram_counts(raw_agg[(col, "hist")], spec),
                "clean": _histogram_counts(clean_agg[(col, "hist")], spec),
            }
            for col, spec in HISTOGRAMS.items()
        }
        partials_dir = join_uri(job.partials_uri, part.key)
        reservoir_kept = _write_bottom_k(
            con,
            "SELECT *",
            "clean",
            SAMPLE_KEY,
            int(job.reservoir_rows),
            int(rows_clean),
            job.reservoir_bound,
            reservoir_schema(),
            join_uri(partials_dir, PARTIAL_RESERVOIR),
        )
        profile_kept = _write_bottom_k(
            con,
            f"SELECT {', '.join(sql.quote(c) for c in RAW_NUMERIC)}, {RAW_DISTANCE}, source_file, source_line, "
            f"{SAMPLE_KEY}",
            f"(SELECT *, {key} AS {SAMPLE_KEY} FROM classified)",
            SAMPLE_KEY,
            int(job.profile_rows),
            int(rows_in),
            job.profile_bound,
            profile_sample_schema(),
            join_uri(partials_dir, PARTIAL_PROFILE_SAMPLE),
        )
    finally:
        release()
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
        "reservoir_bound": job.reservoir_bound,
        "reservoir_kept": int(reservoir_kept),
        "profile_rows": job.profile_rows,
        "profile_bound": job.profile_bound,
        "profile_kept": int(profile_kept),
        "rules": list(job.ruleset.names),
    }
    write_text(join_uri(partials_dir, PARTIAL_FILE), json.dumps(partial, indent=1))
    return partial


def _write_bottom_k(
    con,
    select: str,
    source: str,
    key: str,
    limit: int,
    rows: int,
    bound: int | None,
    schema: pa.Schema,
    uri: str,
) -> int:
    """Write the ``limit`` rows of ``source`` (``rows`` rows) with the smallest (key,
    source_file, source_line) among those with key <= ``bound`` (None: all), in that order;
    return how many were written.

    A top-k over every row carries all their columns through the heap; the keys are a uniform
    hash, so a filter on a key bound that about 1.25 ``limit`` rows pass first leaves a small
    top-k. When fewer than ``limit`` rows pass it, the query runs again without that filter:
    the result is the same rows either way.
    """
    order = f"ORDER BY {key}, source_file, source_line LIMIT {int(limit)}"

    def write(upper: int | None) -> int:
        where = f" WHERE {key} <= CAST({int(upper)} AS UBIGINT)" if upper is not None else ""
        return _write(con, f"{select} FROM {source}{where} {order}", schema, uri, SAMPLE_ROW_GROUP)

    fast = key_bound(1.25 * limit + 2048, rows)
    if fast is None or (bound is not None and bound <= fast):
        return write(bound)
    written = write(fast)
    if written < min(limit, rows):  # fewer rows under the fast bound than the limit
        written = write(bound)
    return written


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
