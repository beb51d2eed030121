"""Ingest fanned out across tasks: plan file groups, ingest one group per task, merge.

- :func:`plan` lists the source's ``taxi_YYYY_MM.txt`` files (directory, glob, zip members,
  ``s3://`` prefix, https) and cuts the list, in its order, into at most N runs of consecutive
  files balanced by size (:func:`group_sizes`, the pure part).
- :func:`ingest_group` ingests one group into its own location with ``core.run``; its
  ``_SUCCESS`` names the step ``ingest-part`` (a part is not an ingest output: quality refuses it).
- :func:`merge_parts` copies every part's Parquet files into one ``year=/month=`` data set,
  renamed ``part-<task>-<n>.parquet`` (a row whose pick-up month is not its file's month lands
  in a partition another task writes too), concatenates the quarantines in task order, adds
  up the summaries and commits one ``_SUCCESS`` of the ``ingest`` step.

Because groups are consecutive runs of the listing and names sort by task, a partition's files
in name order hold its rows in the order one task writes them, and the quarantine is the same
rows in the same order: the merged output reads as the one-task output (docs/scale.md).
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections import Counter
from contextlib import ExitStack

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from components.common import contract
from components.common.errors import UserError
from components.common.staged import StagedOutput, require_complete
from components.common.storage import resolve_filesystem, text_sources

from . import core
from .core import STEP, IngestConfig, _select
from .writers import QUARANTINE_DIR, QUARANTINE_FILE

PART_STEP = "ingest-part"  # the step a task's part output's _SUCCESS names
_PART_FILE = re.compile(r"(?P<dir>year=(?P<year>\d+)/month=(?P<month>\d+))/part-(?P<n>\d+)\.parquet")


def group_sizes(sizes: list[int | None], n: int) -> list[list[int]]:
    """Indices of ``sizes`` cut into at most ``n`` runs of consecutive items, balanced by size.

    The largest run's total is the smallest any cut into ``n`` consecutive runs can reach; with
    that bound, ``min(n, len(sizes))`` runs are made (no run is empty). An unknown size (None)
    counts as the mean of the known ones (1 if none is known).
    """
    if n < 1:
        raise UserError(f"ingest tasks must be at least 1, not {n}")
    if not sizes:
        return []
    known = [s for s in sizes if s is not None]
    if any(s < 0 for s in known):
        raise ValueError(f"negative size in {sizes}")
    fill = round(sum(known) / len(known)) if known else 1
    weights = [max(1, fill if s is None else s) for s in sizes]  # a 0-byte file still costs a task
    target = min(n, len(weights))

    def runs_needed(cap: int) -> int:
        count, current = 1, 0
        for w in weights:
            if current + w > cap:
                count, current = count + 1, 0
            current += w
        return count

    low, high = max(weights), sum(weights)
    while low < high:  # smallest cap with at most n runs
        mid = (low + high) // 2
        if runs_needed(mid) <= target:
            high = mid
        else:
            low = mid + 1
    groups: list[list[int]] = [[]]
    current = 0
    for i, w in enumerate(weights):
        to_open = target - len(groups)  # runs still to start after the current one
        if groups[-1] and (current + w > low or len(weights) - i <= to_open):
            groups.append([])
            current = 0
        groups[-1].append(i)
        current += w
    return groups


def plan(source_uri: str, tasks: int) -> list[dict]:
    """The source's month files in at most ``tasks`` groups: ``{"task": k, "files": [name, ...],
    "bytes": total}`` (``TextSource.name``: ``taxi_2015_01.txt``, ``taxi_2015.zip!taxi_2015_01.txt``;
    ``bytes``: uncompressed, 0 where unknown). Raises ``UserError`` as ``core.run`` would for
    a source it cannot read (no month file, a month twice)."""
    with text_sources(source_uri) as found:
        sources, _ = _select(source_uri, found)
    groups = group_sizes([s.size for s in sources], tasks)
    return [
        {
            "task": k,
            "files": [sources[i].name for i in group],
            "bytes": sum(sources[i].size or 0 for i in group),
        }
        for k, group in enumerate(groups)
    ]


def _task_id(value) -> int:
    """The group's task number (kfp passes a dict parameter's numbers as floats)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value) or value < 0:
        raise UserError(f"ingest group: task must be a whole number >= 0, not {value!r}")
    return int(value)


