from __future__ import annotations

import json
import os
import subprocess
import sys

from components.common import model_dir
from components.train.__main__ import main


def test_cli_trains_and_writes_summary_and_report(splits, tmp_path, capsys):
    out, summary, reports = tmp_path / "model", tmp_path / "s" / "summary.json", tmp_path / "r"
    code = main(["--splits", str(splits), "--output", str(out), "--epochs", "3", "--batch-size", "64",
                 "--hidden", "32,16", "--device", "cpu", "--summary-json", str(summary),
                 "--report-dir", str(reports)])  # fmt: skip
    assert code == 0
    data = json.loads(summary.read_text())
    assert data["epochs_run"] == 3 and data["config"]["hidden"] == [32, 16]
    assert data["metrics"]["test_rmse"] < 0.5 * data["metrics"]["baseline_rmse"]
    assert model_dir.load(out).architecture.hidden == (32, 16)
    assert (reports / "report.html").read_text().count("data:image/png;base64,") == 3
    assert "## Metrics" in (reports / "summary.md").read_text()
    assert f"-> {out}" in capsys.readouterr().out


def test_cli_error_is_one_line_with_exit_code_2(make_splits, tmp_path):
    splits = make_splits(success=False)
    proc = subprocess.run(
        [sys.executable, "-m", "components.train", "--splits", str(splits), "--output", str(tmp_path / "m")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"fareflow train: error: {splits}: no _SUCCESS marker: not a complete output (a failed or running write?)"
    ]
    assert not (tmp_path / "m").exists()


def test_cli_rejects_bad_hidden(splits, tmp_path, capsys):
    assert main(["--splits", str(splits), "--output", str(tmp_path / "m"), "--hidden", "64,x"]) == 2
    assert "--hidden: expected comma-separated positive layer widths" in capsys.readouterr().err


def test_cli_device_cuda_without_cuda_fails_in_one_line_instead_of_using_cpu(splits, tmp_path, monkeypatch):
    """A PyTorchJob on the GPU pool passes --device cuda; a CPU-only torch must not train on CPU."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    proc_args = ["--splits", str(splits), "--output", str(tmp_path / "m"), "--device", "cuda"]
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(proc_args) == 2
    (line,) = err.getvalue().strip().splitlines()
    assert line.startswith("fareflow train: error: --device cuda: torch ") and "CPU-only build" in line
    assert not (tmp_path / "m").exists()


def test_an_unwritable_output_is_one_line_before_any_training(make_splits, tmp_path, capsys):
    from components.train.__main__ import main

    splits = make_splits()
    output = f"/proc/fareflow-no-such-dir-{os.getpid()}/model"
    assert main(["--splits", str(splits), "--output", output, "--epochs", "1"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"fareflow train: error: --output {output}: cannot create files in /proc")
    assert main(["--splits", str(tmp_path / "nope"), "--output", str(tmp_path / "m")]) == 2
    assert f"--splits {tmp_path / 'nope'}: no such file or directory" in capsys.readouterr().err
