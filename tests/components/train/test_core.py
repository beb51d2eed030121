from __future__ import annotations

import json
import re

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from components.common import model_dir
from components.common.errors import UserError
from components.common.features import FeatureSpec, columns_from_table, encode
from components.train import core
from components.train.config import TrainConfig, parse_hidden
from components.train.launch import launch_local
from components.train.splits import check_shards, shard_plan, shard_sizes

from .conftest import NOISE_STD


def config(splits, out, **overrides) -> TrainConfig:
    settings = {"epochs": 6, "batch_size": 64, "learning_rate": 3e-3, "seed": 1, "device": "cpu"}
    return TrainConfig(str(splits), str(out), **{**settings, **overrides})


def test_training_beats_the_mean_baseline_by_far(splits, tmp_path):
    result = core.run(config(splits, tmp_path / "model"))
    m = result.metrics
    # The label is a smooth function of distance plus N(0, 0.5) noise; the mean scores ~8.
    assert m["baseline_rmse"] > 6
    assert m["test_rmse"] < 0.25 * m["baseline_rmse"]
    assert m["test_rmse"] > 0.8 * NOISE_STD  # nobody beats the noise on unseen rows
    assert m["train_rmse"] < 0.25 * m["baseline_rmse"] and m["validation_rmse"] < 0.25 * m["baseline_rmse"]
    assert 0 < m["test_mae"] < m["test_rmse"]
    assert result.rows == {"train": 2400, "validation": 300, "test": 300}
    assert [h["epoch"] for h in result.history] == list(range(1, 7))
    assert result.history[-1]["train_rmse"] < result.history[0]["train_rmse"]
    assert all(h["rows_per_s"] > 0 for h in result.history) and m["rows_per_s"] > 0
    # The best epoch's validation RMSE is the reported one, and it is the minimum.
    best = result.history[result.best_epoch - 1]
    assert (
        m["validation_rmse"] == best["validation_rmse"] == min(h["validation_rmse"] for h in result.history)
    )
    summary = result.summary()
    json.dumps(summary)  # plain JSON types only
    assert summary["world_size"] == 1 and summary["backend"] is None and summary["epochs_run"] == 6


def test_baseline_is_the_train_mean_on_test(splits, tmp_path):
    result = core.run(config(splits, tmp_path / "m", epochs=1))
    train_fare = pq.read_table(splits / "train").column("fare").to_numpy()
    test_fare = pq.read_table(splits / "test").column("fare").to_numpy()
    expected = float(np.sqrt(np.mean((test_fare - train_fare.mean()) ** 2)))
    assert result.metrics["baseline_rmse"] == pytest.approx(expected, rel=1e-12)


def test_same_seed_same_weights_other_seed_other_weights(splits, tmp_path):
    runs = [core.run(config(splits, tmp_path / f"m{i}", epochs=2, seed=s)) for i, s in enumerate((7, 7, 8))]
    weights = [torch.load(tmp_path / f"m{i}" / model_dir.WEIGHTS_FILE, weights_only=True) for i in range(3)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert runs[0].metrics["test_rmse"] == runs[1].metrics["test_rmse"]
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])


def test_model_json_records_the_version_and_where_the_model_came_from(make_splits, tmp_path):
    from components.common.code_version import code_version

    a, b = make_splits(), make_splits(2000, name="other")
    meta = []
    for i, splits in enumerate((a, b, a)):
        core.run(config(splits, tmp_path / f"m{i}", epochs=1))
        meta.append(model_dir.load(tmp_path / f"m{i}").meta)
    for i, m in enumerate(meta):
        assert re.fullmatch(r"[0-9a-f]{12}", m["model_version"])
        # the version is checked against the weights the server reads
        model_dir.load_arrays(tmp_path / f"m{i}", model_dir.Architecture(), m["model_version"])
        assert m["provenance"]["code"] == code_version().as_dict()
        assert m["provenance"]["trained_at"].endswith("+00:00")
    # the data digest names the splits' contents (files and rows), not the run
    assert meta[0]["provenance"]["splits_uri"] == str(a)
    assert meta[0]["provenance"]["data_digest"] == meta[2]["provenance"]["data_digest"]
    assert meta[0]["provenance"]["data_digest"] != meta[1]["provenance"]["data_digest"]
    # one seed, one data set: the same weights are the same version; other data, another one
    assert meta[0]["model_version"] == meta[2]["model_version"] != meta[1]["model_version"]


