from __future__ import annotations

import json
import re

import numpy as np
import pyarrow.compute as pc

from components.sample.__main__ import main

from .conftest import write_clean


def args(clean, stats, out, *extra) -> list[str]:
    return ["--input", str(clean), "--population-stats", str(stats), "--output", str(out), *extra]


def test_cli_writes_splits_report_and_summary(inputs, tmp_path, capsys):
    clean, stats, _ = inputs
    out, reports, summary = tmp_path / "out", tmp_path / "reports", tmp_path / "s" / "summary.json"
    code = main(args(clean, stats, out, "--rows", "4096", "--shards", "2", "--seed", "3",
                     "--report-dir", str(reports), "--summary-json", str(summary)))  # fmt: skip
    assert code == 0
    data = json.loads(summary.read_text())
    assert data["passed"] is True and data["seed"] == 3 and data["attempts"] == 1
    assert sum(data["rows"].values()) == 4096 and set(data["rows"]) == {"train", "validation", "test"}
    assert 0.05 / 54 <= data["min_p_value"] <= 1  # passed: every p at least alpha / family
    for split in ("train", "validation", "test"):
        assert sorted(p.name for p in (out / split).iterdir()) == ["part-00000.parquet", "part-00001.parquet"]
    page = (reports / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3  # fare, distance_km, hour (fixed size: no SE plot)
    for header in ("population mean", "sample mean", "KS D", "p (KS)"):
        assert header in page
    assert "PASSED" in (reports / "summary.md").read_text()
    assert "sample: passed: train" in capsys.readouterr().out


def test_automatic_size_explains_itself_in_the_report(inputs, tmp_path):
    clean, stats, _ = inputs
    reports = tmp_path / "r"
    assert (
        main(args(clean, stats, tmp_path / "o", "--report-dir", str(reports), "--se-tolerance", "0.01")) == 0
    )
    page = (reports / "report.html").read_text()
    # 1024 -> 2048 gains (1 - 1/sqrt 2) / 32 = 0.0092 sigma < 0.01: 2^10 is where it stops improving.
    assert "1,024 = 2^10 rows" in page and "stops improving" in page
    assert page.count("data:image/png;base64,") == 4  # + the SE-vs-n figure


def test_biased_input_fails_with_one_line_naming_the_worst_column(inputs, tmp_path, capsys):
    clean, stats, table = inputs
    median = float(np.median(table.column("distance_km").to_numpy()))
    biased = write_clean(table.filter(pc.less(table.column("distance_km"), median)), tmp_path / "short")
    summary = tmp_path / "summary.json"
    code = main(args(biased, stats, tmp_path / "o", "--rows", "1000", "--max-attempts", "2",
                     "--summary-json", str(summary), "--report-dir", str(tmp_path / "r")))  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("fareflow sample: error: sample failed the statistical check in 2 attempt(s)")
    assert re.search(
        r"worst: (distance_km|fare) in (train|validation|test): (z|KS D)=\S+, p=\S+ < 0.000926 \(alpha 0.05 Bonferroni over 54 tests\)",
        err,
    ), err
    data = json.loads(summary.read_text())
    assert (
        data["passed"] is False
        and data["attempts"] == 2
        and data["min_p_value"] < 0.05 / 54
        and data["untested_constant_columns"] == ["year"]
    )
    assert "FAILED" in (tmp_path / "r" / "report.html").read_text()
    assert not (tmp_path / "o").exists()


def test_bad_fractions_and_missing_input_are_one_line_exit_2(inputs, tmp_path, capsys):
    clean, stats, _ = inputs
    assert main(args(clean, stats, tmp_path / "o", "--fractions", "0.8,0.3,0.1")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--fractions" in err
    assert main(args(tmp_path / "missing", stats, tmp_path / "o")) == 2
    err = capsys.readouterr().err
    assert err == f"fareflow sample: error: --input {tmp_path / 'missing'}: no such file or directory\n"


def test_fareflow_sample_dispatches_here(inputs, tmp_path):
    from pipelines.cli import main as fareflow

    clean, stats, _ = inputs
    summary = tmp_path / "s.json"
    assert (
        fareflow(
            ["sample", *args(clean, stats, tmp_path / "o", "--rows", "2000", "--summary-json", str(summary))]
        )
        == 0
    )
    assert json.loads(summary.read_text())["passed"] is True
