"""Ingest: raw DC taxi trip files -> typed Parquet partitioned by ``year=``/``month=`` + quarantine.

Sources (see :func:`components.common.storage.text_sources`): a local file, directory or
glob; ``.zip`` archives (read in place); ``s3://bucket/prefix``; ``http(s)://`` URLs. Only
files named ``taxi_YYYY_MM.txt`` are read (a directory, prefix, glob or archive may hold
others; they are listed as ``skipped``): the name gives the partition of rows that have no
pick-up time.

Output (local path or ``s3://`` prefix)::

    OUTPUT/year=2015/month=1/part-00000.parquet   contract.RAW_SCHEMA (partition keys in the path)
    OUTPUT/_quarantine/part-00000.parquet         contract.QUARANTINE_SCHEMA, unless --quarantine
    OUTPUT/_common_metadata                       the Parquet schema (also when no row was written)
    OUTPUT/_SUCCESS                               the run summary (JSON), written last

Read it with ``pyarrow.dataset.dataset(OUTPUT, schema=..., partitioning=ds.partitioning(
contract.PARTITION_SCHEMA, flavor="hive"))`` (names starting with ``_`` are ignored; pass
the schema -- RAW_SCHEMA plus the partition fields -- so an empty output reads as 0 rows).
Readers must require ``_SUCCESS`` (:func:`components.common.storage.require_complete`):
locally the output appears by one rename, but on S3 files are written in place and only
``_SUCCESS`` says they are complete. Re-running on the same input writes byte-identical
files (``_SUCCESS`` included; timings are only in the returned summary).

How a block of lines is read (syntax only -- meaning is the quality step's job):

1. Files are read in blocks of about ``block_size`` bytes cut at a line break, on a
   background thread (decompression and network reads overlap parsing).
2. Fast path: pyarrow's CSV reader parses the block straight into the typed columns
   (timestamps as text). It succeeds for nearly every block; its row count is checked
   against the block's line count, so row *i* is physical line *first + i*.
3. If a value does not convert, the block is re-read as text and each numeric column is
   cast with ``pyarrow.compute`` (same parser as the fast path); a failing cast is
   bisected to the failing rows, so only those rows are quarantined.
4. If the structure is off (wrong field count, invalid UTF-8, blank lines, a stray
   ``\\r``), lines are checked one by one in Python, bad ones quarantined, and the
   good lines parsed as in 2-3 with their physical line numbers carried along.
5. Timestamps are parsed by a vectorised numpy parser of exactly ``MM/DD/YYYY HH:MM``
   (zero-padded, a real calendar date, hour 0-23, minute 0-59); floats must be finite.

Fields are split on every ``|``: the files have no quoting, so a quote character is
data and a ``|`` inside quotes makes an extra field (the row is quarantined). ``NULL``
and the empty string are missing values. Blank lines carry no row: they are skipped and
counted (``blank_lines``). Invariants checked before commit: rows_read = rows_written +
rows_quarantined, and per file: lines = 1 (header) + rows_read + blank_lines.
"""

from __future__ import annotations

import json
import os
import queue
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, suppress
from dataclasses import asdict, dataclass, field
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from components.common import contract
from components.common.errors import UserError
from components.common.progress import progress_bar
from components.common.storage import StagedOutput, TextSource, text_sources

BLOCK_SIZE = 8 << 20  # bytes of text parsed per step
PARSE_WORKERS = max(2, min(4, os.cpu_count() or 2))  # blocks parsed at once (each also multi-threaded)
ROW_GROUP_ROWS = 1 << 16  # rows buffered per partition before a Parquet row group is written
FILE_ROWS = 1 << 22  # rows per Parquet file before the next part-NNNNN file starts
MAX_LINE = 16 << 20  # a "line" longer than this is not a trip record: stop
QUARANTINE_DIR = "_quarantine"
QUARANTINE_FILE = "part-00000.parquet"
QUARANTINE_FLUSH_ROWS = 1 << 16

N_FIELDS = len(contract.RAW_COLUMNS)
_DELIM = contract.DELIMITER.encode()
_BOM = b"\xef\xbb\xbf"
_MONTH_FILE = re.compile(contract.MONTH_FILE_PATTERN)
_PICKUP = contract.TIMESTAMP_COLUMNS[0]  # ORIGINDATETIME_TR
_PICKUP_INDEX = contract.RAW_COLUMNS.index(_PICKUP)
_TYPES = {c: contract.RAW_SCHEMA.field(c).type for c in contract.RAW_COLUMNS}
# Min/max statistics where readers filter on them (numbers, times, lines), not on free text;
# dictionary encoding except for columns that are unique per row (it would only cost time).
_STATS_COLUMNS = [f.name for f in contract.RAW_SCHEMA if not pa.types.is_string(f.type)]
_DICTIONARY_COLUMNS = [c for c in contract.RAW_SCHEMA.names if c not in ("OBJECTID", contract.SOURCE_LINE)]

