"""Parsing one block of lines into typed rows and quarantined lines (the fast path, the
cast fallback, the line-by-line check, the timestamp parser: docs in components.ingest.core)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from components.common import contract

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

PARSE_WORKERS = max(2, min(4, os.cpu_count() or 2))  # blocks parsed at once (components.ingest.files)
# Each block is parsed on its worker's thread when the workers already use every core (measured
# at 2 cores: about 7% less parse CPU than handing each block's pieces to pyarrow's pool and
# waiting); with more cores than workers, pyarrow's threads parse a block's pieces in parallel.
_READ = pacsv.ReadOptions(
    column_names=list(contract.RAW_COLUMNS),
    use_threads=(os.cpu_count() or 2) > PARSE_WORKERS,
    block_size=1 << 20,
)
_PARSE = pacsv.ParseOptions(
    delimiter=contract.DELIMITER,
    quote_char=False,
    double_quote=False,
    escape_char=False,
    newlines_in_values=False,
    ignore_empty_lines=True,
)
_NULLS = [contract.NULL_TOKEN, ""]


def _convert_options(types: dict[str, pa.DataType], check_utf8: bool = True) -> pacsv.ConvertOptions:
    return pacsv.ConvertOptions(
        column_types=types, null_values=_NULLS, strings_can_be_null=True, check_utf8=check_utf8
    )


_TYPED_TYPES = {c: pa.string() if c in contract.TIMESTAMP_COLUMNS else t for c, t in _TYPES.items()}
_TEXT_TYPES = {c: pa.string() for c in contract.RAW_COLUMNS}
_TYPED, _TEXT = _convert_options(_TYPED_TYPES), _convert_options(_TEXT_TYPES)
# A block of ASCII text is valid UTF-8: its string columns need no UTF-8 check (about 6% of
# the parse's CPU). Any other block is checked (and a bad byte quarantines its line).
_TYPED_ASCII = _convert_options(_TYPED_TYPES, check_utf8=False)
_TEXT_ASCII = _convert_options(_TEXT_TYPES, check_utf8=False)

# Quarantine reason kinds (counted in the summary).
FIELD_COUNT = "field_count"
INVALID_UTF8 = "invalid_utf8"
STRAY_CR = "stray_carriage_return"
BAD_NUMBER = "bad_number"
NON_FINITE = "non_finite_number"
BAD_INTEGER = "bad_integer"
BAD_TIMESTAMP = "bad_timestamp"
_VALUE_KINDS = (BAD_NUMBER, NON_FINITE, BAD_INTEGER, BAD_TIMESTAMP)  # index = code - 1


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


def _read_csv(data: pa.Buffer | bytes, options: pacsv.ConvertOptions) -> pa.Table:
    return pacsv.read_csv(
        pa.BufferReader(data), read_options=_READ, parse_options=_PARSE, convert_options=options
    )


def _parse_block(
    data: bytes | memoryview, end: int, first_line: int, breaks: int, ctx: _FileContext
) -> _Block:
    """Parse ``data[:end]`` (whole lines from physical line ``first_line``, ``breaks`` of them
    ending in ``\\n``; a last line without one is the end of the file)."""
    n_lines = breaks + (data[end - 1] != 0x0A)
    buffer = pa.py_buffer(data)
    if end < len(data):
        buffer = buffer.slice(0, end)
    table, typed = None, True
    ascii_only = int(np.frombuffer(data, np.uint8, count=end).max()) < 0x80
    # typed first; text if a value does not convert
    for options in (_TYPED_ASCII, _TEXT_ASCII) if ascii_only else (_TYPED, _TEXT):
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
            return bytes(data[s:e]).removesuffix(b"\r")

        lines = np.arange(first_line, first_line + n_lines, dtype=np.int64)
        return _convert(table, typed, lines, raw_line, [], 0, n_lines, ctx)
    good, good_lines, bad, blanks = _split_lines(bytes(data[:end]), first_line)
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
        keep_mask = _arrow_bools(keep)
        columns = [c.filter(keep_mask) for c in columns]
        lines, keys = lines[keep], keys[keep]
    rows = len(lines)
    out = pa.Table.from_arrays(
        [*columns, _constant_string(ctx.name, rows), _arrow_from_numpy(pa.int64(), lines)],
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


def _non_finite(col: pa.ChunkedArray | pa.Array) -> np.ndarray | None:
    """Rows holding NaN or an infinity (a null is neither): a numpy bool mask, None if no row does.

    numpy over the value buffers, so a run whose values all convert never imports
    ``pyarrow.compute`` (27 ms of the single-threaded start-up)."""
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    masks = []
    for chunk in chunks:
        if not len(chunk):  # no rows (and maybe no value buffer)
            continue
        width = chunk.type.byte_width  # float64 (or float32)
        values = np.frombuffer(
            chunk.buffers()[1], f"<f{width}", count=len(chunk), offset=chunk.offset * width
        )
        bad = ~np.isfinite(values)
        if chunk.null_count:
            bad &= _validity(chunk)
        masks.append(bad)
    if not masks:
        return None
    mask = masks[0] if len(masks) == 1 else np.concatenate(masks)
    return mask if mask.any() else None


def _validity(arr: pa.Array) -> np.ndarray:
    """``arr``'s validity bitmap as a numpy bool array (True: a value, False: null)."""
    bitmap = arr.buffers()[0]
    if bitmap is None or arr.null_count == 0:
        return np.ones(len(arr), bool)
    bits = np.frombuffer(bitmap, np.uint8)
    return np.unpackbits(bits, count=arr.offset + len(arr), bitorder="little")[arr.offset :].view(bool)


