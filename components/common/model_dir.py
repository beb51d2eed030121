"""The model directory: the fare MLP (``build``) and its on-disk form, written by the train
step and loaded by the model server (format: docs/train.md, "Model directory").

The directory (local or ``s3://``) holds ``model.pt``, ``model.npz`` (the same weights for
``ArrayMLP``, the torch-free forward pass the server runs) and ``model.json`` (``model_version``
in it is a digest of the weights); it is the train step's staged output
(components.common.staged): ``save``/``write_model`` commit it with a ``_SUCCESS`` marker naming
the step, last, and ``check_output`` refuses anything but new, empty or an earlier model directory
(one with train's marker, or, written before markers, ``model.json``). torch is imported only
inside the functions that need it.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import contract, scratch
from .errors import UserError
from .features import FEATURE_NAMES, FeatureSpec
from .filesystem import is_s3
from .staged import StagedOutput, check_destination

MODEL_FORMAT = "fareflow"  # the ServingRuntime's supportedModelFormats name
MODEL_VERSION = 1
WEIGHTS_FILE = "model.pt"
ARRAYS_FILE = "model.npz"  # the same weights as float32 arrays: the model server needs no torch
META_FILE = "model.json"
# where a model written to or read from S3 is held locally (components.common.scratch)
MODEL_SCRATCH = "fareflow-model"
STEP = "train"  # the step whose staged output a model directory is (its _SUCCESS names it)
# A model directory from before the markers: model.json (written last) and no marker.
_OUTPUT = {"legacy": (META_FILE,), "what": f"a model directory of the {STEP} step"}


@dataclass(frozen=True)
class Architecture:
    hidden: tuple[int, ...] = (128, 64, 32)
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if not self.hidden or any(int(h) < 1 for h in self.hidden):
            raise UserError(f"hidden layer sizes: expected positive integers, got {list(self.hidden)}")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"dropout: expected a value in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict:
        return {"hidden": list(self.hidden), "dropout": self.dropout}

    @classmethod
    def from_dict(cls, data: dict) -> Architecture:
        return cls(hidden=tuple(int(h) for h in data["hidden"]), dropout=float(data.get("dropout", 0.0)))


def build(arch: Architecture):
    """An MLP ``len(FEATURE_NAMES) -> hidden... -> 1`` with SiLU activations."""
    import torch.nn as nn

    layers: list[nn.Module] = []
    width = len(FEATURE_NAMES)
    for h in arch.hidden:
        layers += [nn.Linear(width, h), nn.SiLU()]
        if arch.dropout:
            layers.append(nn.Dropout(arch.dropout))
        width = h
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


class ArrayMLP:
    """``build(arch)`` in eval mode as numpy: Linear -> SiLU (-> Dropout, the identity in
    evaluation) ... -> Linear, in float32 like torch, from ``model.npz`` (the state_dict's
    arrays under their state_dict names). The model server uses it, so it starts without
    importing torch (about 2 s of its start-up) and answers a small request without torch's
    per-call overhead. Outputs agree with the torch module to float32 rounding
    (tests/components/common/test_model_dir.py)."""

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray]]) -> None:
        self.layers = [(np.ascontiguousarray(w.T, dtype=np.float32), b.astype(np.float32)) for w, b in layers]

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], arch: Architecture, where: str) -> ArrayMLP:
        """The layers of ``arch`` from a state_dict's arrays; ``UserError`` naming ``where`` when
        they are not that architecture's."""
        shapes = {k: tuple(v.shape) for k, v in arrays.items()}
        expected = _state_shapes(arch)
        if shapes != expected:
            raise UserError(
                f"{where}: not the weights of the architecture {META_FILE} describes "
                f"(expected arrays {expected}, got {shapes})"
            )
        indices = sorted({int(k.split(".")[0]) for k in arrays})
        return cls([(arrays[f"{i}.weight"], arrays[f"{i}.bias"]) for i in indices])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Fares (shape ``[n, 1]``, float32) for encoded rows ``x`` (``[n, features]``)."""
        h = np.asarray(x, dtype=np.float32)
        last = len(self.layers) - 1
        with np.errstate(over="ignore"):  # exp(-h) of a very negative h is inf: sigmoid 0, as in torch
            for i, (w, b) in enumerate(self.layers):
                h = h @ w
                h += b
                if i < last:
                    h *= 1.0 / (1.0 + np.exp(-h))  # SiLU: h * sigmoid(h)
        return h


def _state_shapes(arch: Architecture) -> dict[str, tuple[int, ...]]:
    """``build(arch).state_dict()``'s names and shapes, without torch."""
    shapes, index, width = {}, 0, len(FEATURE_NAMES)
    for h in arch.hidden:
        shapes[f"{index}.weight"], shapes[f"{index}.bias"] = (h, width), (h,)
        index += 3 if arch.dropout else 2  # Linear, SiLU[, Dropout]
        width = h
    shapes[f"{index}.weight"], shapes[f"{index}.bias"] = (1, width), (1,)
    return shapes


def load_arrays(directory: str | Path, arch: Architecture, version: str | None = None) -> ArrayMLP:
    """``model.npz`` of a model directory as an :class:`ArrayMLP`; ``UserError`` if unreadable,
    not ``arch``'s weights, or (given ``version``, model.json's ``model_version``) other weights
    than the version names -- a partial copy, or another model's file."""
    path = Path(directory) / ARRAYS_FILE
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise UserError(f"{path}: missing") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise UserError(
            f"{path}: not a readable .npz of the weights ({' '.join(str(err).split())})"
        ) from None
    mlp = ArrayMLP.from_arrays(arrays, arch, str(path))
    found = weights_digest(arrays) if version is not None else None
    if found != version:
        raise UserError(
            f"{path}: these weights are version {found}, not the {version} "
            f"{META_FILE} names (a partial copy, or another model's file)"
        )
    return mlp


