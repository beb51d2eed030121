from __future__ import annotations

import json
import subprocess
import sys

from components.tune.__main__ import main
from components.tune.core import DEFAULTS
from components.tune.report import FIGURES
from pipelines import cli


def test_cli_tunes_and_writes_summary_and_report(shared_splits, tmp_path, capsys):
    summary, reports = tmp_path / "s" / "summary.json", tmp_path / "r"
    code = main(["--splits", str(shared_splits), "--trials", "3", "--epochs", "2", "--seed", "4",
                 "--max-rows", "800", "--device", "cpu", "--summary-json", str(summary),
                 "--report-dir", str(reports)])  # fmt: skip
    assert code == 0
    data = json.loads(summary.read_text())
    assert len(data["trials"]) == 3 and data["trials"][0]["params"] == DEFAULTS
    assert data["best_validation_rmse"] <= data["default_validation_rmse"]
    assert data["config"]["epochs"] == 2 and data["config"]["max_rows"] == 800
    html = (reports / "report.html").read_text()
    # Optuna's plots: history, slice over the searched parameters, importances (3 completed
    # trials), intermediate values -- one image each, found by their alt texts
    assert html.count("data:image/png;base64,") == len(FIGURES) == 4
    assert all(f'alt="{alt}"' in html for alt in FIGURES.values())
    assert "Optimization history" in html and "<td>128,64,32</td>" in html
    md = (reports / "summary.md").read_text()
    assert "## Best hyper-parameters" in md and "## Trials" in md
    out = capsys.readouterr().out
    assert f"best validation RMSE {data['best_validation_rmse']:.4f}" in out


def test_cli_trials_zero_prints_the_defaults(tmp_path, capsys):
    reports = tmp_path / "r"
    assert main(["--splits", str(tmp_path / "none"), "--trials", "0", "--report-dir", str(reports)]) == 0
    assert json.dumps(DEFAULTS) in capsys.readouterr().out
    html = (reports / "report.html").read_text()
    assert "tuning off" in html and "data:image/png" not in html


def test_cli_error_is_one_line_with_exit_code_2(make_splits):
    splits = make_splits(success=False)
    proc = subprocess.run(
        [sys.executable, "-m", "components.tune", "--splits", str(splits), "--trials", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"fareflow tune: error: {splits}: no _SUCCESS marker: not a complete output (a failed or running write?)"
    ]


def test_cli_rejects_negative_trials(shared_splits, capsys):
    assert main(["--splits", str(shared_splits), "--trials", "-1"]) == 2
    assert "--trials: expected 0 (off) or a positive number" in capsys.readouterr().err


def test_fareflow_tune_is_a_command():
    assert cli.COMMANDS["tune"][0] == "components.tune.__main__"
