"""The whole pipeline through kfp.local, as `make run` runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from components.common.errors import UserError
from pipelines import driver, local

ROWS = 20_000


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("run")
    assert (
        local.main(
            ["--rows", str(ROWS), "--workdir", str(workdir), "--summary-json", str(workdir / "s.json")]
        )
        == 0
    )
    return workdir


@pytest.fixture(scope="module")
def summary(run_dir) -> dict:
    return json.loads((run_dir / "s.json").read_text())


def test_counts_flow_from_step_to_step(summary):
    ingest, quality, sample = summary["ingest"], summary["quality"], summary["sample"]
    assert ingest["rows_read"] == ROWS
    assert ingest["rows_written"] + ingest["rows_quarantined"] == ingest["rows_read"]
    assert quality["rows_in"] == ingest["rows_written"]
    assert quality["rows_clean"] + quality["rows_rejected"] == quality["rows_in"]
    assert quality["gate_passed"] is True
    # generated data: ~21% lack a pick-up time, so clearly fewer clean rows than read
    assert 0.4 * ROWS < quality["rows_clean"] < 0.8 * ROWS
    assert sum(sample["rows"].values()) == sample["sample_rows"] <= quality["rows_clean"]
    assert sample["passed"] is True
    tune = summary["tune"]  # `fareflow run` tunes with 4 trials by default; trial 0 = the defaults
    assert len(tune["trials"]) == 4 and tune["best_validation_rmse"] <= tune["default_validation_rmse"]
    train = summary["train"]
    assert train["rows"]["train"] == sample["rows"]["train"]
    assert train["config"]["learning_rate"] == pytest.approx(tune["best_params"]["learning_rate"])
    metrics = train["metrics"]
    # The model learned something real: far below predicting the mean, and not below what the
    # generator says any model can reach (truth.json, added by `fareflow run`).
    assert metrics["test_rmse"] < 0.8 * metrics["baseline_rmse"]
    assert metrics["best_possible_rmse"] < metrics["test_rmse"]


def test_artifacts_are_real_data_and_reports(summary, run_dir):
    splits = Path(summary["sample"]["artifacts"]["splits"])
    train = pq.read_table(splits / "train")
    assert train.num_rows == summary["sample"]["rows"]["train"]
    assert {"fare", "origin_lat", "distance_km", "hour"} <= set(train.column_names)
    from components.serve.core import FarePredictor

    model = FarePredictor.load(summary["train"]["artifacts"]["model"])
    trip = {
        "ORIGIN_BLOCK_LATITUDE": 38.9007,
        "ORIGIN_BLOCK_LONGITUDE": -77.0365,
        "DESTINATION_BLOCK_LATITUDE": 38.8899,
        "DESTINATION_BLOCK_LONGITUDE": -77.0091,
        "ORIGINDATETIME_TR": "03/14/2015 08:00",
    }
    (fare,) = model.predict_records([trip])
    assert 3.25 <= fare <= 60  # a 2.5 km downtown trip
    record = json.loads((run_dir / "latest" / "run.json").read_text())
    for step in ("quality", "sample", "tune", "train"):
        html = (run_dir / "latest" / "reports" / f"{step}.html").read_text()
        assert "data:image/png;base64," in html  # self-contained plots
        # the header names the run, the source, the code version and the seed
        assert f"<code>{record['run_id']}</code>" in html and f"<code>{record['source']}</code>" in html
        assert record["code"]["digest"][:12] in html and "<b>seed</b> <code>0</code>" in html
        md = (run_dir / "latest" / "reports" / f"{step}.md").read_text()
        assert md.startswith(f"> run `{record['run_id']}`") and "# " in md


def test_run_keeps_its_record_metrics_and_logs(run_dir, summary):
    (run,) = [p for p in run_dir.iterdir() if (p / "run.json").is_file() and not p.is_symlink()]
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "succeeded" and record["run_id"] == run.name
    assert {s: v["state"] for s, v in record["steps"].items()} == dict.fromkeys(driver.STEPS, "done")
    assert record["metrics"]["train.test_rmse"] == summary["train"]["metrics"]["test_rmse"]
    assert json.loads((run / "metrics.json").read_text()) == record["metrics"]
    assert json.loads((run / "summary.json").read_text())["train"]["metrics"] == summary["train"]["metrics"]
    assert "Executing task" in (run / "logs" / "pipeline.log").read_text()
    assert "KFP Executor" in (run / "logs" / "train.log").read_text()


def test_second_run_reuses_cached_steps_and_says_so(run_dir, capsys):
    capsys.readouterr()
    before = sorted((run_dir / "pipeline_root").glob("*/ingest"))
    assert local.main(["--rows", str(ROWS), "--workdir", str(run_dir)]) == 0
    after = sorted((run_dir / "pipeline_root").glob("*/ingest"))
    assert after == before, "ingest ran again although its input did not change"
    out, err = capsys.readouterr()
    # quiet: one line per step, no kfp executor logs; cached steps are marked
    assert "KFP Executor" not in out + err and "Executing task" not in out + err
    step_lines = [line for line in err.splitlines() if line.split()[:1] in ([s] for s in driver.STEPS)]
    assert [line.split()[:2] for line in step_lines] == [[s, "cached"] for s in driver.STEPS]
    assert "step: train (cached" in out
    record = json.loads((run_dir / "latest" / "run.json").read_text())
    assert {v["state"] for v in record["steps"].values()} == {"cached"}


def test_a_code_edit_invalidates_the_cache(run_dir):
    """Same inputs, another source digest (what an edit to the installed code gives): nothing is
    served from the cache. Tuning and training are cut short; the data steps are the check."""
    source = json.loads((run_dir / "latest" / "run.json").read_text())["source"]
    steps: dict = {}
    driver.run_pipeline(
        source,
        run_dir,
        arguments={"tune_trials": 0, "epochs": 1},
        logs_dir=run_dir / "edited-logs",
        code_digest="edited",
        steps=steps,
    )
    assert {s: steps[s]["state"] for s in ("ingest", "quality", "sample")} == dict.fromkeys(
        ("ingest", "quality", "sample"), "done"
    )


@pytest.mark.slow
def test_the_pipeline_trains_with_horovod_when_asked(run_dir):
    """train_backend reaches the local train task: two Horovod ranks (mpirun where this Horovod
    has MPI, else horovodrun over gloo: components.train.launch.horovod_transport)."""
    from components.train.launch import horovod_transport

    transport = f"horovod-{horovod_transport()}"
    source = json.loads((run_dir / "latest" / "run.json").read_text())["source"]
    steps: dict = {}
    out = driver.run_pipeline(
        source,
        run_dir,
        arguments={"tune_trials": 0, "epochs": 1, "train_workers": 2, "train_backend": "horovod"},
        logs_dir=run_dir / "horovod-logs",
        steps=steps,
    )
    assert steps["train"]["state"] == "done"
    train = out["train"]
    assert train["world_size"] == 2 and train["backend"] == transport
    assert train["config"]["backend"] == "horovod"
    assert (
        f"Horovod: 2 processes ({transport} on cpu)" in (run_dir / "horovod-logs" / "train.log").read_text()
    )


def test_runs_lists_and_compares_the_runs(run_dir, capsys):
    from pipelines import runs

    capsys.readouterr()
    assert runs.main(["--workdir", str(run_dir), "compare"]) == 0
    out = capsys.readouterr().out
    assert "train.test_rmse" in out and "+0 (+0.0%)" in out  # same inputs and seed: same model
    assert runs.main(["--workdir", str(run_dir)]) == 0
    assert out.count("succeeded") == 0 and capsys.readouterr().out.count("succeeded") == 2


def test_bad_input_in_a_task_is_its_one_line_error_with_the_log_path(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    work = tmp_path / "w"
    assert local.main(["--source", str(empty), "--workdir", str(work)]) == 2
    err = capsys.readouterr().err
    (run,) = [p for p in work.iterdir() if (p / "run.json").is_file() and not p.is_symlink()]
    log = run / "logs" / "ingest.log"
    assert err.splitlines()[-1] == (
        f"fareflow run: error: ingest: {empty}: no .txt or .zip files in this directory (log: {log})"
    )
    assert "Traceback" not in err and "Traceback" in log.read_text()
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "failed" and record["steps"]["ingest"]["state"] == "failed"


@pytest.mark.parametrize("flag", ["--workdir", "--summary-json"])
def test_unwritable_outputs_are_refused_before_any_work(tmp_path, capsys, flag):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    target = blocker / "sub"
    argv = [flag, str(target)] + ([] if flag == "--workdir" else ["--workdir", str(tmp_path / "w")])
    assert local.main(argv) == 2
    assert capsys.readouterr().err == f"fareflow run: error: {flag} {target}: {blocker} is not a directory\n"
    assert not (tmp_path / "w").exists()  # nothing generated, no run started


def test_gate_failure_stops_pipeline_before_sampling(tmp_path):
    """A data set whose fares are mostly garbage must fail the quality gate; sample never runs."""
    from components.generate import core

    data = tmp_path / "data"
    core.run(core.GenerateConfig(output_uri=str(data), rows=5_000, months="2015-01", seed=3))
    path = data / "taxi_2015_01.txt"
    lines = path.read_text().splitlines()
    header, rows = lines[0], lines[1:]
    fare = header.split("|").index("FAREAMOUNT")
    corrupted = []
    for i, line in enumerate(rows):
        fields = line.split("|")
        if i % 2 == 0:
            fields[fare] = "999.99"  # above the $180 ceiling
        corrupted.append("|".join(fields))
    path.write_text("\n".join([header, *corrupted]) + "\n")

    with pytest.raises(UserError, match="quality"):
        driver.run_pipeline(str(data), tmp_path / "work", caching=False)
    assert list((tmp_path / "work" / "pipeline_root").glob("*/quality"))
    assert not list((tmp_path / "work" / "pipeline_root").glob("*/sample"))


def test_user_source_is_not_cached_by_default(tmp_path, monkeypatch):
    """Files behind a --source URI may change; without --cache every run reads them again."""
    seen = []
    monkeypatch.setattr(
        local, "run_pipeline", lambda source, workdir, caching, **kw: seen.append(caching) or {}
    )
    monkeypatch.setattr(local, "print_summary", lambda *args: None)
    assert local.main(["--source", str(tmp_path), "--workdir", str(tmp_path / "w")]) == 0
    assert local.main(["--source", str(tmp_path), "--workdir", str(tmp_path / "w"), "--cache"]) == 0
    assert seen == [False, True]
