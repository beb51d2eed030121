"""The model directory's torch-free forward pass: ``ArrayMLP`` from model.npz against the torch
module it was saved from, and its refusals of arrays that are not the described architecture."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from components.common import model_dir
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
