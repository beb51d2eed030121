"""Reading one file: blocks cut at line breaks read ahead on a background thread, parsed by
worker threads, written behind."""

from __future__ import annotations

import io
import mmap
import os
import queue
import stat
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

from components.common import contract
from components.common.errors import UserError
from components.common.storage import TextSource

from .parse import (
    _BOM,
    _DELIM,
    _MONTH_FILE,
    N_FIELDS,
    PARSE_WORKERS,
    FileStats,
    _Block,
    _FileContext,
    _member_name,
    _parse_block,
)
from .writers import _PartitionWriter, _QuarantineWriter

BLOCK_SIZE = 8 << 20  # bytes of text parsed per step
MAX_LINE = 16 << 20  # a "line" longer than this is not a trip record: stop


def _ingest_file(
    src: TextSource,
    block_size: int,
    parts: _PartitionWriter,
    quarantine: _QuarantineWriter,
    writer: _Worker,
    pool: ThreadPoolExecutor,
    reasons: Counter,
    advance: Callable[..., None],
) -> FileStats:
    m = _MONTH_FILE.fullmatch(_member_name(src.name))
    assert m is not None
    ctx = _FileContext(src.name, src.uri, int(m["year"]) * 100 + int(m["month"]))
    stats = FileStats(src.name, src.uri, lines=1)
    pending: deque[Future[_Block]] = deque()

    def finish(block: _Block) -> None:
        advance(0, rows=block.rows)
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
        import urllib3  # an https source's body cut off or timed out mid-read

        read_errors += (urllib3.exceptions.HTTPError,)
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
    mapped = _map_local_file(stream)
    if mapped is not None:
        yield from _mapped_blocks(src, mapped, block_size, head_len, len(buf))
        return
    carry, line = buf[head_len:], 2
    while True:
        chunk = _read_full(stream, block_size)
        if not chunk:
            if carry:
                yield carry, len(carry), line, _count_breaks(carry, len(carry)), 0
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
        breaks = _count_breaks(data, end)
        yield data, end, line, breaks, len(chunk)
        line += breaks
        carry = data[end:]


def _map_local_file(stream: BinaryIO) -> mmap.mmap | None:
    """A read-only map of the whole file when ``stream`` is a local regular file, else None."""
    if not isinstance(stream, io.BufferedReader) or not isinstance(stream.raw, io.FileIO):
        return None
    try:
        fd = stream.fileno()
        if not stat.S_ISREG(os.fstat(fd).st_mode) or os.fstat(fd).st_size == 0:
            return None
        mapped = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):  # e.g. a file system that cannot map: read it as a stream
        return None
    with suppress(AttributeError, OSError):  # not every platform has madvise
        mapped.madvise(mmap.MADV_SEQUENTIAL)
    return mapped


def _mapped_blocks(
    src: TextSource, mapped: mmap.mmap, block_size: int, start: int, read_end: int
) -> Iterator[tuple[memoryview, int, int, int, int]]:
    """The blocks ``_file_blocks`` cuts from a stream, as views of a mapped local file (no read
    into a new buffer, no joining of the carried partial line): the same cuts at the same
    offsets (``read_end``: where a stream read would be, ``block_size`` further each step),
    so the output is the same byte for byte. ``start``: the first byte after the header."""
    size, pos, line = len(mapped), start, 2
    view = memoryview(mapped)
    # Pages behind the blocks still queued or being parsed are dropped from the map, so the
    # process holds a few blocks of the file, not all of it (a page touched again is read
    # back from the page cache: dropping too early costs time, never correctness).
    released, lag = 0, (PARSE_WORKERS + 3) * block_size
    while True:
        limit = min(read_end + block_size, size)
        consumed, read_end = limit - read_end, limit
        if consumed <= 0:
            if pos < size:  # the last line has no line break
                yield view[pos:size], size - pos, line, _count_breaks(view[pos:size], size - pos), 0
            return
        end = mapped.rfind(b"\n", pos, limit) + 1
        if end == 0:
            if limit - pos > MAX_LINE:
                raise UserError(
                    f"{src.uri}: line {line}: longer than {MAX_LINE >> 20} MiB; not a trip record"
                )
            yield b"", 0, line, 0, consumed
            continue
        block = view[pos:end]
        breaks = _count_breaks(block, end - pos)
        yield block, end - pos, line, breaks, consumed
        line += breaks
        pos = end
        released = _release(mapped, released, pos - lag)


def _release(mapped: mmap.mmap, released: int, upto: int) -> int:
    """Drop the mapped pages of ``[released, upto)`` (rounded down to pages); the new mark."""
    upto -= upto % mmap.PAGESIZE
    if upto <= released:
        return released
    with suppress(AttributeError, OSError):  # no madvise here: the pages stay mapped
        mapped.madvise(mmap.MADV_DONTNEED, released, upto - released)
    return upto


_COUNT_STEP = 1 << 18  # bytes compared per numpy call: the comparison's result stays in cache


def _count_breaks(data: bytes | memoryview, end: int) -> int:
    """The number of ``\\n`` in ``data[:end]``. numpy compares whole vectors (about 4x faster
    than ``bytes.count`` on a block, which matters on the reader thread at 2 cores), a
    quarter MiB at a time (half the time of one comparison over an 8 MiB block)."""
    text = np.frombuffer(data, np.uint8, count=end)
    return sum(int(np.count_nonzero(text[i : i + _COUNT_STEP] == 0x0A)) for i in range(0, end, _COUNT_STEP))


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
