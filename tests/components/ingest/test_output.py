"""Output behaviour: values match an independent parse, block boundaries change nothing,
runs are deterministic, a failed run leaves nothing that looks complete, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.common import contract, staged
from components.common.errors import UserError
from components.common.storage import (
    INCOMPLETE_MARKER,
    SUCCESS_MARKER,
    output_is_complete,
    require_complete,
)
from components.ingest import core, files, writers

from .conftest import COUNT_KEYS, assert_invariant, quarantine_of, read_raw, row, run, write_file


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- values -------------------------------------------------------------------------------


def test_values_match_an_independent_pandas_parse(generated, tmp_path) -> None:
    summary = run(generated, tmp_path / "raw")
    assert summary["rows_quarantined"] == 0  # the generator's defects are about meaning, not syntax
    got = read_raw(tmp_path / "raw")
    frames = []
    for path in sorted(generated.glob("taxi_*.txt")):
        df = pd.read_csv(path, sep="|", dtype=str, keep_default_na=False, na_filter=False)
        df["source_line"] = np.arange(2, len(df) + 2)
        df["file_month"] = int(path.stem[-2:])
        frames.append(df)
    want = pd.concat(frames, ignore_index=True)
    assert got.num_rows == len(want)
    assert got.column("source_line").to_pylist() == want["source_line"].tolist()

    def text(name: str) -> pd.Series:
        return want[name].where(want[name] != contract.NULL_TOKEN)

    for name in contract.RAW_COLUMNS:
        typ = contract.RAW_SCHEMA.field(name).type
        values = got.column(name).to_pandas()
        if pa.types.is_timestamp(typ):
            expected = pd.to_datetime(text(name), format=contract.TIMESTAMP_FORMAT)
            assert (values.isna() == expected.isna()).all(), name
            assert (values[values.notna()].values == expected[expected.notna()].values).all(), name
        elif pa.types.is_string(typ):
            assert values.fillna("<null>").tolist() == text(name).fillna("<null>").tolist(), name
        else:
            expected = pd.to_numeric(text(name))
            np.testing.assert_array_equal(
                values.to_numpy(dtype=float), expected.to_numpy(dtype=float), err_msg=name
            )
    pickup = pd.to_datetime(text(contract.TIMESTAMP_COLUMNS[0]), format=contract.TIMESTAMP_FORMAT)
    month = pickup.dt.month.fillna(want["file_month"]).astype(int)
    assert got.column("month").to_pylist() == month.tolist()
    assert set(got.column("year").to_pylist()) == {2015}


# --- block boundaries ---------------------------------------------------------------------

DEFECTS = [
    (lambda line: line + "|extra", "field_count"),
    (lambda line: line.rsplit("|", 1)[0], "field_count"),
    (lambda line: "", "blank"),
    (lambda line: line.replace("|", "|12,5|", 1).rsplit("|", 1)[0], "bad"),  # OBJECTID ok, TRIPTYPE bad
    (lambda line: line[:-5] + "99:99", "bad_timestamp"),
]


@pytest.fixture(scope="module")
def damaged(generated, tmp_path_factory) -> tuple[Path, dict[int, str]]:
    """January's generated file with defects at known lines (some adjacent, some far apart)."""
    lines = (generated / "taxi_2015_01.txt").read_text().splitlines()
    positions = sorted({*range(5, len(lines), 389), 6, 7, len(lines) - 1})
    defects: dict[int, str] = {}
    for i, pos in enumerate(positions):
        change, kind = DEFECTS[i % len(DEFECTS)]
        lines[pos] = change(lines[pos])
        defects[pos + 1] = kind  # physical line numbers are 1-based
    path = tmp_path_factory.mktemp("damaged") / "taxi_2015_01.txt"
    path.write_text("\r\n".join(lines) + "\r\n")
    return path, defects


@pytest.mark.parametrize("block_size", [1024, 7001, 65536])
def test_block_size_changes_nothing(damaged, block_size, tmp_path) -> None:
    path, defects = damaged
    reference = run(path, tmp_path / "ref")
    summary = run(path, tmp_path / "raw", block_size=block_size)
    assert_invariant(summary)
    for key in (*COUNT_KEYS, "partitions"):
        assert summary[key] == reference[key], key
    assert read_raw(tmp_path / "raw").equals(read_raw(tmp_path / "ref"))
    assert quarantine_of(tmp_path / "raw").equals(quarantine_of(tmp_path / "ref"))
    q = quarantine_of(tmp_path / "raw")
    bad = {line for line, kind in defects.items() if kind != "blank"}
    assert q.column("source_line").to_pylist() == sorted(bad)
    assert summary["blank_lines"] == sum(kind == "blank" for kind in defects.values())
    written = set(read_raw(tmp_path / "raw").column("source_line").to_pylist())
    assert not written & set(defects)
    assert len(written) == summary["rows_written"]