def ingest_group(
    source_uri: str, group: dict, output_uri: str, *, block_size: int | None = None, progress: bool = False
) -> dict:
    """Ingest one planned group of ``source_uri`` into ``output_uri`` (a part: its quarantine
    inside it, ``_SUCCESS`` of step ``ingest-part`` holding the summary and ``task``)."""
    files = group.get("files") or []
    if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
        raise UserError(f"ingest group: files must be a non-empty list of file names, not {files!r}")
    task = _task_id(group.get("task"))
    config = IngestConfig(source_uri=source_uri, output_uri=output_uri, progress=progress)
    if block_size is not None:
        config = dataclasses.replace(config, block_size=block_size)
    return core.run(config, files=files, step=PART_STEP, marker={"task": task})


def _partition_key(key: str) -> tuple[int, int]:
    year, month = (int(v.split("=")[1]) for v in key.split("/"))
    return year, month


def merge_parts(
    part_uris: list[str], output_uri: str, quarantine_uri: str | None = None, compression: str = "snappy"
) -> dict:
    """Merge the tasks' parts (:func:`ingest_group` outputs) into one ingest output at
    ``output_uri`` (quarantine at ``quarantine_uri``, else ``OUTPUT/_quarantine/``); returns
    the summary ``core.run`` would have written for all the files, plus ``tasks``."""
    start = time.perf_counter()
    if not part_uris:
        raise UserError("ingest merge: no parts to merge")
    docs = sorted(((require_complete(uri, PART_STEP), uri) for uri in part_uris), key=lambda d: d[0]["task"])
    _check_parts(docs)
    with ExitStack() as stack:
        raw_out = stack.enter_context(StagedOutput(output_uri, STEP))
        if quarantine_uri:
            q_out, q_rel = stack.enter_context(StagedOutput(quarantine_uri, STEP)), QUARANTINE_FILE
        else:
            q_out, q_rel = raw_out, f"{QUARANTINE_DIR}/{QUARANTINE_FILE}"
        files, copied = _copy_parts(docs, raw_out)
        quarantined = _merge_quarantine(docs, q_out, q_rel, compression)
        pq.write_metadata(contract.RAW_SCHEMA, raw_out.path("_common_metadata"), filesystem=raw_out.fs)
        summary = _merged_summary(docs, output_uri, quarantine_uri, files)
        if copied != summary["partitions"] or quarantined != summary["rows_quarantined"]:
            raise RuntimeError(
                f"ingest merge invariant broken: the parts' files hold {copied} rows per partition and "
                f"{quarantined} quarantined, their summaries say {summary['partitions']} and "
                f"{summary['rows_quarantined']}"
            )
        if q_out is not raw_out:
            q_out.commit(summary)
        raw_out.commit(summary)
    summary["seconds"] = round(time.perf_counter() - start, 3)  # the merge's own time
    return summary


def _check_parts(docs: list[tuple[dict, str]]) -> None:
    tasks = [d["task"] for d, _ in docs]
    if len(set(tasks)) != len(tasks):
        twice = sorted(t for t, c in Counter(tasks).items() if c > 1)
        raise UserError(f"ingest merge: task {twice[0]} appears in more than one part")
    sources = {d["source"] for d, _ in docs}
    if len(sources) != 1:
        raise UserError(f"ingest merge: the parts read different sources: {sorted(sources)}")
    seen: dict[str, str] = {}
    for doc, uri in docs:
        for stats in doc["file_stats"]:
            if stats["name"] in seen:
                raise UserError(
                    f"ingest merge: {stats['name']} was ingested twice ({seen[stats['name']]}, {uri})"
                )
            seen[stats["name"]] = uri


