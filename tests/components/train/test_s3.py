from __future__ import annotations

import pytest

from components.common import model_dir
from components.common.errors import UserError
from components.train import core
from components.train.config import TrainConfig


@pytest.mark.slow
def test_reads_splits_from_s3_and_writes_the_model_there(splits, s3, tmp_path):
    bucket = s3.bucket("fareflow")
    for path in sorted(p for p in splits.rglob("*") if p.is_file()):
        s3.put(bucket, f"splits/{path.relative_to(splits)}", path)
    s3.put(bucket, "truth.json", b'{"best_rmse": 0.5}')
    config = TrainConfig(
        "s3://fareflow/splits", "s3://fareflow/models/fare", epochs=2, batch_size=64, device="cpu",
        truth_uri="s3://fareflow/truth.json",
    )  # fmt: skip
    result = core.run(config)
    assert result.rows == {"train": 2400, "validation": 300, "test": 300}
    assert result.metrics["best_possible_rmse"] == 0.5
    keys = [k for k in s3.keys(bucket, "models/fare/") if not k.endswith("/")]
    assert keys == [
        "models/fare/_SUCCESS", "models/fare/model.json", "models/fare/model.npz", "models/fare/model.pt",
    ]  # fmt: skip
    # the checkpoints beside it, on S3 too (the newest 2 of 2 epochs)
    assert [k for k in s3.keys(bucket, "models/fare.checkpoints/") if not k.endswith("/")] == [
        "models/fare.checkpoints/ckpt-0001-00000000.pt",
        "models/fare.checkpoints/ckpt-0002-00000000.pt",
    ]
    local = tmp_path / "downloaded"
    local.mkdir()
    for key in keys:
        (local / key.rsplit("/", 1)[1]).write_bytes(s3.get(bucket, key))
    assert model_dir.load(local).meta["metrics"]["test_rmse"] == pytest.approx(result.metrics["test_rmse"])
    # same rows, same seed: the same model as from the local copy
    here = core.run(TrainConfig(str(splits), str(tmp_path / "m"), epochs=2, batch_size=64, device="cpu"))
    assert here.metrics["test_rmse"] == result.metrics["test_rmse"]
    # a prefix holding something else is refused; a missing _SUCCESS names the URI
    s3.put(bucket, "other/keep.txt", b"keep")
    with pytest.raises(UserError, match="s3://fareflow/other: not empty and not a model directory"):
        core.run(TrainConfig("s3://fareflow/splits", "s3://fareflow/other", epochs=1))
    with pytest.raises(UserError, match="s3://fareflow/nothing: no _SUCCESS marker"):
        core.run(TrainConfig("s3://fareflow/nothing", "s3://fareflow/m2", epochs=1))
