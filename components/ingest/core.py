"""Ingest step: raw DC taxi trip files -> typed Parquet partitioned by ``year=``/``month=`` + quarantine.

``run(IngestConfig)`` reads every ``taxi_YYYY_MM.txt`` of a local path, glob, ``.zip``,
``s3://`` or ``http(s)://`` source, writes ``contract.RAW_SCHEMA`` part files and the quarantine
through ``components.common.staged`` (``_SUCCESS`` of step ``ingest`` last) and returns the summary. Output layout, parsing
rules and invariants: docs/ingest.md.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, suppress
from dataclasses import asdict, dataclass

from components.common import contract
from components.common.configspec import option
from components.common.errors import UserError
from components.common.progress import progress_bar
from components.common.staged import StagedOutput
from components.common.storage import TextSource, text_sources

from .files import BLOCK_SIZE, PARSE_WORKERS, _ingest_file, _Worker
from .parse import _MONTH_FILE, FileStats, _member_name
from .writers import QUARANTINE_DIR, QUARANTINE_FILE, _PartitionWriter, _QuarantineWriter

STEP = contract.INGEST_STEP  # the name its output's _SUCCESS marker carries


def _block_mb(text: str) -> int:
    """``--block-mb`` text (MiB, a positive number) -> bytes."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of MiB, not {text!r}")
    return int(value * (1 << 20))


@dataclass(frozen=True)
class IngestConfig:
    """The ingest step's settings; the fields with an ``option`` are the CLI's flags."""

    source_uri: str = option(
        flag="--source",
        help="local file, directory or glob; .zip archive; s3://bucket/prefix; http(s):// URL",
    )
    output_uri: str = option(
        flag="--output", help="local directory or s3://bucket/prefix (committed atomically)"
    )
    quarantine_uri: str | None = option(
        None, flag="--quarantine", help=f"where unparsable rows go (default: OUTPUT/{QUARANTINE_DIR}/)"
    )
    block_size: int = option(  # bytes; the flag is in MiB
        BLOCK_SIZE,
        flag="--block-mb",
        help="MiB of text parsed per step (default 8)",
        parse=_block_mb,
        format=lambda size: repr(size / (1 << 20)),
    )
    compression: str = "snappy"
    progress: bool | None = option(  # None: a bar when stderr is a terminal
        None, flag="--progress", help="progress bar on stderr (default: when stderr is a terminal)"
    )


def run(
    config: IngestConfig, *, files: list[str] | None = None, step: str = STEP, marker: dict | None = None
) -> dict:
    """Read every source file, write the partitioned raw dataset and quarantine, commit.

    Returns the summary (see module docstring). Raises ``UserError`` for unusable input.
    ``files``, ``step`` and ``marker`` are the fan-out's (``components.ingest.fanout``): read
    only the listed files (``TextSource.name``, in the listing's order) of the source, commit
    ``_SUCCESS`` naming ``step``, and add ``marker``'s keys to the summary.
    """
    start = time.perf_counter()
    if config.block_size < 1024:
        raise UserError(f"block size {config.block_size} is too small (at least 1024 bytes)")
    with text_sources(config.source_uri) as found, ExitStack() as stack:
        sources, skipped = _select(config.source_uri, found)
        if files is not None:
            sources = _only(config.source_uri, sources, files)
        raw_out = stack.enter_context(StagedOutput(config.output_uri, step))
        if config.quarantine_uri:
            q_out, q_rel = stack.enter_context(StagedOutput(config.quarantine_uri, step)), QUARANTINE_FILE
        else:
            q_out, q_rel = raw_out, f"{QUARANTINE_DIR}/{QUARANTINE_FILE}"
        parts = _PartitionWriter(raw_out, config.compression)
        quarantine = _QuarantineWriter(q_out, q_rel, config.compression)
        # On failure: the writer thread stops, then open files are closed, then the outputs
        # are discarded (an S3 upload left open would otherwise complete after the cleanup).
        stack.callback(_discard, parts, quarantine)
        writer = stack.enter_context(_Worker())
        pool = stack.enter_context(ThreadPoolExecutor(PARSE_WORKERS, thread_name_prefix="ingest-parse"))
        stats: list[FileStats] = []
        reasons: Counter[str] = Counter()
        total = sum(s.size or 0 for s in sources) or None
        with progress_bar(total, "ingest", enabled=config.progress, rows=True) as advance:
            for src in sources:
                stats.append(
                    _ingest_file(src, config.block_size, parts, quarantine, writer, pool, reasons, advance)
                )
        writer.submit(parts.close)
        writer.submit(quarantine.close)
        writer.join()
        summary = {**_summary(config, stats, reasons, parts, quarantine, skipped), **(marker or {})}
        if q_out is not raw_out:
            q_out.commit(summary)
        raw_out.commit(summary)
    seconds = time.perf_counter() - start
    summary["seconds"] = round(seconds, 3)
    summary["rows_per_s"] = round(summary["rows_read"] / seconds) if seconds else None
    summary["mb_per_s"] = round(summary["bytes_read"] / 1e6 / seconds, 1) if seconds else None
    return summary