def test_model_dir_round_trips_through_model_load(splits, tmp_path):
    out = tmp_path / "model"
    result = core.run(config(splits, out, epochs=2, hidden=(16, 8)))
    loaded = model_dir.load(out)
    assert loaded.architecture == model_dir.Architecture(hidden=(16, 8))
    train = pq.read_table(splits / "train")
    assert loaded.spec == FeatureSpec.fit(columns_from_table(train))  # fitted on train only
    meta = loaded.meta
    assert meta["metrics"] == pytest.approx(result.metrics)
    assert [h["epoch"] for h in meta["history"]] == [1, 2]
    assert meta["config"]["hidden"] == [16, 8] and meta["config"]["seed"] == 1
    # Predictions of the loaded model reproduce the test RMSE the run reported.
    test = pq.read_table(splits / "test")
    x = torch.as_tensor(encode(columns_from_table(test), loaded.spec))
    with torch.no_grad():
        pred = loaded.module(x).squeeze(-1).double().numpy()
    rmse = float(np.sqrt(np.mean((pred - test.column("fare").to_numpy()) ** 2)))
    assert rmse == pytest.approx(result.metrics["test_rmse"], rel=1e-6)
    assert rmse < 0.5 * result.metrics["baseline_rmse"]  # it outputs fares, not standardised ones
    assert sorted(p.name for p in out.iterdir()) == [
        "_SUCCESS", model_dir.META_FILE, model_dir.ARRAYS_FILE, model_dir.WEIGHTS_FILE,
    ]  # fmt: skip


def test_early_stopping_keeps_the_best_epoch(splits, tmp_path):
    # min_delta so large that no epoch after the first counts as better: stops after 1 + patience.
    out = tmp_path / "m"
    result = core.run(config(splits, out, epochs=10, patience=2, min_delta=1e6))
    assert result.stopped_early and len(result.history) == 3 and result.best_epoch == 1
    assert result.metrics["validation_rmse"] == result.history[0]["validation_rmse"]
    # The saved weights are epoch 1's: a 1-epoch run with the same seed wrote the same ones.
    one = core.run(config(splits, tmp_path / "one", epochs=1))
    a = torch.load(out / model_dir.WEIGHTS_FILE, weights_only=True)
    b = torch.load(tmp_path / "one" / model_dir.WEIGHTS_FILE, weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert one.metrics["test_rmse"] == result.metrics["test_rmse"]
    # patience 0: never stops early.
    assert not core.run(config(splits, tmp_path / "m0", epochs=3, patience=0, min_delta=1e6)).stopped_early


def test_max_rows_caps_every_split(splits, tmp_path):
    result = core.run(config(splits, tmp_path / "m", epochs=1, max_rows=200))
    assert result.rows == {"train": 200, "validation": 200, "test": 200}


def test_truth_adds_best_possible_rmse(splits, tmp_path):
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps({"best_rmse": 0.5, "rows": 10}))
    result = core.run(config(splits, tmp_path / "m", epochs=1, truth_uri=str(truth)))
    assert result.metrics["best_possible_rmse"] == 0.5
    truth.write_text(json.dumps({"rows": 10}))
    with pytest.raises(UserError, match=r"truth\.json: expected a number under 'best_rmse'"):
        core.run(config(splits, tmp_path / "m2", epochs=1, truth_uri=str(truth)))


# --- errors: one line naming the path -------------------------------------------------


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_missing_success_marker(make_splits, tmp_path):
    splits = make_splits(success=False)
    with pytest.raises(UserError) as err:
        core.run(config(splits, tmp_path / "m"))
    assert one_line(err).startswith(f"{splits}: no _SUCCESS marker")
    assert not (tmp_path / "m").exists()


def test_missing_split(splits, tmp_path):
    for part in (splits / "validation").iterdir():
        part.unlink()
    with pytest.raises(UserError) as err:
        core.run(config(splits, tmp_path / "m"))
    assert one_line(err) == f"{splits}/validation: no part-*.parquet files (missing validation split?)"


def test_wrong_columns(splits, tmp_path):
    part = splits / "test" / "part-00000.parquet"
    pq.write_table(pq.read_table(part).drop_columns(["distance_km", "hour"]), part)
    with pytest.raises(UserError) as err:
        core.run(config(splits, tmp_path / "m"))
    assert one_line(err).startswith(f"{part}: no column(s) ['distance_km', 'hour']")


def test_missing_values_name_the_split_and_column(splits, tmp_path):
    import pyarrow as pa

    part = splits / "train" / "part-00000.parquet"
    table = pq.read_table(part)
    fare = table.column("fare").to_pylist()
    fare[3] = None
    pq.write_table(table.set_column(table.schema.get_field_index("fare"), "fare", pa.array(fare)), part)
    with pytest.raises(UserError, match=r"/train: column 'fare' has 1 missing or non-finite value"):
        core.run(config(splits, tmp_path / "m"))


def test_refuses_to_replace_a_directory_that_is_not_a_model(splits, tmp_path):
    other = tmp_path / "precious"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not a model directory"):
        core.run(config(splits, other))
    assert (other / "notes.txt").read_text() == "keep me"
    # an earlier model is replaced
    core.run(config(splits, tmp_path / "m", epochs=1))
    core.run(config(splits, tmp_path / "m", epochs=1, hidden=(8,)))
    assert model_dir.load(tmp_path / "m").architecture.hidden == (8,)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"epochs": 0}, "--epochs"),
        ({"batch_size": 0}, "--batch-size"),
        ({"learning_rate": 0.0}, "--lr"),
        ({"device": "tpu"}, "--device"),
        ({"hidden": (16, 0)}, "hidden layer sizes"),
        ({"max_rows": 0}, "--max-rows"),
    ],
)
def test_bad_settings(splits, tmp_path, overrides, match):
    with pytest.raises(UserError, match=match):
        core.run(config(splits, tmp_path / "m", **overrides))