# --- determinism and atomic commit ----------------------------------------------------------


def test_rerun_gives_identical_files(generated, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(writers, "ROW_GROUP_ROWS", 3000)
    monkeypatch.setattr(writers, "FILE_ROWS", 7000)  # several part files per partition
    run(generated, tmp_path / "a")
    run(generated, tmp_path / "b")
    first = _tree(tmp_path / "a")
    second = _tree(tmp_path / "b")
    assert first.pop(SUCCESS_MARKER) != second.pop(SUCCESS_MARKER)  # the summary names its output
    assert first == second
    first = _tree(tmp_path / "a")
    assert "year=2015/month=1/part-00001.parquet" in first
    run(generated, tmp_path / "a")  # replacing an earlier output in place
    assert _tree(tmp_path / "a") == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no staging left behind
    marker = json.loads(first[SUCCESS_MARKER])
    assert "seconds" not in marker and marker["rows_read"] == 20_000 and marker["step"] == "ingest"


class Injected(Exception):
    pass


def _fail_on_call(monkeypatch, n: int) -> None:
    add = writers._PartitionWriter.add
    calls = {"n": 0}

    def failing(self, *args):
        calls["n"] += 1
        if calls["n"] == n:
            raise Injected("disk on fire")
        return add(self, *args)

    monkeypatch.setattr(writers._PartitionWriter, "add", failing)
    monkeypatch.setattr(writers, "ROW_GROUP_ROWS", 500)  # Parquet files exist before the failure


def test_failed_run_leaves_no_output(generated, tmp_path, monkeypatch) -> None:
    _fail_on_call(monkeypatch, 30)
    with pytest.raises(Injected):
        run(generated, tmp_path / "raw", block_size=16384)
    assert list(tmp_path.iterdir()) == []


def test_failed_rerun_keeps_the_previous_output(generated, tmp_path, monkeypatch) -> None:
    run(generated, tmp_path / "raw")
    before = _tree(tmp_path / "raw")
    _fail_on_call(monkeypatch, 30)
    with pytest.raises(Injected):
        run(generated, tmp_path / "raw", block_size=16384)
    assert _tree(tmp_path / "raw") == before
    assert [p.name for p in tmp_path.iterdir()] == ["raw"]


def test_failed_run_on_s3_never_looks_complete(s3, generated, tmp_path, monkeypatch) -> None:
    s3.bucket("lake")
    run(generated, "s3://lake/raw")
    assert output_is_complete("s3://lake/raw")
    with monkeypatch.context() as patch:
        _fail_on_call(patch, 30)
        with pytest.raises(Injected):
            run(generated, "s3://lake/raw", block_size=16384)
    assert s3.keys("lake", "raw/") == ["raw/_INCOMPLETE"]  # partial files cleaned up, marker kept
    assert not output_is_complete("s3://lake/raw")
    with pytest.raises(UserError, match="no _SUCCESS marker"):
        require_complete("s3://lake/raw")
    with pytest.raises(UserError, match="the ingest step has not finished writing it"):
        staged.require_complete("s3://lake/raw", "ingest")
    run(generated, "s3://lake/raw")  # a failed output may be replaced by the next run
    assert output_is_complete("s3://lake/raw")
    assert INCOMPLETE_MARKER not in {k.rsplit("/", 1)[-1] for k in s3.keys("lake", "raw/")}


def test_refuses_to_replace_foreign_data(tmp_path) -> None:
    src = write_file(tmp_path / "in" / "taxi_2015_01.txt", [row(1)])
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "thesis.tex").write_text("precious")
    with pytest.raises(UserError) as err:
        run(src, tmp_path / "home")
    assert str(err.value) == (
        f"{tmp_path / 'home'}: not empty and not an earlier output of the ingest step (it holds "
        "thesis.tex, no _SUCCESS or _INCOMPLETE marker); refusing to replace it: give a new or empty location"
    )
    assert (tmp_path / "home" / "thesis.tex").read_text() == "precious"
    (tmp_path / "empty").mkdir()
    assert run(src, tmp_path / "empty")["rows_written"] == 1  # an empty directory is fine


def test_committed_output_has_an_ordinary_directory_mode(tmp_path) -> None:
    import os

    src = write_file(tmp_path / "in" / "taxi_2015_01.txt", [row(1)])
    old = os.umask(0o022)
    try:
        run(src, tmp_path / "raw")
    finally:
        os.umask(old)
    assert (tmp_path / "raw").stat().st_mode & 0o777 == 0o755


def test_progress_bar_does_not_change_results(generated, tmp_path) -> None:
    summary = core.run(
        core.IngestConfig(source_uri=str(generated), output_uri=str(tmp_path / "raw"), progress=True)
    )
    assert summary["rows_read"] == 20_000
    assert read_raw(tmp_path / "raw").num_rows == summary["rows_written"]


