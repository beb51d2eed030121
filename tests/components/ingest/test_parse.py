"""The parse's fast-path pieces against the plain way of doing the same thing: the UTF-8
check skipped only for ASCII blocks, the chunked line-break count, the numpy finite check."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from components.ingest import files, parse

from .conftest import read_raw, row, run, write_file


def test_only_ascii_blocks_skip_the_utf8_check(tmp_path, monkeypatch) -> None:
    seen: list[tuple[bool, bool]] = []  # (block is ASCII, parsed with the UTF-8 check)
    real = parse._read_csv

    def spy(data, options):
        seen.append((bytes(data).isascii(), options.check_utf8))
        return real(data, options)

    monkeypatch.setattr(parse, "_read_csv", spy)
    lines = [row(i, ORIGINCITY="Montréal" if i % 7 == 0 else "WASHINGTON") for i in range(1, 60)]
    src = write_file(tmp_path / "in" / "taxi_2015_01.txt", lines)
    summary = run(src, tmp_path / "out", block_size=1024)  # a few rows per block
    assert summary["rows_written"] == 59
    assert {ascii_only for ascii_only, _ in seen} == {True, False}  # both kinds of block were parsed
    assert all(check == (not ascii_only) for ascii_only, check in seen)
    cities = read_raw(tmp_path / "out").column("ORIGINCITY").to_pylist()
    assert cities == ["Montréal" if i % 7 == 0 else "WASHINGTON" for i in range(1, 60)]


@pytest.mark.parametrize("size", [0, 1, files._COUNT_STEP - 1, files._COUNT_STEP, 3 * files._COUNT_STEP + 5])
def test_line_breaks_are_counted_across_steps(size: int) -> None:
    rng = np.random.default_rng(size)
    data = rng.choice(np.frombuffer(b"ab|\n", np.uint8), size=size).tobytes()
    for end in {size, size // 2, max(size - 1, 0)}:
        assert files._count_breaks(memoryview(data), end) == data[:end].count(b"\n")


def _doubles(rng, n: int) -> pa.Array:
    values = rng.normal(size=n)
    values[rng.random(n) < 0.05] = np.nan
    values[rng.random(n) < 0.05] = np.inf
    values[rng.random(n) < 0.05] = -np.inf
    return pa.array(values, mask=rng.random(n) < 0.1)


def test_the_finite_check_matches_pyarrow_compute() -> None:
    rng = np.random.default_rng(1)
    chunked = pa.chunked_array([_doubles(rng, 1000), _doubles(rng, 37).slice(5, 20), _doubles(rng, 64)])
    cases = [chunked, chunked.chunk(1), pa.chunked_array([pa.array([1.0, None, 2.0])])]
    cases += [
        pa.chunked_array([], pa.float64()),
        pa.chunked_array([pa.array([], pa.float64()), _doubles(rng, 9)]),
    ]
    for col in cases:
        expected = pc.invert(pc.fill_null(pc.is_finite(col), True))
        expected = np.array(expected.to_pylist(), bool)
        got = parse._non_finite(col)
        if not expected.any():
            assert got is None
        else:
            assert got is not None and got.tolist() == expected.tolist()


def test_validity_reads_the_bitmap_at_an_offset() -> None:
    arr = pa.array([1, None, 3, None, None, 6, 7, None, 9, 10])
    for start in range(len(arr)):
        piece = arr.slice(start, len(arr) - start)
        assert parse._validity(piece).tolist() == piece.is_valid().to_pylist()
