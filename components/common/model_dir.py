"""The model directory: the fare MLP (``build``) and its on-disk form, written by the train
step and loaded by the model server (format: docs/train.md, "Model directory").

``save``/``load`` work on a local directory (staging directory + rename, so a directory with
``model.json`` is complete; ``model_version`` in it is a digest of ``model.pt``); ``write_model`` also uploads to ``s3://`` (``model.json`` last) and
``check_output`` refuses to replace anything but an earlier model directory. torch is imported
only inside the functions that need it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

from . import contract, storage
from .errors import UserError
from .features import FEATURE_NAMES, FeatureSpec

MODEL_FORMAT = "fareflow"  # the ServingRuntime's supportedModelFormats name
MODEL_VERSION = 1
WEIGHTS_FILE = "model.pt"
META_FILE = "model.json"


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


@dataclass
class LoadedModel:
    module: object  # torch.nn.Module in eval mode
    spec: FeatureSpec
    architecture: Architecture
    fare_range: tuple[float, float]
    meta: dict


def save(directory: str | Path, module, spec: FeatureSpec, arch: Architecture, **extra) -> Path:
    """Write a model directory atomically (staging dir + rename); ``extra`` goes into model.json."""
    import torch

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.tmp-"))
    try:
        state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
        torch.save(state, tmp / WEIGHTS_FILE)
        meta = {
            "format": MODEL_FORMAT,
            "version": MODEL_VERSION,  # of this format; the model's own version is model_version
            "model_version": weights_digest(tmp / WEIGHTS_FILE),
            "label": contract.LABEL,
            "architecture": arch.to_dict(),
            "feature_spec": json.loads(spec.to_json()),
            "fare_range": list(contract.FARE_RANGE),
            **extra,
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def weights_digest(path: str | Path) -> str:
    """The model's version: the first 12 hex digits of the SHA-256 of its ``model.pt``, so the
    same weights are the same version wherever they are copied, and other weights never are."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
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
    """The model location must be new, empty or an earlier model directory (has model.json):
    writing a model replaces it, which must never hit unrelated data."""
    fs, path = storage.resolve_filesystem(uri)
    try:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            return
        if info.type == pafs.FileType.File:
            raise UserError(f"{uri}: exists and is a file; give a directory for the model")
        entries = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    except OSError as err:
        raise UserError(f"{uri}: cannot use as the model directory ({err})") from None
    names = {e.base_name for e in entries}
    if names and META_FILE not in names:
        raise UserError(
            f"{uri}: not empty and not a model directory (no {META_FILE}); refusing to replace it -- "
            "give a new or empty location"
        )


def write_model(uri: str, module, spec: FeatureSpec, arch, **extra) -> None:
    """``model.save`` locally; for ``s3://`` save to a temporary directory and upload
    ``model.pt`` then ``model.json`` (last, so a prefix with model.json is complete)."""
    if not storage.is_s3(uri):
        try:
            save(uri, module, spec, arch, **extra)
        except OSError as err:
            raise UserError(f"{uri}: cannot write the model there ({err})") from None
        return
    fs, prefix = storage.resolve_filesystem(uri)
    with tempfile.TemporaryDirectory(prefix="fareflow-model-") as tmp:
        local = save(os.path.join(tmp, "model"), module, spec, arch, **extra)
        try:
            fs.delete_dir_contents(prefix, missing_dir_ok=True)  # the earlier model (check_output said so)
            for name in (WEIGHTS_FILE, META_FILE):
                with open(local / name, "rb") as src, fs.open_output_stream(f"{prefix}/{name}") as out:
                    shutil.copyfileobj(src, out)
        except OSError as err:
            raise UserError(f"{uri}: cannot upload the model ({err})") from None
