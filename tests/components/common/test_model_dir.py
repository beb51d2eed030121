"""The model directory: its torch-free forward pass (``ArrayMLP`` from model.npz against the torch
module it was saved from, and its refusals of arrays that are not the described architecture) and
its writing as the train step's staged output (``_SUCCESS`` naming train, refusal of foreign
locations, models from before the markers, failures part way; local and S3)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from components.common import model_dir, staged
from components.common.errors import UserError
from components.common.features import FEATURE_NAMES, FeatureSpec

ARCHS = [
    model_dir.Architecture(),
    model_dir.Architecture(hidden=(16, 8), dropout=0.2),
    model_dir.Architecture(hidden=(1,)),
    model_dir.Architecture(hidden=(64, 1, 32), dropout=0.1),
]


def saved(tmp_path, arch: model_dir.Architecture, seed: int = 0):
    torch.manual_seed(seed)
    module = model_dir.build(arch)
    for p in module.parameters():  # weights far from init, so the layers really compute something
        torch.nn.init.normal_(p, std=0.5)
    spec = FeatureSpec(mean=dict.fromkeys(FEATURE_NAMES, 0.0), std=dict.fromkeys(FEATURE_NAMES, 1.0))
    return module.eval(), model_dir.save(tmp_path / "model", module, spec, arch)


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: f"{a.hidden}-{a.dropout}")
def test_array_mlp_computes_what_the_torch_module_computes(tmp_path, arch):
    module, directory = saved(tmp_path, arch)
    x = np.random.default_rng(1).normal(0, 2, (513, len(FEATURE_NAMES))).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    got = model_dir.load_arrays(directory, arch)(x)
    assert got.shape == expected.shape == (513, 1) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert not np.allclose(got, got.mean())  # not a constant: the test would catch a wrong layer


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: f"{a.hidden}-{a.dropout}")
def test_state_shapes_are_the_torch_state_dicts(arch):
    state = model_dir.build(arch).state_dict()
    assert model_dir._state_shapes(arch) == {k: tuple(v.shape) for k, v in state.items()}


def test_arrays_of_another_architecture_are_refused_with_the_file(tmp_path):
    _, directory = saved(tmp_path, model_dir.Architecture(hidden=(16, 8)))
    with pytest.raises(
        UserError, match=r"model\.npz: not the weights of the architecture model\.json describes"
    ):
        model_dir.load_arrays(directory, model_dir.Architecture(hidden=(16, 4)))


def test_a_corrupt_or_missing_npz_is_one_line(tmp_path):
    arch = model_dir.Architecture(hidden=(8,))
    _, directory = saved(tmp_path, arch)
    (directory / model_dir.ARRAYS_FILE).write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(UserError, match=r"model\.npz: not a readable \.npz of the weights"):
        model_dir.load_arrays(directory, arch)
    (directory / model_dir.ARRAYS_FILE).unlink()
    with pytest.raises(UserError, match=r"model\.npz: missing"):
        model_dir.load_arrays(directory, arch)


# --- the model directory as the train step's staged output -------------------------------------

SMALL = model_dir.Architecture(hidden=(4,))


def _files(root) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _meta(directory) -> dict:
    return json.loads((directory / model_dir.META_FILE).read_text())


def test_save_commits_a_train_marker_last_and_leaves_no_staging(tmp_path):
    _, directory = saved(tmp_path, SMALL)
    assert _files(directory) == ["_SUCCESS", "model.json", "model.npz", "model.pt"]
    marker = staged.require_complete(str(directory), "train")
    assert marker == {
        "step": "train",
        "format": "fareflow",
        "model_version": _meta(directory)["model_version"],
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no hidden staging directory left
    assert model_dir.load(directory).meta["model_version"] == marker["model_version"]


def test_an_earlier_model_is_replaced_and_checkpoints_beside_it_are_kept(tmp_path):
    _, directory = saved(tmp_path, SMALL, seed=0)
    first = _meta(directory)["model_version"]
    beside = tmp_path / "model.checkpoints" / "ckpt-0001-00000000.pt"
    beside.parent.mkdir()
    beside.write_bytes(b"checkpoint")
    model_dir.check_output(str(directory))
    _, again = saved(tmp_path, SMALL, seed=1)
    assert again == directory and _meta(directory)["model_version"] != first
    assert (
        staged.require_complete(str(directory), "train")["model_version"] == _meta(directory)["model_version"]
    )
    assert beside.read_bytes() == b"checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "model.checkpoints"]


def test_a_model_directory_from_before_the_markers_is_an_earlier_output(tmp_path):
    _, directory = saved(tmp_path, SMALL)
    (directory / "_SUCCESS").unlink()  # as written before the train step had markers
    model_dir.check_output(str(directory))
    saved(tmp_path, SMALL, seed=2)
    assert staged.require_complete(str(directory), "train")["step"] == "train"


@pytest.mark.parametrize(
    "files, holds",
    [
        ({"notes.txt": "mine"}, "notes.txt, no _SUCCESS or _INCOMPLETE marker"),
        ({"_SUCCESS": '{"step": "quality"}', "model.json": "{}"}, "a _SUCCESS of the quality step"),
        ({"_INCOMPLETE": '{"step": "ingest"}'}, "a _INCOMPLETE of the ingest step"),
        ({"sub/model.json": "{}"}, "sub/model.json, no _SUCCESS"),  # model.json only counts at the top
    ],
)
def test_a_foreign_directory_is_refused_and_left_alone(tmp_path, files, holds):
    target = tmp_path / "model"
    for name, text in files.items():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_text(text)
    before = _files(target)
    message = f"{target}: not empty and not a model directory of the train step (it holds {holds}"
    with pytest.raises(UserError, match=re.escape(message)):
        model_dir.check_output(str(target))
    with pytest.raises(UserError, match=re.escape(message)):
        saved(tmp_path, SMALL)
    assert _files(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_file_is_refused_as_the_model_directory(tmp_path):
    (tmp_path / "model").write_text("x")
    with pytest.raises(UserError, match="exists and is a file, not a directory"):
        model_dir.check_output(str(tmp_path / "model"))


def test_a_failure_mid_write_keeps_the_earlier_model_and_leaves_nothing_half_written(tmp_path, monkeypatch):
    _, directory = saved(tmp_path, SMALL)
    before = {name: (directory / name).read_bytes() for name in _files(directory)}

    def full_disk(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(model_dir.np, "savez", full_disk)  # after model.pt, before model.json
    module = model_dir.build(SMALL)
    spec = FeatureSpec(mean=dict.fromkeys(FEATURE_NAMES, 0.0), std=dict.fromkeys(FEATURE_NAMES, 1.0))
    with pytest.raises(UserError, match=f"^{re.escape(str(directory))}: cannot write the model there \\("):
        model_dir.write_model(str(directory), module, spec, SMALL)
    assert {name: (directory / name).read_bytes() for name in _files(directory)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    with pytest.raises(UserError, match="cannot write the model there"):  # a new location stays absent
        model_dir.write_model(str(tmp_path / "new"), module, spec, SMALL)
    assert not (tmp_path / "new").exists()


# --- on S3 (moto over real HTTP: the s3 fixture of tests/conftest.py) --------------------------


def _model(seed: int = 0):
    torch.manual_seed(seed)
    spec = FeatureSpec(mean=dict.fromkeys(FEATURE_NAMES, 0.0), std=dict.fromkeys(FEATURE_NAMES, 1.0))
    return model_dir.build(SMALL), spec


def _objects(s3, bucket: str, prefix: str) -> list[str]:
    return [k[len(prefix) :] for k in s3.keys(bucket, prefix) if not k.endswith("/")]


def test_s3_model_is_staged_replaces_an_earlier_one_and_refuses_foreign_prefixes(s3, tmp_path):
    b = s3.bucket("models")
    s3.put(b, "fare.checkpoints/ckpt-0001-00000000.pt", b"checkpoint")
    s3.put(b, "fare2/keep.txt", b"a neighbour sharing the characters")
    module, spec = _model(0)
    model_dir.check_output("s3://models/fare")
    model_dir.write_model("s3://models/fare", module, spec, SMALL)
    assert _objects(s3, b, "fare/") == ["_SUCCESS", "model.json", "model.npz", "model.pt"]
    first = json.loads(s3.get(b, "fare/model.json"))["model_version"]
    assert staged.require_complete("s3://models/fare", "train")["model_version"] == first

    other, _ = _model(1)
    model_dir.write_model("s3://models/fare/", other, spec, SMALL)  # the earlier model is replaced
    second = json.loads(s3.get(b, "fare/model.json"))["model_version"]
    assert second != first and staged.require_complete("s3://models/fare", "train")["model_version"] == second
    assert _objects(s3, b, "fare/") == ["_SUCCESS", "model.json", "model.npz", "model.pt"]
    assert s3.get(b, "fare.checkpoints/ckpt-0001-00000000.pt") == b"checkpoint"
    assert s3.get(b, "fare2/keep.txt").startswith(b"a neighbour")

    s3.put(b, "photos/holiday.jpg", b"keep me")
    with pytest.raises(
        UserError, match="^s3://models/photos: not empty and not a model directory of the train"
    ):
        model_dir.write_model("s3://models/photos", module, spec, SMALL)
    assert _objects(s3, b, "photos/") == ["holiday.jpg"]

    for name in ("model.pt", "model.npz", "model.json"):  # a model written before the markers
        s3.put(b, f"legacy/{name}", s3.get(b, f"fare/{name}"))
    model_dir.check_output("s3://models/legacy")
    model_dir.write_model("s3://models/legacy", module, spec, SMALL)
    assert _objects(s3, b, "legacy/") == ["_SUCCESS", "model.json", "model.npz", "model.pt"]


def test_s3_write_sweeps_a_killed_writers_local_copy(s3, dead_scratch):
    """The files for an s3:// model are written to a scratch directory first: one a killed
    train step left goes with the next model written, and none is left after a write."""
    s3.bucket("models")
    left = dead_scratch(model_dir.MODEL_SCRATCH)
    module, spec = _model(0)
    model_dir.write_model("s3://models/fare", module, spec, SMALL)
    assert not left.exists()
    assert list(left.parent.glob(f"{model_dir.MODEL_SCRATCH}-*")) == []


def test_s3_upload_failing_part_way_leaves_no_complete_looking_model(s3, monkeypatch):
    b = s3.bucket("models")
    module, spec = _model(0)
    model_dir.write_model("s3://models/fare", module, spec, SMALL)
    real_copy, copied = model_dir.shutil.copyfileobj, []

    def cut_off(src, dst, *args):
        if copied:  # model.pt went up; the connection drops during model.npz
            raise OSError("connection reset by peer")
        copied.append(src.name)
        real_copy(src, dst, *args)

    with monkeypatch.context() as m:
        m.setattr(model_dir.shutil, "copyfileobj", cut_off)
        with pytest.raises(UserError, match="^s3://models/fare: cannot upload the model \\(connection reset"):
            model_dir.write_model("s3://models/fare", module, spec, SMALL)
    # the earlier model is gone (deleted on entry, as before) and nothing looks complete
    assert _objects(s3, b, "fare/") == ["_INCOMPLETE"]
    with pytest.raises(UserError, match="the train step has not finished writing it"):
        staged.require_complete("s3://models/fare", "train")
    model_dir.check_output("s3://models/fare")  # a failed write of the model may be replaced
    model_dir.write_model("s3://models/fare", module, spec, SMALL)
    assert _objects(s3, b, "fare/") == ["_SUCCESS", "model.json", "model.npz", "model.pt"]
