"""bench.bench_train at a tiny size: both implementations train on the same splits and the
records carry what ``bench.run`` prints (rows/s, peak RSS) plus the validation RMSEs."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import bench_train
from bench.common import ratios


@pytest.mark.slow
def test_run_records_both_implementations(tmp_path: Path) -> None:
    rows = bench_train.run(tmp_path, 20_000, repeat=1, epochs=1)
    assert [(r["case"], r["impl"]) for r in rows] == [("train", "fareflow"), ("train", "torch-dataloader")]
    ours, base = rows
    assert ours["rows"] == base["rows"] > 0  # the same train split
    for r in rows:
        assert r["seconds"] > 0 and r["rows_per_s"] > 0 and r["peak_rss_mb"] > 0
        assert len(r["runs_s"]) == len(r["runs_rows_per_s"]) == 1
        assert r["epochs"] == 1 and r["threads"] == bench_train.THREADS
        assert 0 < r["validation_rmse"] <= 1.5 * base["validation_rmse"]
    (summary,) = ratios(rows)
    assert summary["baseline"] == "torch-dataloader"
    assert summary["speedup"] == round(ours["rows_per_s"] / base["rows_per_s"], 2)
    # the splits are built once and reused
    assert (tmp_path / "train-20000" / "splits" / "_SUCCESS").exists()


def test_run_fails_loudly_when_fareflow_trains_a_worse_model(tmp_path: Path, monkeypatch) -> None:
    """Speed bought with a broken model is an error, not a result."""

    def fake_measure(cmd: list[str], env: dict | None = None) -> dict:
        result = {"seconds": 1.0, "cpu_s": 1.0, "peak_rss_mb": 100.0, "returncode": 0, "stderr": ""}
        if "components.train" in cmd:
            summary = Path(cmd[cmd.index("--summary-json") + 1])
            summary.write_text(
                '{"rows": {"train": 10}, "metrics": {"rows_per_s": 50.0, "validation_rmse": 9.0}}'
            )
            return {**result, "stdout": ""}
        return {**result, "stdout": '{"rows": 10, "rows_per_s": 5.0, "validation_rmse": 2.0}\n'}

    monkeypatch.setattr(bench_train, "splits", lambda workdir, rows: tmp_path / "splits")
    monkeypatch.setattr(bench_train, "measure", fake_measure)
    with pytest.raises(RuntimeError, match="validation RMSE 9.0 is worse than 1.5x"):
        bench_train.run(tmp_path, 1000, repeat=1)
