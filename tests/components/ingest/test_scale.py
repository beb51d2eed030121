"""What bench-scale and the scale-out plan rely on: the progress feed counts every row, the
timestamp parser gives one answer whatever the layout of its input, and a month's output does
not depend on which other files were in the run (so ingest can split by file across tasks)."""

from __future__ import annotations

import shutil
from contextlib import contextmanager

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from components.generate import core as generate_core
from components.ingest import core, parse

from .conftest import COUNT_KEYS, row, run, write_file


def test_progress_feed_counts_every_byte_and_row(generated, tmp_path, monkeypatch) -> None:
    seen = {"bytes": 0, "rows": 0, "calls": 0, "total": None, "rows_shown": None}

    @contextmanager
    def recorder(total, description, *, enabled=None, unit="bytes", rows=False):
        seen["total"], seen["rows_shown"] = total, rows

        def advance(n, rows=0):
            seen["bytes"] += n
            seen["rows"] += rows
            seen["calls"] += 1

        yield advance

    monkeypatch.setattr(core, "progress_bar", recorder)
    summary = core.run(
        core.IngestConfig(source_uri=str(generated), output_uri=str(tmp_path / "raw"), block_size=1 << 16)
    )
    assert seen["rows_shown"] is True
    assert seen["rows"] == summary["rows_read"] == 20_000
    assert seen["bytes"] == summary["bytes_read"] == seen["total"]
    assert seen["calls"] > 20  # per block, so the bar moves during a file


def _ts_result(col):
    values, bad, year_month = parse._parse_timestamps(col)
    return values.to_pylist(), bad.tolist(), year_month.tolist()


def test_timestamps_parse_the_same_packed_or_not() -> None:
    good = [
        "01/12/2015 12:42",
        "02/29/2016 00:00",
        "12/31/2019 23:59",
        "02/29/2015 10:00",
        "13/01/2015 10:00",
    ]
    packed = pa.array(
        [good[0], None, good[1], good[2], None, good[3], good[4]]
    )  # 16-byte values back to back
    assert np.frombuffer(packed.buffers()[1], np.int32)[-1] == 16 * 5
    mixed = pa.array([good[0], None, good[1], good[2], "1/2/2015 1:00", good[3], good[4]])  # not back to back
    a, b = _ts_result(packed), _ts_result(mixed)
    assert a[0] == b[0]
    assert a[2] == b[2] == [201501, 0, 201602, 201912, 0, 0, 0]
    assert a[1] == [False, False, False, False, False, True, True]
    assert b[1] == [False, False, False, False, True, True, True]  # "1/2/2015 1:00" is bad text
    # a slice (non-zero offset) and a chunked column read the same values
    assert _ts_result(packed.slice(2)) == tuple(x[2:] for x in a)
    chunked = pa.chunked_array([packed.slice(0, 3), packed.slice(3)])
    assert _ts_result(chunked) == a


def test_timestamps_packed_path_matches_a_python_parser() -> None:
    rng = np.random.default_rng(5)
    text = [
        None if rng.random() < 0.2 else
        f"{rng.integers(0, 14):02d}/{rng.integers(0, 33):02d}/{rng.integers(2014, 2021)} "
        f"{rng.integers(0, 25):02d}:{rng.integers(0, 61):02d}"
        for _ in range(5000)
    ]  # fmt: skip
    values, bad, _ = _ts_result(pa.array(text))
    from datetime import datetime

    for t, v, b in zip(text, values, bad, strict=True):
        if t is None:
            assert v is None and not b
            continue
        try:
            expected = datetime.strptime(t, "%m/%d/%Y %H:%M")
        except ValueError:
            expected = None
        assert (v, b) == (expected, expected is None), t


def _reference_timestamp(text: str):
    """MM/DD/YYYY HH:MM, zero-padded ASCII digits, a real date: datetime or None (bad)."""
    from datetime import datetime

    raw = text.encode()
    digits = (0, 1, 3, 4, 6, 7, 8, 9, 11, 12, 14, 15)
    if len(raw) != 16 or raw[2:3] + raw[5:6] + raw[10:11] + raw[13:14] != b"// :":
        return None
    if not all(0x30 <= raw[i] <= 0x39 for i in digits):
        return None
    month, day, year, hour, minute = (int(raw[a:b]) for a, b in ((0, 2), (3, 5), (6, 10), (11, 13), (14, 16)))
    try:
        return datetime(year, month, day, hour, minute)
    except ValueError:
        return None