def _discard(parts: _PartitionWriter, quarantine: _QuarantineWriter) -> None:
    for writer in [*parts.writers.values(), quarantine.writer]:
        with suppress(Exception):  # best effort on the way out of a failed run
            writer.close()
    parts.writers.clear()


def _select(source: str, found: list[TextSource]) -> tuple[list[TextSource], list[str]]:
    """Keep taxi_YYYY_MM.txt files; others are an error when named explicitly, else skipped."""
    selected, skipped = [], []
    for src in found:
        if _MONTH_FILE.fullmatch(_member_name(src.name)):
            if src.size == 0:
                raise UserError(
                    f"{src.uri}: empty file (expected the header line {contract.RAW_COLUMNS[0]}|...)"
                )
            selected.append(src)
        elif src.explicit:
            raise UserError(
                f"{src.uri}: file name is not taxi_YYYY_MM.txt "
                "(the month of rows without a pick-up time comes from it)"
            )
        else:
            skipped.append(src.uri)
    if not selected:
        shown = ", ".join(os.path.basename(s) for s in skipped[:3]) + (", ..." if len(skipped) > 3 else "")
        raise UserError(f"{source}: no taxi_YYYY_MM.txt files found (only: {shown})")
    seen: dict[str, TextSource] = {}
    for src in selected:
        month = _member_name(src.name)
        if month in seen:
            raise UserError(
                f"{month} found twice: {seen[month].uri} and {src.uri} "
                "(its rows would be read twice; keep one)"
            )
        seen[month] = src
    return selected, skipped


def _only(source: str, sources: list[TextSource], files: list[str]) -> list[TextSource]:
    """The sources named in ``files``; a name the source no longer holds is an error."""
    wanted = set(files)
    missing = wanted - {s.name for s in sources}
    if missing:
        raise UserError(
            f"{source}: no longer holds {', '.join(sorted(missing))} (listed when the run was planned); "
            "plan the run again"
        )
    return [s for s in sources if s.name in wanted]


def _summary(
    config: IngestConfig,
    stats: list[FileStats],
    reasons: Counter,
    parts: _PartitionWriter,
    quarantine: _QuarantineWriter,
    skipped: list[str],
) -> dict:
    rows_read = sum(s.rows_read for s in stats)
    written = sum(s.rows_written for s in stats)
    quarantined = sum(s.rows_quarantined for s in stats)
    if (
        rows_read != written + quarantined
        or parts.rows_written != written
        or quarantine.rows_written != quarantined
    ):
        raise RuntimeError(
            f"ingest invariant broken: rows_read={rows_read} != rows_written={written} + "
            f"rows_quarantined={quarantined} (Parquet writers saw {parts.rows_written} + {quarantine.rows_written})"
        )
    for s in stats:
        if s.lines != 1 + s.rows_read + s.blank_lines:
            raise RuntimeError(f"{s.uri}: {s.lines} lines != 1 + {s.rows_read} rows + {s.blank_lines} blank")
    return {
        "source": config.source_uri,
        "output": config.output_uri,
        "quarantine": config.quarantine_uri or f"{config.output_uri.rstrip('/')}/{QUARANTINE_DIR}",
        "files": len(stats),
        "bytes_read": sum(s.bytes for s in stats),
        "rows_read": rows_read,
        "rows_written": written,
        "rows_quarantined": quarantined,
        "blank_lines": sum(s.blank_lines for s in stats),
        "invariant_holds": True,
        "quarantine_reasons": dict(sorted(reasons.items())),
        "partitions": parts.partition_rows(),
        "parquet_files": parts.files,
        "file_stats": [asdict(s) for s in stats],
        "skipped": skipped,
    }