def _copy_parts(docs: list[tuple[dict, str]], out: StagedOutput) -> tuple[list[str], dict[str, int]]:
    """Copy every part file to ``year=/month=/part-<task>-<n>.parquet``; the new names and the
    rows the copied files hold per partition (from their footers)."""
    names: list[str] = []
    rows: Counter[str] = Counter()
    for doc, uri in docs:
        fs, root = resolve_filesystem(uri)
        same = fs.equals(out.fs)
        for rel in doc["parquet_files"]:
            m = _PART_FILE.fullmatch(rel)
            if m is None:
                raise UserError(f"{uri}: {rel}: not a year=/month=/part-N.parquet file of an ingest part")
            new = f"{m['dir']}/part-{doc['task']:05d}-{int(m['n']):05d}.parquet"
            src, dst = f"{root.rstrip('/')}/{rel}", out.path(new)
            if same:
                out.fs.copy_file(src, dst)  # S3: a server-side copy
            else:
                pafs.copy_files(src, dst, source_filesystem=fs, destination_filesystem=out.fs)
            rows[f"year={int(m['year'])}/month={int(m['month'])}"] += pq.ParquetFile(
                dst, filesystem=out.fs
            ).metadata.num_rows
            names.append(new)
    return sorted(names), dict(sorted(rows.items(), key=lambda kv: _partition_key(kv[0])))


def _merge_quarantine(docs: list[tuple[dict, str]], out: StagedOutput, rel: str, compression: str) -> int:
    """Concatenate the parts' quarantine files in task order into one; rows written."""
    written = 0
    with pq.ParquetWriter(
        out.path(rel), contract.QUARANTINE_SCHEMA, filesystem=out.fs, compression=compression
    ) as writer:
        for _doc, uri in docs:
            fs, root = resolve_filesystem(uri)
            with fs.open_input_file(f"{root.rstrip('/')}/{QUARANTINE_DIR}/{QUARANTINE_FILE}") as f:
                source = pq.ParquetFile(f)
                if source.schema_arrow != contract.QUARANTINE_SCHEMA:
                    raise UserError(f"{uri}: its quarantine file is not of the quarantine schema")
                for batch in source.iter_batches():
                    writer.write_batch(batch)
                    written += batch.num_rows
    return written


def _merged_summary(
    docs: list[tuple[dict, str]], output_uri: str, quarantine_uri: str | None, files: list[str]
) -> dict:
    parts = [d for d, _ in docs]
    total = {
        k: sum(p[k] for p in parts)
        for k in ("files", "bytes_read", "rows_read", "rows_written", "rows_quarantined", "blank_lines")
    }
    if total["rows_read"] != total["rows_written"] + total["rows_quarantined"]:
        raise RuntimeError(f"ingest merge invariant broken: {total}")
    reasons: Counter[str] = Counter()
    partitions: Counter[str] = Counter()
    for p in parts:
        reasons.update(p["quarantine_reasons"])
        partitions.update(p["partitions"])
    return {
        "source": parts[0]["source"],
        "output": output_uri,
        "quarantine": quarantine_uri or f"{output_uri.rstrip('/')}/{QUARANTINE_DIR}",
        **total,
        "invariant_holds": True,
        "quarantine_reasons": dict(sorted(reasons.items())),
        "partitions": dict(sorted(partitions.items(), key=lambda kv: _partition_key(kv[0]))),
        "parquet_files": files,
        "file_stats": [s for p in parts for s in p["file_stats"]],
        "skipped": list(dict.fromkeys(u for p in parts for u in p["skipped"])),
        "tasks": [
            {
                "task": p["task"],
                "files": p["files"],
                "bytes_read": p["bytes_read"],
                "rows_read": p["rows_read"],
            }
            for p in parts
        ],
    }
