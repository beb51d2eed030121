from __future__ import annotations

import json
import subprocess
import sys

from components.quality.__main__ import main
from pipelines.cli import main as fareflow

from .rawdata import raw_table, write_raw


def test_cli_writes_outputs_summary_and_report(raw_dir, tmp_path, capsys):
    out = tmp_path / "clean"
    rc = main(
        [
            "--input", str(raw_dir), "--output", str(out), "--workers", "1",
            "--report-dir", str(tmp_path / "report"), "--summary-json", str(tmp_path / "s.json"),
            "--max-reject-pct", "pickup_outside_file_month=2", "--max-reject-pct", "dropoff_before_pickup=2",
        ]
    )  # fmt: skip
    assert rc == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    assert {"rows_in", "rows_clean", "rows_rejected", "rejected_by_rule", "gate_passed"} <= set(summary)
    assert summary["gate_passed"] is True
    assert summary["rows_in"] == summary["rows_clean"] + summary["rows_rejected"] == 1200
    assert (tmp_path / "clean_rejected").is_dir() and (tmp_path / "clean_stats" / "stats.json").is_file()
    assert {p.name for p in (tmp_path / "report").iterdir()} == {"report.html", "summary.md"}
    assert (tmp_path / "report" / "summary.md").read_text().startswith("# fareflow data quality")
    assert "1,200 rows in" in capsys.readouterr().out


def test_gate_failure_exits_non_zero_with_one_line_reason(tmp_path):
    bad = raw_table(200, 2015, 1, defects={"missing_fare": 20})
    write_raw(tmp_path / "raw", [bad])
    proc = subprocess.run(
        [sys.executable, "-m", "components.quality", "--input", str(tmp_path / "raw"), "--output", str(tmp_path / "c"),
         "--summary-json", str(tmp_path / "s.json"), "--workers", "1", "--quiet"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 3
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        "fareflow quality: error: quality gate failed: missing_fare rejected 10.00% of rows (allowed 3.00%)"
    ]
    assert json.loads((tmp_path / "s.json").read_text())["gate_passed"] is False
    # a rules file raising the threshold lets the same data through; --no-gate only warns
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - name: missing_fare\n    max_reject_pct: 12\n")
    args = [
        "--input",
        str(tmp_path / "raw"),
        "--output",
        str(tmp_path / "c"),
        "--workers",
        "1",
        "--overwrite",
    ]
    assert main([*args, "--rules", str(rules)]) == 0
    assert main([*args, "--no-gate"]) == 0


def test_unusable_input_and_bad_options_exit_2(tmp_path, capsys):
    assert main(["--input", str(tmp_path / "missing"), "--output", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"fareflow quality: error: --input {tmp_path / 'missing'}: no such file or directory"
    (tmp_path / "r.yaml").write_text("rules:\n  - {name: x, description: d, reject_if: NOPE > 1}\n")
    assert (
        main(["--input", str(tmp_path), "--output", str(tmp_path / "c"), "--rules", str(tmp_path / "r.yaml")])
        == 2
    )
    assert "rule 'x': invalid reject_if" in capsys.readouterr().err


def test_fareflow_quality_dispatches_to_the_cli(raw_dir, tmp_path):
    assert (
        fareflow(
            ["quality", "--input", str(raw_dir), "--output", str(tmp_path / "c"), "--no-gate", "--quiet"]
        )
        == 0
    )
    assert (tmp_path / "c" / "year=2015" / "month=1" / "part-0.parquet").is_file()
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "quality", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "--max-reject-pct" in proc.stdout


def test_overwrite_with_the_input_inside_the_output_is_refused_in_one_line(raw_dir, tmp_path, capsys):
    import shutil

    shutil.copytree(raw_dir, tmp_path / "raw")
    (tmp_path / "notes.txt").write_text("mine")
    rc = main(["--input", str(tmp_path / "raw"), "--output", str(tmp_path), "--overwrite", "--workers", "1"])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "is inside the output location" in err and "Traceback" not in err
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == sorted(p.name for p in raw_dir.iterdir())


def test_input_without_ingest_success_marker_is_refused_in_one_line(raw_dir, tmp_path, capsys):
    """A half-written ingest output (no _SUCCESS yet) must never be cleaned as if complete."""
    import shutil

    partial = tmp_path / "partial"
    shutil.copytree(raw_dir, partial)
    (partial / "_SUCCESS").unlink()
    assert main(["--input", str(partial), "--output", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert "_SUCCESS" in err and "\n" not in err
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())


def test_progress_and_worker_memory_flags_reach_the_step(raw_dir, tmp_path, monkeypatch):
    import components.quality.core as core

    seen = []
    real = core.run
    monkeypatch.setattr(core, "run", lambda cfg: seen.append(cfg) or real(cfg))
    args = ["--input", str(raw_dir), "--output", str(tmp_path / "c"), "--rejected", str(tmp_path / "r"),
            "--max-reject-pct", "pickup_outside_file_month=2", "--max-reject-pct", "dropoff_before_pickup=2"]  # fmt: skip
    assert main([*args, "--stats", str(tmp_path / "s"), "--no-progress", "--worker-memory-mb", "300"]) == 0
    assert seen[-1].progress is False and seen[-1].worker_memory_mb == 300
    assert main([*args, "--stats", str(tmp_path / "s2"), "--overwrite", "--quiet", "--progress"]) == 0
    assert seen[-1].progress is False  # --quiet wins
    assert main([*args, "--stats", str(tmp_path / "s3"), "--worker-memory-mb", "-1"]) == 2


def test_report_dir_that_is_a_file_is_refused_in_one_line_before_the_run(raw_dir, tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    rc = main(["--input", str(raw_dir), "--output", str(tmp_path / "c"), "--report-dir", str(tmp_path / "f")])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert "--report-dir" in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "c").exists()
