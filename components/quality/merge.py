"""Merging the partitions' partial statistics exactly, in partition order, into the
population statistics; the gate (docs/quality.md)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from components.common import contract
from components.common.errors import UserError
from components.common.storage import resolve_filesystem

from .clean_partition import profile_sample_schema, reservoir_schema
from .layout import (
    CLEAN_NUMERIC,
    HISTOGRAMS,
    PARTIAL_FILE,
    PARTIAL_PROFILE_SAMPLE,
    PARTIAL_RESERVOIR,
    QUANTILES,
    RAW_DISTANCE,
    RAW_NUMERIC,
    SAMPLE_KEY,
    STAT_COLUMNS,
    join_uri,
    read_text,
    to_numpy,
    write_text,
)
from .result import QualityResult, evaluate_gate
from .rules import RuleSet


class SampleIncomplete(RuntimeError):
    """The partitions' sample partials were cut at a key bound (``reservoir_bound``,
    ``profile_bound``) that the merged bottom-k reaches past: process them again without it."""


def check_sample_complete(
    partials: Sequence[dict], sample: pa.Table, k: int, bound: str, kept: str, rows: str
) -> None:
    """Raise :class:`SampleIncomplete` unless ``sample`` (the bottom-k of the partials' sample
    files, in key order) is the bottom-k of all their rows.

    A partition whose partial holds fewer than min(k, its ``rows``) rows left out only rows
    with a key above its ``bound``; when the merged k-th key is at most every such bound (and
    there are k rows), none of those could be in the bottom-k.
    """
    cut = [p[bound] for p in partials if p.get(bound) is not None and p[kept] < min(k, p[rows])]
    if not cut:
        return
    if sample.num_rows < k:
        raise SampleIncomplete(f"the {bound}-cut partials hold {sample.num_rows} rows, fewer than {k}")
    last = sample.column(SAMPLE_KEY)[sample.num_rows - 1].as_py()
    if last > min(cut):
        raise SampleIncomplete(
            f"the merged sample's last key {last} is above a partition's {bound} {min(cut)}"
        )


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
        # ParquetFile, not pq.read_table: that goes through pyarrow.dataset, which imports pandas
        with fs.open_input_file(path) as f:
            keys = pq.ParquetFile(f).read(columns=[SAMPLE_KEY]).column(0)
        smallest = np.concatenate([smallest, to_numpy(keys).astype(np.uint64, copy=False)])
        if smallest.size > k:
            smallest = np.partition(smallest, k - 1)[:k]
    threshold = int(smallest.max()) if smallest.size else 0
    # built from a buffer: pa.scalar(int) converts through pyarrow's pandas shim (imports pandas)
    limit = pa.Array.from_buffers(pa.uint64(), 1, [None, pa.py_buffer(np.array([threshold], np.uint64))])[0]
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
        table = table.filter(pc.less_equal(table.column(SAMPLE_KEY), limit))
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
    with fs.open_input_file(path) as f:
        table = pq.ParquetFile(f).read()
    return table.select(schema.names).cast(schema) if schema is not None else table


def quantiles(table: pa.Table | None, columns: Sequence[str]) -> dict[str, dict[str, float | None]]:
    import numpy as np

    out: dict[str, dict[str, float | None]] = {}
    for col in columns:
        if table is None or col not in table.column_names:
            out[col] = dict.fromkeys(f"p{round(q * 100)}" for q in QUANTILES)
            continue
        values = to_numpy(table.column(col).drop_null()).astype("float64")
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
        if fs.get_file_info(join_uri(root, PARTIAL_FILE)).type == pafs.FileType.File:
            dirs.append(uri)
            continue
        found = [
            e.path[len(root) :].strip("/").rsplit("/", 1)[0]
            for e in fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
            if e.type == pafs.FileType.File and e.base_name == PARTIAL_FILE
        ]
        if not found:
            raise UserError(f"{uri}: no {PARTIAL_FILE} found (expected quality partition outputs)")
        dirs += [join_uri(uri, rel) for rel in found]
    loaded = [(json.loads(read_text(join_uri(d, PARTIAL_FILE))), d) for d in dirs]
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
    profile_k = partials[0]["profile_rows"]

    def clean_sample():
        """The reservoir with its key column (checked), and its write (when ``stats_uri``)
        queued behind it."""
        table = bottom_k_files([join_uri(d, PARTIAL_RESERVOIR) for _, d in loaded], k, reservoir_schema())
        check_sample_complete(partials, table, k, "reservoir_bound", "reservoir_kept", "rows_clean")
        cast = table.select(contract.CLEAN_SCHEMA.names).cast(contract.CLEAN_SCHEMA)
        return table, pool.submit(write_reservoir, cast)

    def write_reservoir(table: pa.Table) -> pa.Table:
        if stats_uri is not None:
            fs, path = resolve_filesystem(join_uri(stats_uri, contract.POPULATION_RESERVOIR_FILE))
            pq.write_table(table, path, filesystem=fs, compression="zstd")
        return table

    def raw_sample() -> dict:
        table = bottom_k_files(
            [join_uri(d, PARTIAL_PROFILE_SAMPLE) for _, d in loaded], profile_k, profile_sample_schema()
        )
        check_sample_complete(partials, table, profile_k, "profile_bound", "profile_kept", "rows_in")
        return quantiles(table, [*RAW_NUMERIC, RAW_DISTANCE])

    # in two threads (Arrow's reads and writes and numpy's partitions release the GIL; the
    # merge runs after the workers, on otherwise idle cores): the reservoir, then its write,
    # beside the raw profile sample, then the reservoir's quantiles
    with ThreadPoolExecutor(max_workers=1) as pool:
        clean_future = pool.submit(clean_sample)
        raw_q = raw_sample()
        keyed, written = clean_future.result()
        clean_q = quantiles(keyed, CLEAN_NUMERIC)
        reservoir = written.result()
    for col, q in raw_q.items():
        raw_profile[col]["quantiles"] = q
    for col, q in clean_q.items():
        clean_profile[col]["quantiles"] = q

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
        write_text(join_uri(stats_uri, contract.POPULATION_STATS_FILE), json.dumps(stats, indent=1))
    return QualityResult(
        counts=summary,
        stats=stats,
        partials=partials,
        raw_profile=raw_profile,
        clean_profile=clean_profile,
        histograms=histograms,
        reservoir=reservoir,
        violations=violations,
        ruleset=ruleset,
    )
