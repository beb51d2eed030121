"""The train step's model directory as its staged output (components.common.staged through
components.common.model_dir): a ``_SUCCESS`` naming train, written last; a foreign location refused
before any training; a model directory from before the markers accepted and replaced; a write that
fails part way leaves no complete-looking model and the checkpoints beside it, so the next run with
the same output resumes instead of retraining (issue #13). S3: moto (tests/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.common import model_dir
from components.common.errors import UserError
from components.common.staged import require_complete
from components.train import checkpoint, core
from components.train.config import TrainConfig

MODEL_FILES = ["_SUCCESS", "model.json", "model.npz", "model.pt"]


def config(splits, out, **overrides) -> TrainConfig:
    settings = {"epochs": 2, "batch_size": 64, "seed": 3, "device": "cpu", "patience": 0}
    return TrainConfig(str(splits), str(out), **{**settings, **overrides})


def files(directory: Path) -> list[str]:
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())


def train(cfg: TrainConfig) -> tuple[core.TrainResult, list[str]]:
    lines: list[str] = []
    return core.run(cfg, log=lines.append, progress=False), lines


def epochs_run(lines: list[str]) -> list[str]:
    return [line.split(":")[0] for line in lines if line.startswith("epoch ")]


def dies_writing(directory: Path, *_args, **_kwargs) -> dict:
    """``model_dir._write_files`` killed after model.pt (a full disk, say)."""
    (directory / model_dir.WEIGHTS_FILE).write_bytes(b"half a model")
    raise OSError(28, "No space left on device")


def test_the_model_directory_is_committed_with_a_train_marker(splits, tmp_path):
    result, _ = train(config(splits, tmp_path / "m"))
    out = tmp_path / "m"
    assert files(out) == MODEL_FILES
    meta = json.loads((out / "model.json").read_text())
    marker = require_complete(str(out), "train")
    assert marker == {"step": "train", "format": "fareflow", "model_version": meta["model_version"]}
    assert meta["metrics"]["test_rmse"] == result.metrics["test_rmse"]
    assert model_dir.load(out).meta == meta  # the server's reader is unaffected by the marker
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "m.checkpoints", "splits"]


@pytest.mark.parametrize(
    "content, holds",
    [
        ({"notes.txt": "mine"}, "notes.txt, no _SUCCESS or _INCOMPLETE marker"),
        (
            {"_SUCCESS": '{"step": "quality"}', "clean/part-0.parquet": "rows"},
            "a _SUCCESS of the quality step",
        ),
    ],
)
def test_a_foreign_location_is_refused_before_training(splits, tmp_path, content, holds):
    out = tmp_path / "m"
    for name, text in content.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    with pytest.raises(UserError) as err:
        train(config(splits, out))
    assert str(err.value).startswith(
        f"{out}: not empty and not a model directory of the train step (it holds {holds}"
    )
    assert files(out) == sorted(content)
    assert not (tmp_path / "m.checkpoints").exists()  # refused before the first epoch


def test_a_model_from_before_the_markers_is_resumed_and_replaced(splits, tmp_path):
    cfg = config(splits, tmp_path / "m")
    first, _ = train(cfg)
    (tmp_path / "m" / "_SUCCESS").unlink()  # as an earlier version wrote it: model.json, no marker
    again, lines = train(cfg)
    assert "training had finished at epoch 2; not retraining (model from the checkpoint)" in lines
    assert epochs_run(lines) == [] and again.metrics == first.metrics
    assert files(tmp_path / "m") == MODEL_FILES
    assert require_complete(str(tmp_path / "m"), "train")["step"] == "train"


def test_a_failed_model_write_keeps_the_checkpoints_and_the_next_run_resumes(splits, tmp_path, monkeypatch):
    cfg = config(splits, tmp_path / "m")
    with monkeypatch.context() as m:
        m.setattr(model_dir, "_write_files", dies_writing)
        with pytest.raises(UserError, match=f"^{tmp_path / 'm'}: cannot write the model there \\("):
            train(cfg)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.checkpoints", "splits"]  # no half model
    assert [f.epoch for f in checkpoint.listing(str(tmp_path / "m.checkpoints"))] == [1, 2]
    result, lines = train(cfg)
    assert lines[0] == f"resumed from epoch 2 ({tmp_path}/m.checkpoints/{checkpoint.file_name(2, 0)})"
    assert epochs_run(lines) == []  # the finished training is not repeated
    assert files(tmp_path / "m") == MODEL_FILES
    assert json.loads((tmp_path / "m" / "model.json").read_text())["metrics"] == result.metrics

    # an earlier model whose replacement fails is kept whole
    before = {name: (tmp_path / "m" / name).read_bytes() for name in MODEL_FILES}
    with monkeypatch.context() as m:
        m.setattr(model_dir, "_write_files", dies_writing)
        with pytest.raises(UserError, match="cannot write the model there"):
            train(cfg)
    assert {name: (tmp_path / "m" / name).read_bytes() for name in MODEL_FILES} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "m.checkpoints", "splits"]


def _objects(s3, bucket: str, prefix: str) -> list[str]:
    return [k[len(prefix) :] for k in s3.keys(bucket, prefix) if not k.endswith("/")]


def test_on_s3_a_cut_off_upload_never_looks_complete_and_the_rerun_resumes(splits, s3, monkeypatch):
    bucket = s3.bucket("fareflow")
    s3.put(bucket, "models/fare/notes.txt", b"not a model")
    with pytest.raises(UserError, match="^s3://fareflow/models/fare: not empty and not a model directory"):
        train(config(splits, "s3://fareflow/models/fare"))
    assert _objects(s3, bucket, "models/") == ["fare/notes.txt"]  # nothing trained, nothing touched

    cfg = config(splits, "s3://fareflow/models/fare2")
    real_copy = model_dir.shutil.copyfileobj

    def cut_off(src, dst, *args):
        if src.name.endswith(model_dir.ARRAYS_FILE):
            raise OSError("connection reset by peer")
        real_copy(src, dst, *args)

    with monkeypatch.context() as m:
        m.setattr(model_dir.shutil, "copyfileobj", cut_off)
        with pytest.raises(UserError, match="^s3://fareflow/models/fare2: cannot upload the model"):
            train(cfg)
    assert _objects(s3, bucket, "models/fare2/") == ["_INCOMPLETE"]
    with pytest.raises(UserError, match="the train step has not finished writing it"):
        require_complete(cfg.output_uri, "train")
    assert _objects(s3, bucket, "models/fare2.checkpoints/") == [
        checkpoint.file_name(1, 0),
        checkpoint.file_name(2, 0),
    ]
    result, lines = train(cfg)
    assert lines[0].startswith("resumed from epoch 2 (s3://fareflow/models/fare2.checkpoints/")
    assert epochs_run(lines) == []
    assert _objects(s3, bucket, "models/fare2/") == MODEL_FILES
    assert (
        require_complete(cfg.output_uri, "train")["model_version"]
        == (json.loads(s3.get(bucket, "models/fare2/model.json"))["model_version"])
    )
    assert json.loads(s3.get(bucket, "models/fare2/model.json"))["metrics"] == result.metrics