def test_parse_hidden():
    assert parse_hidden("128,64,32") == (128, 64, 32)
    for bad in ("", "a,b", "16,-1", "0"):
        with pytest.raises(UserError, match="--hidden"):
            parse_hidden(bad)


# --- sharding -------------------------------------------------------------------------


def test_shard_plan_whole_files_when_they_deal_out_evenly():
    rows = [1000, 1001, 1000, 1001]  # the sample step's --shards 4: sizes differ by at most one
    assert shard_plan(rows, 0, 2) == [(0, 0, 1000), (2, 0, 1000)]
    assert shard_plan(rows, 1, 2) == [(1, 0, 1001), (3, 0, 1001)]
    assert [shard_plan(rows, r, 4) for r in range(4)] == [[(r, 0, n)] for r, n in enumerate(rows)]
    assert shard_plan(rows, 0, 1) == [(i, 0, n) for i, n in enumerate(rows)]


def covered(plans: list) -> list[tuple[int, int]]:
    return [(f, i) for plan in plans for f, a, b in plan for i in range(a, b)]


def test_shard_plan_balanced_when_files_do_not_divide_by_the_ranks():
    # 4 files over 3 ranks: round robin gave rank 0 half of the rows; now 13/13/14 contiguous rows
    rows = [10, 10, 10, 10]
    plans = [shard_plan(rows, r, 3) for r in range(3)]
    assert plans == [[(0, 0, 10), (1, 0, 3)], [(1, 3, 10), (2, 0, 6)], [(2, 6, 10), (3, 0, 10)]]
    assert shard_sizes(rows, 3) == [13, 13, 14]
    assert covered(plans) == [(f, i) for f in range(4) for i in range(10)]  # every row once, in order
    # 5 files over 2 ranks: 30 + 30 rows (round robin: 36 + 24)
    assert shard_sizes([10, 11, 12, 13, 14], 2) == [30, 30]
    assert shard_plan([10, 11, 12, 13, 14], 1, 2) == [(2, 9, 12), (3, 0, 13), (4, 0, 14)]


def test_shard_plan_uneven_files_are_cut_by_rows_even_when_they_divide():
    # the sample step's sizes for 2 rows in 4 shards: round robin gave rank 0 no rows at all
    assert shard_sizes([0, 1, 0, 1], 2) == [1, 1]
    assert [shard_plan([0, 1, 0, 1], r, 2) for r in range(2)] == [[(1, 0, 1)], [(3, 0, 1)]]
    # 2 files over 2 ranks, 100 vs 140 rows: 120 each
    assert shard_sizes([100, 140], 2) == [120, 120]
    for world in range(1, 8):
        for rows in ([7, 0, 3, 9], [1, 1, 1], [50, 1, 1, 50, 2, 30], [5]):
            sizes = shard_sizes(rows, world)
            assert sum(sizes) == sum(rows) and max(sizes) - min(sizes) <= max(1, sum(rows) // (100 * world))


def test_check_shards_refuses_a_rank_without_rows():
    check_shards([1, 1], 2, None, "s/train")
    with pytest.raises(UserError) as err:
        check_shards([1], 2, None, "s/train")
    assert (
        one_line(err)
        == "s/train: 1 row(s) in 1 file(s) for 2 workers: rank 0 gets no rows (give fewer workers or more rows)"
    )
    with pytest.raises(UserError) as err:
        check_shards([0, 1, 0], 3, None, "s/train")
    assert "1 row(s) in 3 file(s) for 3 workers: rank 0 gets no rows" in one_line(err)
    with pytest.raises(UserError) as err:
        check_shards([100, 100], 2, 1, "s/train")
    assert one_line(err) == "--max-rows 1: fewer than the 2 workers (each needs at least one train row)"
    check_shards([100, 100], 2, 2, "s/train")
    assert shard_sizes([100, 100], 2, max_rows=2) == [1, 1]


def test_launch_local_refuses_max_rows_below_workers_before_launching(splits, tmp_path):
    with pytest.raises(UserError, match=r"^--max-rows 1: fewer than the 2 workers"):
        launch_local(config(splits, tmp_path / "m", max_rows=1), workers=2)
    assert not (tmp_path / "m").exists()


def test_shard_plan_max_rows_is_shared_by_the_ranks():
    rows = [100, 100]
    plans = [shard_plan(rows, r, 2, max_rows=7) for r in range(2)]
    assert plans == [[(0, 0, 3)], [(1, 0, 4)]]
    assert shard_plan([2, 2, 2], 0, 1, max_rows=5) == [(0, 0, 2), (1, 0, 2), (2, 0, 1)]
