"""Real multi-process DDP on CPU: torchrun with two gloo workers, through launch_local."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from components.common.errors import UserError
from components.common.features import columns_from_table
from components.train import core, model


def config(splits, out, **overrides) -> core.TrainConfig:
    settings = {"epochs": 4, "batch_size": 64, "learning_rate": 3e-3, "seed": 1, "device": "cpu"}
    return core.TrainConfig(str(splits), str(out), **{**settings, **overrides})


@pytest.mark.slow
def test_two_process_torchrun_trains_the_same_kind_of_model(make_splits, tmp_path):
    splits = make_splits(shards=2)
    reports = tmp_path / "reports"
    two = core.launch_local(config(splits, tmp_path / "ddp"), workers=2, report_dir=str(reports))
    one = core.launch_local(config(splits, tmp_path / "single"), workers=1)
    assert two["world_size"] == 2 and two["backend"] == "gloo" and one["world_size"] == 1
    # identical summary format, whatever the number of processes
    assert two.keys() == one.keys() and two["metrics"].keys() == one["metrics"].keys()
    assert [h.keys() for h in two["history"]] == [h.keys() for h in one["history"]]
    # every train row used once per epoch over the two shards; validation/test whole on rank 0
    assert two["rows"] == one["rows"] == {"train": 2400, "validation": 300, "test": 300}
    m = two["metrics"]
    assert m["test_rmse"] < 0.25 * m["baseline_rmse"]
    assert m["baseline_rmse"] == pytest.approx(one["metrics"]["baseline_rmse"], rel=1e-9)
    assert all(h["rows_per_s"] > 0 for h in two["history"])
    # the feature spec was fitted on the whole train split (all-reduced), not on rank 0's shard
    loaded = model.load(tmp_path / "ddp")
    whole = columns_from_table(pq.read_table(splits / "train"))
    shard0 = columns_from_table(pq.read_table(splits / "train" / "part-00000.parquet"))
    for name in ("distance_km", "origin_lat"):
        assert loaded.spec.mean[name] == pytest.approx(float(whole[name].mean()), rel=1e-9)
        assert loaded.spec.std[name] == pytest.approx(float(whole[name].std()), rel=1e-9)
        assert loaded.spec.mean[name] != pytest.approx(float(shard0[name].mean()), rel=1e-9)
    assert loaded.meta["training"]["world_size"] == 2
    assert loaded.meta["metrics"]["test_rmse"] == pytest.approx(m["test_rmse"])
    # rank 0 wrote the report
    assert (reports / "report.html").read_text().count("data:image/png;base64,") == 3
    json.dumps(two)


@pytest.mark.slow
def test_worker_errors_come_back_as_one_line(make_splits, tmp_path):
    splits = make_splits(shards=2)
    part = splits / "validation" / "part-00001.parquet"
    pq.write_table(pq.read_table(part).drop_columns(["hour"]), part)
    with pytest.raises(UserError) as err:
        core.launch_local(config(splits, tmp_path / "m"), workers=2)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"distributed training (2 workers) failed: {part}: no column(s) ['hour']")
    assert not (tmp_path / "m").exists()


def test_more_workers_than_files_split_rows(make_splits, tmp_path):
    """One process per rank is simulated here: the plans of 3 ranks over 2 files cover each row once."""
    splits = make_splits(shards=2)
    found = core.discover(str(splits))
    rows = [f.rows for f in found.files["train"]]
    plans = [core.shard_plan(rows, r, 3) for r in range(3)]
    sizes = [sum(b - a for _, a, b in plan) for plan in plans]
    assert sum(sizes) == sum(rows) == 2400 and max(sizes) - min(sizes) <= 1
    assert np.all(np.diff([p[0][0] for p in plans]) >= 0)