@dataclass
class LoadedModel:
    module: object  # torch.nn.Module in eval mode
    spec: FeatureSpec
    architecture: Architecture
    fare_range: tuple[float, float]
    meta: dict


def _write_files(directory: Path, module, spec: FeatureSpec, arch: Architecture, **extra) -> dict:
    """Write ``model.pt``, ``model.npz`` and then ``model.json`` into the existing local
    ``directory``; returns model.json's document."""
    import torch

    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    torch.save(state, directory / WEIGHTS_FILE)
    arrays = {k: v.float().numpy() for k, v in state.items()}
    np.savez(directory / ARRAYS_FILE, **arrays)
    meta = {
        "format": MODEL_FORMAT,
        "version": MODEL_VERSION,  # of this format; the model's own version is model_version
        "model_version": weights_digest(arrays),
        "label": contract.LABEL,
        "architecture": arch.to_dict(),
        "feature_spec": json.loads(spec.to_json()),
        "fare_range": list(contract.FARE_RANGE),
        **extra,
    }
    (directory / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


def _marker(meta: dict) -> dict:
    """The ``_SUCCESS`` document beside the model (``step`` is added by the commit)."""
    return {"format": MODEL_FORMAT, "model_version": meta["model_version"]}


def save(directory: str | Path, module, spec: FeatureSpec, arch: Architecture, **extra) -> Path:
    """Write a local model directory as the train step's staged output (a hidden staging
    directory renamed into place, ``_SUCCESS`` last); ``extra`` goes into model.json. Refuses
    (``UserError``) a directory that is not new, empty or an earlier model directory; an
    ``OSError`` while writing leaves what was there before."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    with StagedOutput(str(directory), STEP, **_OUTPUT) as out:
        meta = _write_files(Path(out.root), module, spec, arch, **extra)
        out.commit(_marker(meta))
    return directory


def weights_digest(arrays: dict[str, np.ndarray]) -> str:
    """The model's version: the first 12 hex digits of a SHA-256 over the weights themselves
    (each array's name, dtype, shape and bytes, by name), so the same weights are the same
    version whatever file holds them, and other weights never are."""
    import hashlib

    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:12]


def model_version(meta: dict) -> str | None:
    """``model.json``'s ``model_version`` (None for a model written before versions existed)."""
    value = meta.get("model_version")
    return str(value) if value else None


def load(directory: str | Path) -> LoadedModel:
    """Read a model directory; ``UserError`` naming the file when it is missing or not ours."""
    import torch

    directory = Path(directory)
    meta_path, weights = directory / META_FILE, directory / WEIGHTS_FILE
    for path in (meta_path, weights):
        if not path.is_file():
            raise UserError(
                f"{path}: missing (expected a fareflow model directory with {META_FILE} and {WEIGHTS_FILE})"
            )
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{meta_path}: not JSON ({err})") from None
    if meta.get("format") != MODEL_FORMAT or meta.get("version") != MODEL_VERSION:
        raise UserError(
            f"{meta_path}: expected format {MODEL_FORMAT!r} version {MODEL_VERSION}, "
            f"got {meta.get('format')!r} version {meta.get('version')!r}"
        )
    arch = Architecture.from_dict(meta["architecture"])
    spec = FeatureSpec.from_json(json.dumps(meta["feature_spec"]))
    module = build(arch)
    module.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    module.eval()
    lo, hi = meta.get("fare_range", contract.FARE_RANGE)
    return LoadedModel(module, spec, arch, (float(lo), float(hi)), meta)


def check_output(uri: str) -> None:
    """The model location must be new, empty or an earlier model directory (``UserError`` if
    not): writing a model replaces it, which must never hit unrelated data. What
    :func:`write_model` checks again when it writes; call it to fail before the training."""
    check_destination(uri, STEP, **_OUTPUT)


def write_model(uri: str, module, spec: FeatureSpec, arch, **extra) -> None:
    """``save`` locally; for ``s3://`` write the files to a temporary directory, then stage them
    under the prefix (``_INCOMPLETE`` first, the earlier model deleted, ``model.pt``,
    ``model.npz``, ``model.json``, then ``_SUCCESS`` and ``_INCOMPLETE`` removed), so a failure
    part way leaves no complete-looking model."""
    if not is_s3(uri):
        try:
            save(uri, module, spec, arch, **extra)
        except OSError as err:
            raise UserError(f"{uri}: cannot write the model there ({err})") from None
        return
    with scratch.scratch_dir(MODEL_SCRATCH) as tmp:
        meta = _write_files(Path(tmp), module, spec, arch, **extra)
        try:
            with StagedOutput(uri, STEP, **_OUTPUT) as out:
                for name in (WEIGHTS_FILE, ARRAYS_FILE, META_FILE):  # model.json last, as before markers
                    with (
                        open(Path(tmp) / name, "rb") as src,
                        out.fs.open_output_stream(out.path(name)) as dst,
                    ):
                        shutil.copyfileobj(src, dst)
                out.commit(_marker(meta))
        except OSError as err:
            raise UserError(f"{uri}: cannot upload the model ({err})") from None