def _arrow_from_numpy(type_: pa.DataType, values: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """A 64-bit Arrow array (int64, timestamp) over numpy ``values``, null where ``valid`` is False.

    (``pa.array(numpy)`` would do, but its first call imports pandas: 0.2 CPU-s per run.)"""
    assert type_.bit_width == 64
    values = np.ascontiguousarray(values, np.int64)
    if valid is None or valid.all():
        return pa.Array.from_buffers(type_, len(values), [None, pa.py_buffer(values)], null_count=0)
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
    nulls = len(valid) - int(np.count_nonzero(valid))
    return pa.Array.from_buffers(type_, len(values), [bitmap, pa.py_buffer(values)], null_count=nulls)


def _constant_string(value: str, n: int) -> pa.Array:
    """``value`` ``n`` times as an Arrow string array (``pa.repeat(pa.scalar(...))`` imports pandas)."""
    raw = value.encode()
    offsets = np.arange(n + 1, dtype=np.int64) * len(raw)
    if offsets[-1] >= 1 << 31:
        raise ValueError(f"{n} copies of a {len(raw)}-byte string do not fit in one string array")
    buffers = [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(raw * n)]
    return pa.Array.from_buffers(pa.string(), n, buffers, null_count=0)


def _arrow_bools(values: np.ndarray) -> pa.Array:
    """A numpy bool array as an Arrow boolean array without nulls."""
    bitmap = pa.py_buffer(np.packbits(values, bitorder="little"))
    return pa.Array.from_buffers(pa.bool_(), len(values), [None, bitmap], null_count=0)


def _cast_checked(col: pa.ChunkedArray, target: pa.DataType) -> tuple[pa.ChunkedArray, np.ndarray | None]:
    """Cast text to ``target`` with the parser pyarrow's CSV reader uses (which ignores
    surrounding spaces/tabs); values that fail become null and are flagged."""
    import pyarrow.compute as pc  # only for a block whose values did not all convert

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


# MM/DD/YYYY HH:MM: the two-digit fields are read as little-endian byte pairs through a table
# (pair -> 0..99, 255 where either byte is not a digit); the separators are compared as bytes.
_TS_PAIR = np.full(1 << 16, 255, np.uint8)
for _hi in range(10):
    for _lo in range(10):
        _TS_PAIR[(0x30 + _hi) | (0x30 + _lo) << 8] = _hi * 10 + _lo
_TS_SEPARATORS = ((2, ord("/")), (5, ord("/")), (10, ord(" ")), (13, ord(":")))


def _month_tables() -> tuple[np.ndarray, np.ndarray]:
    """Per ``year * 16 + month`` (year 0-9999): days from 1970-01-01 to the month's first day,
    and the month's length (0 where the month is not 1-12), proleptic Gregorian."""
    year = np.repeat(np.arange(10_000, dtype=np.int64), 16)
    month = np.tile(np.arange(16, dtype=np.int64), 10_000)
    months = ((year - 1970) * 12 + month - 1).astype("datetime64[M]")
    first = months.astype("datetime64[D]").astype(np.int64)
    length = (months + 1).astype("datetime64[D]").astype(np.int64) - first
    real = (month >= 1) & (month <= 12)
    return np.where(real, first, 0).astype(np.int32), np.where(real, length, 0).astype(np.uint8)


_MONTH_FIRST_DAY, _MONTH_DAYS = _month_tables()


def _parse_timestamps(col: pa.ChunkedArray) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """Parse ``MM/DD/YYYY HH:MM`` text exactly: (timestamp[s] values, bad mask, year*100+month).

    Zero-padded fields, a real calendar date, hour 0-23, minute 0-59; anything else is bad.
    Missing values stay null and are not bad; year*100+month is 0 where there is no value.
    """
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    n = len(arr)
    valid = _validity(arr)
    offsets = np.frombuffer(arr.buffers()[1], np.int32, count=n + 1, offset=arr.offset * 4)
    data_buf = arr.buffers()[2]
    data = (
        np.frombuffer(data_buf, np.uint8)
        if data_buf is not None and data_buf.size
        else np.zeros(16, np.uint8)
    )
    starts = offsets[:-1]
    idx = np.flatnonzero(valid & ((offsets[1:] - starts) == 16))
    k = len(idx)
    seconds = np.zeros(n, np.int64)
    good = np.zeros(n, bool)
    year_month = np.zeros(n, np.int32)
    if k:
        if int(offsets[n]) - int(offsets[0]) == 16 * k:
            # Every other value is empty (a missing time), so the 16-byte values lie back to
            # back: read them in place (the usual case).
            flat = data[int(offsets[0]) : int(offsets[0]) + 16 * k]
        else:
            flat = data[starts[idx][:, None] + np.arange(16, dtype=np.int32)].reshape(-1)

        def pair(at: int) -> np.ndarray:  # the two digits at byte ``at`` of every value, 0..99 or 255
            return _TS_PAIR[flat[at : at + 16 * k - 14].view("<u2")[::8]]

        month, day, hour, minute = pair(0), pair(3), pair(11), pair(14)
        century, year2 = pair(6), pair(8)
        ok = (month <= 12) & (day <= 31) & (century <= 99) & (year2 <= 99) & (hour <= 23) & (minute <= 59)
        for at, char in _TS_SEPARATORS:
            ok &= flat[at::16] == char
        if not ok.all():  # filter only when some value is bad (rare)
            idx = idx[ok]
            month, day, hour, minute = month[ok], day[ok], hour[ok], minute[ok]
            century, year2 = century[ok], year2[ok]
        year = century.astype(np.int32) * 100 + year2
        ym = year * 16 + month
        real = (day >= 1) & (day <= _MONTH_DAYS[ym])  # month 0 has 0 days: not real either
        if not real.all():
            idx, ym, year, month = idx[real], ym[real], year[real], month[real]
            day, hour, minute = day[real], hour[real], minute[real]
        good_idx = idx
        seconds[good_idx] = (
            (_MONTH_FIRST_DAY[ym].astype(np.int64) + day - 1) * 86400
            + hour.astype(np.int32) * 3600
            + minute.astype(np.int32) * 60
        )
        good[good_idx] = True
        year_month[good_idx] = year * 100 + month
    values = _arrow_from_numpy(pa.timestamp("s"), seconds, good)
    return values, valid & ~good, year_month


def _member_name(name: str) -> str:
    return name.rsplit("!", 1)[-1]
