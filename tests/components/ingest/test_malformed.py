"""A corpus of malformed inputs: each ends in one exact error line, or in exact quarantine
rows (line number, reason, raw bytes) with every other row written and the invariant holding.

Every case runs twice: with the default block size and with tiny 1 KiB blocks, so the
fast path, the text-cast path and the line-by-line path all see it, and block
boundaries fall inside the data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
import pytest

from components.common import contract
from components.common.errors import UserError

from .conftest import assert_invariant, quarantine_of, read_raw, row, run, write_file

NAME = "taxi_2015_01.txt"
HEADER_HINT = "expected 27 '|'-separated columns OBJECTID|TRIPTYPE|..."


@dataclass
class Case:
    lines: list[str | bytes] = field(default_factory=list)  # data lines after the header
    raw: bytes | None = None  # the whole file instead (no header added)
    newline: bytes = b"\n"
    error: str | None = None  # exact UserError message; {path} is the file
    quarantined: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)
    written: int | None = None  # default: data lines - quarantined - blanks
    blanks: int = 0
    check: Callable[[pa.Table], None] | None = None  # more assertions on the raw rows


def _no_cr(t: pa.Table) -> None:
    assert all("\r" not in v for v in t.column("DESTINATIONDATETIME_TR").cast(pa.string()).to_pylist())
    assert t.column("DESTINATIONDATETIME_TR").null_count == 0


def _all_null(t: pa.Table) -> None:
    assert t.num_rows == 1
    for name in contract.RAW_COLUMNS:
        assert t.column(name).null_count == 1, name
    assert (t.column("year")[0].as_py(), t.column("month")[0].as_py()) == (2015, 1)  # from the file name


def _huge_ok(t: pa.Table) -> None:
    assert t.column("FAREAMOUNT").to_pylist() == [745557.28, 1e308, -2064.71]


def _quotes_literal(t: pa.Table) -> None:
    assert t.column("PROVIDERNAME").to_pylist() == ['"Yellow Cab"']


def _padded(t: pa.Table) -> None:
    assert t.column("FAREAMOUNT").to_pylist() == [12.5, 12.5]
    assert t.column("DURATION").to_pylist() == [7.0, 7.0]
    assert t.column("OBJECTID").to_pylist() == [1, 3]


def _empty_fields(t: pa.Table) -> None:
    assert t.column("FAREAMOUNT").null_count == 1 and t.column("TRIPTYPE").null_count == 1
    assert t.column("ORIGINDATETIME_TR").null_count == 1 and t.column("ORIGINZIP").null_count == 1
    assert (t.column("year")[0].as_py(), t.column("month")[0].as_py()) == (2015, 1)


def _fares(t: pa.Table, expected: list) -> None:
    assert t.column("FAREAMOUNT").to_pylist() == expected


def _beyond_ascii(t: pa.Table) -> None:
    assert t.column("PROVIDERNAME").to_pylist() == ["Transco", "Café Cab", "Transco"]
    assert t.column("ORIGINCITY").to_pylist()[1] == "Montréal"
    assert t.column("AIRPORT").to_pylist() == ["N", "N", "ü"]


def _other_month(t: pa.Table) -> None:
    months = dict(zip(t.column("OBJECTID").to_pylist(), t.column("month").to_pylist(), strict=True))
    assert months == {1: 1, 2: 2, 3: 1}  # pick-up month; no pick-up time: the file's month
    assert t.column("ORIGINDATETIME_TR")[1].as_py().isoformat() == "2015-02-01T00:00:00"


def _bad_utf8_row() -> bytes:
    return row(2).replace("Transco", "Yellow \udcff Cab").encode("utf-8", "surrogateescape")


def _drop_field(line: str, name: str) -> str:
    parts = line.split("|")
    del parts[contract.RAW_COLUMNS.index(name)]
    return "|".join(parts)


CASES: dict[str, Case] = {
    "empty file": Case(raw=b"", error="{path}: empty file (expected the header line OBJECTID|...)"),
    "header only": Case(lines=[], written=0),
    "header only, no final newline": Case(raw=contract.HEADER_LINE.encode(), written=0),
    "header only, CRLF": Case(lines=[], newline=b"\r\n", written=0),
    "wrong header (commas)": Case(
        raw=(contract.HEADER_LINE.replace("|", ",") + "\n" + row(1).replace("|", ",") + "\n").encode(),
        error="{path}: line 1: header is not the DC taxi trip format ("
        + HEADER_HINT
        + ", got 1 field: 'OBJECTID,TRIPTYPE,PROVIDERNAME,FAREAMOUNT,GRATUITYAMOUNT,SUR...')",
    ),
    "header missing a column": Case(
        raw=(_drop_field(contract.HEADER_LINE, "AIRPORT") + "\n" + row(1) + "\n").encode(),
        error="{path}: line 1: header is not the DC taxi trip format ("
        + HEADER_HINT
        + ", got 26 fields: 'OBJECTID|TRIPTYPE|PROVIDERNAME|FAREAMOUNT|GRATUITYAMOUNT|SUR...')",
    ),
    "no header (data first)": Case(
        raw=(row(1) + "\n" + row(2) + "\n").encode(),
        error="{path}: line 1: header is not the DC taxi trip format ("
        + HEADER_HINT
        + ", got 27 fields: '1|1|Transco|13.52|0.00|0.25|0.00|0.00|13.77|1|WASHINGTON|DC|...')",
    ),
    "binary garbage": Case(
        raw=bytes(range(256)) * 4,
        error="{path}: line 1: header is not the DC taxi trip format ("
        + HEADER_HINT
        + ", got 1 field: '\\x00\\x01\\x02\\x03\\x04\\x05\\x06\\x07\\x08\\t')",
    ),
    "UTF-8 BOM before the header": Case(
        raw=b"\xef\xbb\xbf" + (contract.HEADER_LINE + "\n" + row(1) + "\n").encode(), written=1
    ),
    "CRLF line endings": Case(
        lines=[row(1), row(2), row(3, FAREAMOUNT="12,3"), row(4)],
        newline=b"\r\n",
        quarantined=[(4, "FAREAMOUNT: not a number: '12,3'")],
        check=_no_cr,
    ),
    "truncated last line (no newline)": Case(
        raw=(contract.HEADER_LINE + "\n" + row(1) + "\n" + row(2)[:100]).encode(),
        quarantined=[(3, "expected 27 fields, got 19")],
    ),
    "missing field": Case(
        lines=[row(1), _drop_field(row(2), "TOLLAMOUNT"), row(3)],
        quarantined=[(3, "expected 27 fields, got 26")],
    ),
    "extra field": Case(
        lines=[row(1), row(2) + "|N", row(3)], quarantined=[(3, "expected 27 fields, got 28")]
    ),
    "trailing delimiter": Case(lines=[row(1) + "|", row(2)], quarantined=[(2, "expected 27 fields, got 28")]),
    "invalid UTF-8": Case(
        lines=[row(1), _bad_utf8_row(), row(3)],
        quarantined=[(3, "invalid UTF-8: byte 0xff at position 12")],
    ),
    "pipes inside quotes (no quoting in this format)": Case(
        lines=[row(1, PROVIDERNAME='"Yellow|Cab"'), row(2, PROVIDERNAME='"Yellow Cab"')],
        quarantined=[(2, "expected 27 fields, got 28")],
        check=_quotes_literal,
    ),
    "huge numbers": Case(
        lines=[
            row(1, FAREAMOUNT="745557.28"),
            row(2, FAREAMOUNT="1e308"),
            row(3, FAREAMOUNT="1e400"),
            row(99999999999999999999),
            row(5, TRIPTYPE="2147483648"),
            row(6, FAREAMOUNT="-2064.71"),
        ],
        quarantined=[
            (4, "FAREAMOUNT: not a finite number: '1e400'"),
            (5, "OBJECTID: not an integer (int64): '99999999999999999999'"),
            (6, "TRIPTYPE: not an integer (int32): '2147483648'"),
        ],
        check=_huge_ok,
    ),
    "garbage timestamps": Case(
        lines=[
            row(1),
            row(2, ORIGINDATETIME_TR="13/45/2015 99:99"),
            row(3, DESTINATIONDATETIME_TR="2015-01-13 15:00"),
            row(4, ORIGINDATETIME_TR="02/30/2015 10:00"),
            row(5, ORIGINDATETIME_TR="1/2/2015 3:04"),
            row(6, DESTINATIONDATETIME_TR="yesterday"),
            row(7, ORIGINDATETIME_TR="02/29/2016 23:59"),
        ],
        quarantined=[
            (3, "ORIGINDATETIME_TR: not a MM/DD/YYYY HH:MM timestamp: '13/45/2015 99:99'"),
            (4, "DESTINATIONDATETIME_TR: not a MM/DD/YYYY HH:MM timestamp: '2015-01-13 15:00'"),
            (5, "ORIGINDATETIME_TR: not a MM/DD/YYYY HH:MM timestamp: '02/30/2015 10:00'"),
            (6, "ORIGINDATETIME_TR: not a MM/DD/YYYY HH:MM timestamp: '1/2/2015 3:04'"),
            (7, "DESTINATIONDATETIME_TR: not a MM/DD/YYYY HH:MM timestamp: 'yesterday'"),
        ],
    ),
    "NULL everywhere": Case(lines=["|".join(["NULL"] * 27)], check=_all_null),
    "empty fields are missing values": Case(
        lines=[row(1, FAREAMOUNT="", TRIPTYPE="", ORIGINDATETIME_TR="", ORIGINZIP="")], check=_empty_fields
    ),
    "blank lines": Case(
        lines=[row(1), "", row(2), "\r", "", row(3), ""],
        blanks=4,
        written=3,
    ),
    "whitespace-only line": Case(
        lines=[row(1), "   ", row(2)], quarantined=[(3, "expected 27 fields, got 1")]
    ),
    "not a number": Case(
        lines=[row(1, MILEAGE="abc"), row(2, DURATION="1 2"), row(3, TOLLAMOUNT="$1.00"), row(4)],
        quarantined=[
            (2, "MILEAGE: not a number: 'abc'"),
            (3, "DURATION: not a number: '1 2'"),
            (4, "TOLLAMOUNT: not a number: '$1.00'"),
        ],
    ),
    "nan and infinity": Case(
        lines=[row(1, FAREAMOUNT="nan"), row(2, GRATUITYAMOUNT="inf"), row(3, MILEAGE="-Infinity"), row(4)],
        quarantined=[
            (2, "FAREAMOUNT: not a finite number: 'nan'"),
            (3, "GRATUITYAMOUNT: not a finite number: 'inf'"),
            (4, "MILEAGE: not a finite number: '-Infinity'"),
        ],
    ),
    "a missing number beside a nan": Case(
        lines=[row(1, FAREAMOUNT=""), row(2, FAREAMOUNT="nan"), row(3, FAREAMOUNT="NULL"), row(4)],
        quarantined=[(3, "FAREAMOUNT: not a finite number: 'nan'")],
        check=lambda t: _fares(t, [None, None, 13.52]),
    ),
    "text beyond ASCII": Case(
        lines=[row(1), row(2, PROVIDERNAME="Café Cab", ORIGINCITY="Montréal"), row(3, AIRPORT="ü")],
        check=_beyond_ascii,
    ),
    "integer written as a decimal": Case(
        lines=[row(1, TRIPTYPE="1.0"), row(2)], quarantined=[(2, "TRIPTYPE: not an integer (int32): '1.0'")]
    ),
    "first bad field is reported": Case(
        lines=[row(1, TRIPTYPE="x", FAREAMOUNT="y", ORIGINDATETIME_TR="z")],
        quarantined=[(2, "TRIPTYPE: not an integer (int32): 'x'")],
    ),
    "stray carriage return inside a line": Case(
        lines=[row(1), row(2, PROVIDERNAME="Yellow\rCab"), row(3)],
        quarantined=[(3, "carriage return (\\r) inside the line at position 11")],
    ),
    "spaces around numbers (as pyarrow's parser allows)": Case(
        lines=[row(1, FAREAMOUNT=" 12.50", DURATION="\t7"), "", row(3, FAREAMOUNT="12.5 ", DURATION="7 ")],
        blanks=1,
        check=_padded,
    ),
    "spaces around numbers, no other defect in the block": Case(
        lines=[row(1, FAREAMOUNT=" 12.50", DURATION="\t7"), row(3, FAREAMOUNT="12.5 ", DURATION="7 ")],
        check=_padded,
    ),
    "pick-up in another month": Case(
        lines=[row(1), row(2, ORIGINDATETIME_TR="02/01/2015 00:00"), row(3, ORIGINDATETIME_TR="NULL")],
        check=_other_month,
    ),
}


def _data_lines(case: Case) -> list[bytes]:
    """The physical data lines (after the header), without their line ends."""
    if case.raw is not None:
        return case.raw.split(b"\n")[1:]
    return [x if isinstance(x, bytes) else x.encode() for x in case.lines]


@pytest.mark.parametrize("block_size", [None, 1024], ids=["default-blocks", "1KiB-blocks"])
@pytest.mark.parametrize("name", list(CASES))
def test_malformed(name: str, block_size: int | None, tmp_path) -> None:
    case = CASES[name]
    path = tmp_path / "in" / NAME
    if case.raw is not None:
        path.parent.mkdir()
        path.write_bytes(case.raw)
    else:
        write_file(path, case.lines, newline=case.newline)
    out = tmp_path / "out"
    kwargs = {"block_size": block_size} if block_size else {}
    if case.error is not None:
        with pytest.raises(UserError) as err:
            run(path.parent, out, **kwargs)
        assert str(err.value) == case.error.format(path=path)
        assert "\n" not in str(err.value)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]  # no output, no staging left
        return
    summary = run(path.parent, out, **kwargs)
    assert_invariant(summary)
    lines = _data_lines(case)
    written = case.written
    if written is None:
        written = len(lines) - len(case.quarantined) - case.blanks
    assert summary["rows_written"] == written
    assert summary["rows_quarantined"] == len(case.quarantined)
    assert summary["blank_lines"] == case.blanks
    quarantine = quarantine_of(out)
    got = list(
        zip(
            quarantine.column("source_line").to_pylist(), quarantine.column("reason").to_pylist(), strict=True
        )
    )
    assert got == case.quarantined
    for number, raw in zip(
        quarantine.column("source_line").to_pylist(), quarantine.column("raw_line").to_pylist(), strict=True
    ):
        assert raw == lines[number - 2].removesuffix(b"\r")  # the bytes as read, without the line end
    assert set(quarantine.column("source_file").to_pylist()) <= {NAME}
    raw = read_raw(out)
    assert raw.num_rows == written
    assert raw.drop_columns(["year", "month"]).schema == contract.RAW_SCHEMA
    quarantined_lines = {n for n, _ in case.quarantined}
    blank_lines = {i + 2 for i, x in enumerate(lines) if not x.removesuffix(b"\r")}
    expected_lines = [
        i + 2
        for i in range(len(lines))
        if i + 2 not in quarantined_lines | blank_lines
        and not (case.raw is not None and i == len(lines) - 1 and not lines[i])
    ]
    assert raw.column("source_line").to_pylist() == expected_lines
    assert not any(isinstance(v, float) and math.isnan(v) for v in raw.column("FAREAMOUNT").to_pylist())
    if case.check:
        case.check(raw)


def test_corpus_is_big_enough() -> None:
    assert len(CASES) >= 15


NUMBER_EDGES = [" 1.5", "1.5 ", "\t2", "  ", "+3", ".5", "5.", "1e5", "1E-3", "-0", "00012", "0x10", "1_0"]
NUMBER_EDGES += ["١٢", "--1", "1e", "e5", " NULL", "null", "NaN", "N/A", "1.5.1", "∞"]
INTEGER_EDGES = [" 1", "01", "+1", "-0", "1.0", "1e2", "2147483647", "-2147483648", "2147483648", " ", "x"]


def _outcome(tmp_path, tag: str, column: str, value: str, companions: list[str]):
    src = write_file(tmp_path / tag / NAME, [row(1, **{column: value}), *companions])
    summary = run(src, tmp_path / f"{tag}-out")
    raw = read_raw(tmp_path / f"{tag}-out")
    mine = raw.filter(pa.compute.equal(raw.column("source_line"), 2))
    if mine.num_rows:
        return ("value", mine.column(column)[0].as_py())
    q = quarantine_of(tmp_path / f"{tag}-out")
    assert summary["rows_quarantined"] >= 1
    return ("quarantined", q.column("reason")[0].as_py())


@pytest.mark.parametrize(
    ("column", "value"),
    [("FAREAMOUNT", v) for v in NUMBER_EDGES] + [("TRIPTYPE", v) for v in INTEGER_EDGES],
)
def test_every_path_judges_a_value_alike(column: str, value: str, tmp_path) -> None:
    """A value gets the same verdict on the typed fast path (alone in its block), the
    text-cast path (a bad number elsewhere in the block) and the line-by-line path (a blank
    line in the block)."""
    alone = _outcome(tmp_path, "alone", column, value, [])
    cast_path = _outcome(tmp_path, "cast", column, value, [row(3, MILEAGE="bad")])
    line_path = _outcome(tmp_path, "lines", column, value, ["", row(4)])
    assert alone == cast_path == line_path