_READ = pacsv.ReadOptions(column_names=list(contract.RAW_COLUMNS), use_threads=True, block_size=1 << 20)
_PARSE = pacsv.ParseOptions(
    delimiter=contract.DELIMITER,
    quote_char=False,
    double_quote=False,
    escape_char=False,
    newlines_in_values=False,
    ignore_empty_lines=True,
)
_NULLS = [contract.NULL_TOKEN, ""]
_TYPED = pacsv.ConvertOptions(
    column_types={c: pa.string() if c in contract.TIMESTAMP_COLUMNS else t for c, t in _TYPES.items()},
    null_values=_NULLS,
    strings_can_be_null=True,
)
_TEXT = pacsv.ConvertOptions(
    column_types={c: pa.string() for c in contract.RAW_COLUMNS}, null_values=_NULLS, strings_can_be_null=True
)

# Quarantine reason kinds (counted in the summary).
FIELD_COUNT = "field_count"
INVALID_UTF8 = "invalid_utf8"
STRAY_CR = "stray_carriage_return"
BAD_NUMBER = "bad_number"
NON_FINITE = "non_finite_number"
BAD_INTEGER = "bad_integer"
BAD_TIMESTAMP = "bad_timestamp"
_VALUE_KINDS = (BAD_NUMBER, NON_FINITE, BAD_INTEGER, BAD_TIMESTAMP)  # index = code - 1


@dataclass(frozen=True)
class IngestConfig:
    source: str  # local path / dir / glob, .zip, s3://bucket/prefix, http(s):// URL
    output: str  # local path or s3://bucket/prefix
    quarantine: str | None = None  # default: OUTPUT/_quarantine/
    block_size: int = BLOCK_SIZE
    compression: str = "snappy"
    progress: bool | None = None  # None: a bar when stderr is a terminal


@dataclass
class FileStats:
    name: str
    uri: str
    bytes: int = 0
    lines: int = 0
    rows_read: int = 0
    rows_written: int = 0
    rows_quarantined: int = 0
    blank_lines: int = 0


@dataclass
class _FileContext:
    name: str
    uri: str
    default_key: int  # year * 100 + month from the file name


@dataclass
class _Block:
    table: pa.Table | None  # RAW_SCHEMA rows that parsed
    keys: np.ndarray  # year * 100 + month per row of table
    quarantine: list[tuple[int, bytes, str, str]]  # (line, raw line, reason, kind)
    rows: int  # rows read (non-blank lines)
    blanks: int
    lines: int  # physical lines in the block


# --- public entry point -------------------------------------------------------------------