def test_timestamps_match_a_reference_on_damaged_text() -> None:
    """Random dates over years 0001-9999 (leap rules of 1900, 2000, 2100), with bytes replaced by
    anything (digits, separators, non-ASCII) or cut short: the parser agrees with a Python one."""
    rng = np.random.default_rng(11)
    text: list[str | None] = []
    for _ in range(20_000):
        if rng.random() < 0.1:
            text.append(None)
            continue
        year = int(rng.choice([1, 1900, 2000, 2015, 2016, 2100, 9999, int(rng.integers(1, 10_000))]))
        value = (
            f"{rng.integers(0, 14):02d}/{rng.integers(0, 33):02d}/{year:04d} "
            f"{rng.integers(0, 25):02d}:{rng.integers(0, 61):02d}"
        )
        if rng.random() < 0.2:
            chars = list(value)
            chars[int(rng.integers(0, 16))] = chr(int(rng.choice([int(rng.integers(32, 127)), 0xE9, 0x663])))
            value = "".join(chars)
        if rng.random() < 0.03:
            value = value[: int(rng.integers(0, 16))]
        text.append(value)
    for arr in (pa.array(text), pa.array(text).slice(7)):
        values, bad, year_month = _ts_result(arr)
        for t, v, b, ym in zip(arr.to_pylist(), values, bad, year_month, strict=True):
            expected = None if t is None else _reference_timestamp(t)
            assert v == expected, t
            assert b == (t is not None and expected is None), t
            assert ym == (expected.year * 100 + expected.month if expected else 0), t


def test_a_month_is_written_the_same_whatever_else_the_run_read(tmp_path) -> None:
    """Ingest split by yearly archive (one task each) writes each month exactly as one run does."""
    src = tmp_path / "src"
    generate_core.run(
        generate_core.GenerateConfig(
            output_uri=str(src), rows=6_000, months="2015-11:2016-02", seed=4, zip=True
        )
    )
    whole = run(src, tmp_path / "whole")
    pieces = []
    for year in (2015, 2016):
        one = tmp_path / f"in-{year}"
        one.mkdir()
        shutil.copy(src / f"taxi_{year}.zip", one)
        pieces.append(run(one, tmp_path / f"out-{year}"))
    assert sum(p["rows_read"] for p in pieces) == whole["rows_read"]
    merged = {k: v for p in pieces for k, v in p["partitions"].items()}
    assert merged == whole["partitions"]
    for i, year in enumerate((2015, 2016)):
        for rel in pieces[i]["parquet_files"]:
            got = pq.read_table(tmp_path / f"out-{year}" / rel)
            assert got.equals(pq.read_table(tmp_path / "whole" / rel)), rel


def test_invalid_rows_still_add_up_with_the_progress_bar_on(tmp_path) -> None:
    src = write_file(
        tmp_path / "in" / "taxi_2015_01.txt", [row(1), row(2, ORIGINDATETIME_TR="1/2/2015 1:00")]
    )
    summary = core.run(
        core.IngestConfig(source_uri=str(src), output_uri=str(tmp_path / "raw"), progress=True)
    )
    assert (summary["rows_written"], summary["rows_quarantined"]) == (1, 1)


def test_ingest_of_clean_rows_does_not_import_pandas(generated, tmp_path) -> None:
    """pyarrow imports pandas on the first ``pa.array``/``pa.scalar``/``to_numpy(zero_copy_only=False)``
    (0.2 CPU-s of a 2 s run at 2M rows); the parse path builds its arrays without them. Nor
    does a block whose values all convert need ``pyarrow.compute`` (27 ms of the start-up)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from components.ingest import core\n"
        f"core.run(core.IngestConfig(source_uri={str(generated)!r}, output_uri={str(tmp_path / 'raw')!r}))\n"
        "print('pandas' in sys.modules, 'pyarrow.compute' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-2:] == ["False", "False"], out.stdout + out.stderr


def test_a_mapped_local_file_is_read_as_the_stream_reads_it(tmp_path, monkeypatch) -> None:
    """Local files are read through a memory map; the blocks, and so every output byte, the
    quarantine and the summary, are those of the stream reader (zip, S3, HTTP sources)."""
    from components.ingest import files

    lines: list[str | bytes] = []
    for i in range(1, 3000):
        lines.append(row(i))
        if i % 97 == 0:
            lines.append("")  # blank line
        if i % 211 == 0:
            lines.append(row(i, FAREAMOUNT="abc"))
        if i % 307 == 0:
            lines.append(row(i).encode().replace(b"|", b"\r", 1))
    path = write_file(tmp_path / "src" / "taxi_2015_03.txt", lines)
    path.write_bytes(path.read_bytes() + row(5000).encode())  # the last line has no line break
    calls: list[int] = []
    real_map = files._map_local_file
    monkeypatch.setattr(files, "_map_local_file", lambda s: calls.append(1) or real_map(s))
    mapped = run(path, tmp_path / "mapped", block_size=4096)
    monkeypatch.setattr(files, "_map_local_file", lambda s: None)
    streamed = run(path, tmp_path / "streamed", block_size=4096)
    assert calls and mapped["rows_quarantined"] > 0 and mapped["blank_lines"] > 0
    for key in (*COUNT_KEYS, "bytes_read"):
        assert mapped[key] == streamed[key], key
    assert mapped["parquet_files"] == streamed["parquet_files"]
    for rel in [*mapped["parquet_files"], "_quarantine/part-00000.parquet"]:
        assert (tmp_path / "mapped" / rel).read_bytes() == (tmp_path / "streamed" / rel).read_bytes(), rel