# --- CLI ----------------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "components.ingest", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_user_error_is_one_line(tmp_path) -> None:
    proc = _cli("--source", str(tmp_path / "nope"), "--output", str(tmp_path / "raw"))
    assert proc.returncode == 2
    assert proc.stderr == f"fareflow ingest: error: --source {tmp_path / 'nope'}: no such file or directory\n"
    assert "Traceback" not in proc.stderr


def test_cli_summary_json(tmp_path) -> None:
    src = write_file(tmp_path / "in" / "taxi_2015_01.txt", [row(1), row(2, FAREAMOUNT="x"), "", row(4)])
    proc = _cli(
        "--source",
        str(src.parent),
        "--output",
        str(tmp_path / "raw"),
        "--summary-json",
        str(tmp_path / "s.json"),
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "s.json").read_text())
    assert {
        k: summary[k] for k in ("rows_read", "rows_written", "rows_quarantined", "files", "blank_lines")
    } == {
        "rows_read": 3,
        "rows_written": 2,
        "rows_quarantined": 1,
        "files": 1,
        "blank_lines": 1,
    }
    assert summary["bytes_read"] == src.stat().st_size
    assert summary["seconds"] > 0
    assert summary["quarantine_reasons"] == {"bad_number": 1}
    assert summary["partitions"] == {"year=2015/month=1": 2}
    assert "3 rows from 1 file(s)" in proc.stderr and "1 quarantined (bad_number 1)" in proc.stderr


def test_fareflow_ingest_dispatches(tmp_path, capsys) -> None:
    from pipelines.cli import main

    assert main(["ingest", "--source", str(tmp_path / "nope"), "--output", str(tmp_path / "raw")]) == 2
    assert capsys.readouterr().err.strip().endswith("no such file or directory")


def test_invariant_is_checked_before_commit(tmp_path, monkeypatch) -> None:
    """A parser bug that silently drops a row fails the run, and nothing is committed."""
    src = write_file(tmp_path / "in" / "taxi_2015_01.txt", [row(1), row(2), row(3)])
    parse = files._parse_block

    def lossy(*args):
        block = parse(*args)
        block.table, block.keys = block.table.slice(1), block.keys[1:]
        return block

    monkeypatch.setattr(files, "_parse_block", lossy)
    with pytest.raises(
        RuntimeError, match=r"ingest invariant broken: rows_read=3 != rows_written=2 \+ rows_quarantined=0"
    ):
        run(src, tmp_path / "raw")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_cli_summary_json_in_a_new_directory(tmp_path) -> None:
    from components.ingest.__main__ import main

    src = write_file(tmp_path / "in" / "taxi_2015_01.txt", [row(1)])
    target = tmp_path / "reports" / "deep" / "s.json"
    argv = ["--source", str(src), "--output", str(tmp_path / "raw"), "--summary-json", str(target)]
    assert main([*argv, "--no-progress"]) == 0
    assert json.loads(target.read_text())["rows_written"] == 1


@pytest.mark.parametrize("value", ["nan", "0", "-1", "inf", "abc"])
def test_cli_bad_block_mb_is_a_usage_error(value, tmp_path, capsys) -> None:
    from components.ingest.__main__ import main

    src = write_file(tmp_path / "in" / "taxi_2015_01.txt", [row(1)])
    with pytest.raises(SystemExit) as exc:
        main(["--source", str(src), "--output", str(tmp_path / "raw"), f"--block-mb={value}"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--block-mb" in err and "Traceback" not in err
    assert not (tmp_path / "raw").exists()


def test_row_ids_and_line_numbers_are_stored_as_deltas(generated, tmp_path) -> None:
    import duckdb

    run(generated, tmp_path / "out")
    parts = sorted((tmp_path / "out").glob("year=*/month=*/*.parquet"))
    assert parts
    for part in parts:
        meta = pq.ParquetFile(part).metadata
        for g in range(meta.num_row_groups):
            encodings = {
                meta.row_group(g).column(c).path_in_schema: meta.row_group(g).column(c).encodings
                for c in range(meta.num_columns)
            }
            assert "DELTA_BINARY_PACKED" in encodings["OBJECTID"]
            assert "DELTA_BINARY_PACKED" in encodings[contract.SOURCE_LINE]
    # Quality reads the raw files with DuckDB: it gets the same values pyarrow does.
    raw = read_raw(tmp_path / "out")
    pattern = str(tmp_path / "out" / "year=*" / "month=*" / "*.parquet")
    got = duckdb.sql(
        f"SELECT OBJECTID, {contract.SOURCE_LINE} FROM read_parquet('{pattern}') "
        f"ORDER BY {contract.SOURCE_FILE}, {contract.SOURCE_LINE}"
    ).fetchall()
    ids, lines = raw.column("OBJECTID").to_pylist(), raw.column(contract.SOURCE_LINE).to_pylist()
    assert got == list(zip(ids, lines, strict=True))