def ingest(config: IngestConfig) -> dict:
    """Read every source file, write the partitioned raw dataset and quarantine, commit.

    Returns the summary (see module docstring). Raises ``UserError`` for unusable input.
    """
    start = time.perf_counter()
    if config.block_size < 1024:
        raise UserError(f"block size {config.block_size} is too small (at least 1024 bytes)")
    with text_sources(config.source) as found, ExitStack() as stack:
        sources, skipped = _select(config.source, found)
        raw_out = stack.enter_context(StagedOutput(config.output))
        if config.quarantine:
            q_out, q_rel = stack.enter_context(StagedOutput(config.quarantine)), QUARANTINE_FILE
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
        with progress_bar(total, "ingest", enabled=config.progress) as advance:
            for src in sources:
                stats.append(
                    _ingest_file(src, config.block_size, parts, quarantine, writer, pool, reasons, advance)
                )
        writer.submit(parts.close)
        writer.submit(quarantine.close)
        writer.join()
        summary = _summary(config, stats, reasons, parts, quarantine, skipped)
        marker = (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode()
        if q_out is not raw_out:
            q_out.commit(marker)
        raw_out.commit(marker)
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


def _member_name(name: str) -> str:
    return name.rsplit("!", 1)[-1]


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
        "source": config.source,
        "output": config.output,
        "quarantine": config.quarantine or f"{config.output.rstrip('/')}/{QUARANTINE_DIR}",
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


# --- reading one file -------------------------------------------------------------------


def _ingest_file(
    src: TextSource,
    block_size: int,
    parts: _PartitionWriter,
    quarantine: _QuarantineWriter,
    writer: _Worker,
    pool: ThreadPoolExecutor,
    reasons: Counter,
    advance: Callable[[float], None],
) -> FileStats:
    m = _MONTH_FILE.fullmatch(_member_name(src.name))
    assert m is not None
    ctx = _FileContext(src.name, src.uri, int(m["year"]) * 100 + int(m["month"]))
    stats = FileStats(src.name, src.uri, lines=1)
    pending: deque[Future[_Block]] = deque()

    def finish(block: _Block) -> None:
        stats.lines += block.lines
        stats.rows_read += block.rows
        stats.blank_lines += block.blanks
        stats.rows_quarantined += len(block.quarantine)
        if block.table is not None and block.table.num_rows:
            stats.rows_written += block.table.num_rows
            writer.submit(parts.add, block.table, block.keys)
        if block.quarantine:
            reasons.update(kind for *_, kind in block.quarantine)
            writer.submit(quarantine.add, src.name, block.quarantine)

    with _open(src) as stream:
        for data, end, first_line, breaks, consumed in _prefetch(_file_blocks(src, stream, block_size)):
            stats.bytes += consumed
            advance(consumed)
            if end == 0:
                continue
            pending.append(pool.submit(_parse_block, data, end, first_line, breaks, ctx))
            if len(pending) >= PARSE_WORKERS:  # blocks are parsed concurrently, finished in order
                finish(pending.popleft().result())
        while pending:
            finish(pending.popleft().result())
    return stats


class _open:
    """Open a source; read errors (network, corrupt archive) become one-line UserErrors."""

    def __init__(self, src: TextSource) -> None:
        self.src = src

    def __enter__(self) -> BinaryIO:
        self.stream = self.src.open()
        return self.stream

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.stream.close()
        if exc is None or isinstance(exc, UserError | RuntimeError | KeyboardInterrupt):
            return False
        import zipfile
        import zlib

        read_errors: tuple[type[BaseException], ...] = (OSError, zipfile.BadZipFile, zlib.error, EOFError)
        try:
            from botocore.exceptions import BotoCoreError

            read_errors += (BotoCoreError,)
        except ImportError:  # pragma: no cover
            pass
        if isinstance(exc, read_errors):
            raise UserError(f"{self.src.uri}: read failed: {exc}") from None
        return False


def _read_full(stream: BinaryIO, size: int) -> bytes:
    """Read ``size`` bytes unless the stream ends first (sockets return short reads)."""
    first = stream.read(size)
    if not first or len(first) >= size:
        return first
    parts, got = [first], len(first)
    while got < size:
        more = stream.read(size - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _file_blocks(
    src: TextSource, stream: BinaryIO, block_size: int
) -> Iterator[tuple[bytes, int, int, int, int]]:
    """Yield (data, end, first_line, line breaks, bytes consumed): ``data[:end]`` is whole
    lines from physical line ``first_line`` on, holding ``line breaks`` ``\\n``. Checks the
    header (line 1) first."""
    buf = b""
    while b"\n" not in buf:
        chunk = _read_full(stream, min(block_size, 1 << 16))
        if not chunk:
            break
        buf += chunk
        if len(buf) > MAX_LINE:
            raise UserError(
                f"{src.uri}: line 1: no line break in the first {MAX_LINE >> 20} MiB; not a trip file"
            )
    if not buf:
        raise UserError(f"{src.uri}: empty file (expected the header line {contract.RAW_COLUMNS[0]}|...)")
    nl = buf.find(b"\n")
    header = buf[:nl] if nl >= 0 else buf
    _check_header(src, header)
    head_len = nl + 1 if nl >= 0 else len(buf)
    yield b"", 0, 2, 0, len(buf)
    carry, line = buf[head_len:], 2
    while True:
        chunk = _read_full(stream, block_size)
        if not chunk:
            if carry:
                yield carry, len(carry), line, carry.count(b"\n"), 0
            return
        data = carry + chunk if carry else chunk
        end = data.rfind(b"\n") + 1
        if end == 0:
            if len(data) > MAX_LINE:
                raise UserError(
                    f"{src.uri}: line {line}: longer than {MAX_LINE >> 20} MiB; not a trip record"
                )
            carry = data
            yield b"", 0, line, 0, len(chunk)
            continue
        breaks = data.count(b"\n", 0, end)
        yield data, end, line, breaks, len(chunk)
        line += breaks
        carry = data[end:]


def _check_header(src: TextSource, header: bytes) -> None:
    text = header.removeprefix(_BOM).removesuffix(b"\r")
    if text == contract.HEADER_LINE.encode():
        return
    shown = text[:60].decode("utf-8", "replace") + ("..." if len(text) > 60 else "")
    fields = text.count(_DELIM) + 1
    raise UserError(
        f"{src.uri}: line 1: header is not the DC taxi trip format "
        f"(expected {N_FIELDS} '|'-separated columns {contract.RAW_COLUMNS[0]}|{contract.RAW_COLUMNS[1]}|..., "
        f"got {fields} field{'s' if fields != 1 else ''}: {shown!r})"
    )


# --- parsing one block ------------------------------------------------------------------


def _read_csv(data: pa.Buffer | bytes, options: pacsv.ConvertOptions) -> pa.Table:
    return pacsv.read_csv(
        pa.BufferReader(data), read_options=_READ, parse_options=_PARSE, convert_options=options
    )


def _parse_block(data: bytes, end: int, first_line: int, breaks: int, ctx: _FileContext) -> _Block:
    """Parse ``data[:end]`` (whole lines from physical line ``first_line``, ``breaks`` of them
    ending in ``\\n``; a last line without one is the end of the file)."""
    n_lines = breaks + (data[end - 1] != 0x0A)
    buffer = pa.py_buffer(data)
    if end < len(data):
        buffer = buffer.slice(0, end)
    table, typed = None, True
    for options in (_TYPED, _TEXT):  # typed first; text if a value does not convert
        try:
            table = _read_csv(buffer, options)
        except pa.ArrowInvalid:
            typed = False
            continue
        if table.num_rows != n_lines:  # blank lines or a stray \r: structure is off
            table = None
        break
    if table is not None:
        starts: list[np.ndarray] = []

        def raw_line(i: int) -> bytes:
            if not starts:
                newlines = np.flatnonzero(np.frombuffer(data, np.uint8, count=end) == 0x0A)
                starts.append(np.concatenate(([0], newlines + 1, [end + 1])))
            s, e = int(starts[0][i]), int(starts[0][i + 1]) - 1
            return data[s:e].removesuffix(b"\r")

        lines = np.arange(first_line, first_line + n_lines, dtype=np.int64)
        return _convert(table, typed, lines, raw_line, [], 0, n_lines, ctx)
    good, good_lines, bad, blanks = _split_lines(data[:end], first_line)
    if not good:
        return _Block(None, np.empty(0, np.int32), bad, len(bad), blanks, n_lines)
    joined = b"\n".join(good) + b"\n"
    try:
        table, typed = _read_csv(joined, _TYPED), True
    except pa.ArrowInvalid:
        table, typed = _read_csv(joined, _TEXT), False
    if table.num_rows != len(good):
        raise RuntimeError(f"{ctx.uri}: parsed {table.num_rows} rows from {len(good)} checked lines")
    return _convert(
        table, typed, np.asarray(good_lines, np.int64), good.__getitem__, bad, blanks, n_lines, ctx
    )


def _split_lines(text: bytes, first_line: int) -> tuple[list[bytes], list[int], list, int]:
    """Check lines one by one: (good lines, their numbers, quarantined, blank count)."""
    lines = text.split(b"\n")
    if text.endswith(b"\n"):
        lines.pop()
    good: list[bytes] = []
    numbers: list[int] = []
    bad: list[tuple[int, bytes, str, str]] = []
    blanks = 0
    for number, line in enumerate(lines, first_line):
        body = line.removesuffix(b"\r")
        if not body:
            blanks += 1
            continue
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as err:
            reason = f"invalid UTF-8: byte 0x{body[err.start]:02x} at position {err.start + 1}"
            bad.append((number, body, reason, INVALID_UTF8))
            continue
        if b"\r" in body:
            position = body.index(b"\r") + 1
            bad.append(
                (number, body, f"carriage return (\\r) inside the line at position {position}", STRAY_CR)
            )
            continue
        fields = body.count(_DELIM) + 1
        if fields != N_FIELDS:
            bad.append((number, body, f"expected {N_FIELDS} fields, got {fields}", FIELD_COUNT))
            continue
        good.append(body)
        numbers.append(number)
    return good, numbers, bad, blanks


def _convert(
    table: pa.Table,
    typed: bool,
    lines: np.ndarray,
    raw_line: Callable[[int], bytes],
    bad: list,
    blanks: int,
    n_lines: int,
    ctx: _FileContext,
) -> _Block:
    """Typed RAW_SCHEMA columns from a parsed block; rows with a bad value go to quarantine."""
    n = table.num_rows
    first_bad = np.full(n, -1, np.int16)  # column index of the first bad value per row
    kind = np.zeros(n, np.int8)  # 1 + index into _VALUE_KINDS
    columns: list[pa.ChunkedArray | pa.Array] = []
    keys = None

    def mark(mask: np.ndarray | None, column: int, code: int) -> None:
        if mask is None:
            return
        new = mask & (first_bad < 0)
        first_bad[new] = column
        kind[new] = code

    for i, name in enumerate(contract.RAW_COLUMNS):
        col = table.column(i)
        target = _TYPES[name]
        if name in contract.TIMESTAMP_COLUMNS:
            values, bad_ts, year_month = _parse_timestamps(col)
            mark(bad_ts, i, 4)
            if i == _PICKUP_INDEX:
                keys = np.where(year_month > 0, year_month, ctx.default_key).astype(np.int32)
            col = values
        elif pa.types.is_string(target):
            pass
        elif pa.types.is_floating(target):
            if not typed:
                col, bad_cast = _cast_checked(col, target)
                mark(bad_cast, i, 1)
            mark(_non_finite(col), i, 2)
        else:
            if not typed:
                col, bad_cast = _cast_checked(col, target)
                mark(bad_cast, i, 3)
        columns.append(col)
    assert keys is not None
    rejected = first_bad >= 0
    quarantined = list(bad)
    if rejected.any():
        for row in np.flatnonzero(rejected):
            line = raw_line(int(row))
            column = int(first_bad[row])
            code = _VALUE_KINDS[kind[row] - 1]
            quarantined.append((int(lines[row]), line, _value_reason(line, column, code), code))
        quarantined.sort(key=lambda q: q[0])
        keep = ~rejected
        columns = [c.filter(pa.array(keep)) for c in columns]
        lines, keys = lines[keep], keys[keep]
    rows = len(lines)
    out = pa.Table.from_arrays(
        [*columns, pa.repeat(pa.scalar(ctx.name, pa.string()), rows), pa.array(lines, pa.int64())],
        schema=contract.RAW_SCHEMA,
    )
    return _Block(out, keys, quarantined, rows + len(quarantined), blanks, n_lines)


def _value_reason(line: bytes, column: int, kind: str) -> str:
    name = contract.RAW_COLUMNS[column]
    value = line.split(_DELIM)[column].decode("utf-8", "replace")
    shown = repr(value if len(value) <= 60 else value[:60] + "...")
    if kind == BAD_TIMESTAMP:
        return f"{name}: not a MM/DD/YYYY HH:MM timestamp: {shown}"
    if kind == BAD_INTEGER:
        return f"{name}: not an integer ({_TYPES[name]}): {shown}"
    if kind == NON_FINITE:
        return f"{name}: not a finite number: {shown}"
    return f"{name}: not a number: {shown}"


def _non_finite(col: pa.ChunkedArray) -> np.ndarray | None:
    finite = pc.is_finite(col)
    if pc.all(finite).as_py() is not False:
        return None
    return pc.invert(pc.fill_null(finite, True)).to_numpy(zero_copy_only=False)


def _cast_checked(col: pa.ChunkedArray, target: pa.DataType) -> tuple[pa.ChunkedArray, np.ndarray | None]:
    """Cast text to ``target`` with the parser pyarrow's CSV reader uses (which ignores
    surrounding spaces/tabs); values that fail become null and are flagged."""
    text = pc.utf8_trim(col, " \t")
    try:
        return pc.cast(text, target), None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    flat = text.combine_chunks()
    bad = np.zeros(len(flat), bool)

    def cast(lo: int, hi: int) -> list[pa.Array]:
        piece = flat.slice(lo, hi - lo)
        try:
            return [pc.cast(piece, target)]
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            if hi - lo == 1:
                bad[lo] = True
                return [pa.nulls(1, target)]
        step = -(-(hi - lo) // 16)
        return [a for s in range(lo, hi, step) for a in cast(s, min(s + step, hi))]

    return pa.chunked_array(cast(0, len(flat)), target), bad


_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], np.int32)


def _parse_timestamps(col: pa.ChunkedArray) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """Parse ``MM/DD/YYYY HH:MM`` text exactly: (timestamp[s] values, bad mask, year*100+month).

    Zero-padded fields, a real calendar date, hour 0-23, minute 0-59; anything else is bad.
    Missing values stay null and are not bad; year*100+month is 0 where there is no value.
    """
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    n = len(arr)
    valid = np.ones(n, bool) if arr.null_count == 0 else arr.is_valid().to_numpy(zero_copy_only=False)
    offsets = np.frombuffer(arr.buffers()[1], np.int32, count=n + 1, offset=arr.offset * 4)
    data_buf = arr.buffers()[2]
    data = (
        np.frombuffer(data_buf, np.uint8)
        if data_buf is not None and data_buf.size
        else np.zeros(16, np.uint8)
    )
    starts = offsets[:-1]
    idx = np.flatnonzero(valid & ((offsets[1:] - starts) == 16))
    at = starts[idx]
    ok = np.ones(len(idx), bool)

    def digit(pos: int) -> np.ndarray:
        d = data[at + pos] - np.uint8(48)  # wraps around below '0'
        ok.__iand__(d <= 9)
        return d.astype(np.int32)

    def number(first: int, width: int) -> np.ndarray:
        value = digit(first)
        for pos in range(first + 1, first + width):
            value = value * 10 + digit(pos)
        return value

    for pos, char in ((2, b"/"), (5, b"/"), (10, b" "), (13, b":")):
        ok &= data[at + pos] == ord(char)
    month, day, year = number(0, 2), number(3, 2), number(6, 4)
    hour, minute = number(11, 2), number(14, 2)
    month_ok = (month >= 1) & (month <= 12)
    month = np.where(month_ok, month, 1)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    ok &= (
        month_ok
        & (day >= 1)
        & (day <= _DAYS_IN_MONTH[month] + (leap & (month == 2)))
        & (hour <= 23)
        & (minute <= 59)
    )
    good_idx = idx[ok]
    month, day, year, hour, minute = month[ok], day[ok], year[ok], hour[ok], minute[ok]
    days = ((year.astype(np.int64) - 1970) * 12 + month - 1).astype("datetime64[M]").astype("datetime64[D]")
    seconds = np.zeros(n, np.int64)
    seconds[good_idx] = days.astype(np.int64) * 86400 + day * 86400 - 86400 + hour * 3600 + minute * 60
    good = np.zeros(n, bool)
    good[good_idx] = True
    year_month = np.zeros(n, np.int32)
    year_month[good_idx] = year * 100 + month
    values = pa.array(seconds, pa.timestamp("s"), mask=~good)
    return values, valid & ~good, year_month


# --- writing ----------------------------------------------------------------------------


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


# --- threads: read ahead, write behind ---------------------------------------------------


def _prefetch(items: Iterator, depth: int = 2) -> Iterator:
    """Run the ``items`` iterator on a background thread, ``depth`` items ahead."""
    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    done = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(done)
        except BaseException as err:  # noqa: BLE001 - handed to the consumer
            put(_Failure(err))

    thread = threading.Thread(target=run, name="ingest-read", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()


@dataclass
class _Failure:
    error: BaseException


@dataclass
class _Worker:
    """Runs submitted calls in order on one background thread; re-raises its first failure."""

    depth: int = 2
    error: BaseException | None = None
    _queue: queue.Queue = field(init=False)
    _thread: threading.Thread = field(init=False)

    def __enter__(self) -> _Worker:
        self._queue = queue.Queue(self.depth)
        self._thread = threading.Thread(target=self._run, name="ingest-write", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self.error is None:
                fn, args = item
                try:
                    fn(*args)
                except BaseException as err:  # noqa: BLE001 - re-raised on the caller's thread
                    self.error = err

    def submit(self, fn: Callable, *args) -> None:
        if self.error is not None:
            raise self.error
        self._queue.put((fn, args))

    def join(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self.error is not None:
            raise self.error

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


# --- kfp ------------------------------------------------------------------------------------

METRIC_KEYS = ("rows_read", "rows_written", "rows_quarantined", "bytes_read", "seconds")


def ingest_for_component(config: IngestConfig, metrics) -> dict:
    """Run :func:`ingest` for the kfp component: no progress bar, metrics logged, summary returned."""
    summary = ingest(IngestConfig(**{**asdict(config), "progress": False}))
    for key in METRIC_KEYS:
        metrics.log_metric(key, summary[key])
    return summary
