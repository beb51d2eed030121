"""Loading a model directory for serving, and the forward pass's thread count.

:func:`load_model_dir` turns every way a directory can be unusable (model.json unreadable, of
another format or version, without its keys; weights corrupt or not its architecture) into one
``UserError``, which the server prints as one line before exiting 2; :func:`fetch_model_dir`
copies an ``s3://`` model directory to local disk first. See docs/serve.md ("The model directory").
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from components.common import contract, features, storage
from components.common.cpu import cpu_threads
from components.common.errors import UserError

from .domain import extent_of


def fetch_model_dir(uri: str, workdir: str | Path) -> Path:
    """A local directory holding the model files of ``uri``.

    A local path is returned as is. For ``s3://bucket/prefix`` the model files
    (model.json, model.pt, and model.npz where there is one) are copied into ``workdir`` (the AWS_* environment variables
    choose the endpoint and credentials, as everywhere in fareflow)."""
    from components.common import model_dir as fare_model

    if not storage.is_s3(uri):
        return Path(uri).expanduser()
    fs, root = storage.resolve_filesystem(uri)
    workdir = Path(workdir)
    for name in (fare_model.META_FILE, fare_model.WEIGHTS_FILE, fare_model.ARRAYS_FILE):
        source = f"{root}/{name}"
        try:
            with fs.open_input_stream(source) as src, open(workdir / name, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except FileNotFoundError:
            if name == fare_model.ARRAYS_FILE:  # a model written before model.npz: served with torch
                (workdir / name).unlink(missing_ok=True)
                continue
            raise UserError(
                f"{uri.rstrip('/')}/{name}: missing (expected a fareflow model directory with "
                f"{fare_model.META_FILE} and {fare_model.WEIGHTS_FILE})"
            ) from None
        except OSError as err:
            raise UserError(f"{uri.rstrip('/')}/{name}: cannot read: {' '.join(str(err).split())}") from None
    return workdir


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def load_model_dir(path: Path):
    """``components.common.model_dir.load`` with every way a directory can be unusable as one ``UserError``:
    model.json unreadable, of another format or version, or without its keys; the weights
    (model.npz, else model.pt for a directory written before model.npz) corrupt, not the
    architecture model.json describes, or not the version it names."""
    from components.common import model_dir as fare_model

    meta_path, weights = path / fare_model.META_FILE, path / fare_model.WEIGHTS_FILE
    for p in (meta_path, weights):
        if not p.is_file():
            raise UserError(
                f"{p}: missing (expected a fareflow model directory with "
                f"{fare_model.META_FILE} and {fare_model.WEIGHTS_FILE})"
            )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise UserError(f"{meta_path}: not JSON ({_one_line(err)})") from None
    if not isinstance(meta, dict):
        raise UserError(f"{meta_path}: expected a JSON object, got {type(meta).__name__}")
    if meta.get("format") != fare_model.MODEL_FORMAT or meta.get("version") != fare_model.MODEL_VERSION:
        raise UserError(
            f"{meta_path}: expected format {fare_model.MODEL_FORMAT!r} version {fare_model.MODEL_VERSION}, "
            f"got {meta.get('format')!r} version {meta.get('version')!r}"
        )
    missing = [key for key in ("architecture", "feature_spec") if key not in meta]
    if missing:
        raise UserError(f"{meta_path}: missing key(s) {', '.join(missing)} (written by fareflow train)")
    try:
        arch = fare_model.Architecture.from_dict(meta["architecture"])
    except UserError as err:
        raise UserError(f"{meta_path}: architecture: {err}") from None
    except (KeyError, TypeError, ValueError, AttributeError):
        raise UserError(
            f"{meta_path}: architecture: expected {{'hidden': [positive integers], 'dropout': number}}, "
            f"got {meta['architecture']!r}"
        ) from None
    try:
        spec = features.FeatureSpec.from_json(json.dumps(meta["feature_spec"]))
    except UserError as err:
        raise UserError(f"{meta_path}: {err}") from None
    except (KeyError, TypeError, ValueError, AttributeError):
        raise UserError(
            f"{meta_path}: feature_spec: expected {{'version': 1, 'feature_names': [...], 'mean': {{...}}, "
            "'std': {...}}"
        ) from None
    fare_range = meta.get("fare_range", contract.FARE_RANGE)
    if not (
        isinstance(fare_range, list | tuple)
        and len(fare_range) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in fare_range)
        and fare_range[0] < fare_range[1]
    ):
        raise UserError(f"{meta_path}: fare_range: expected [low, high] with low < high, got {fare_range!r}")
    extent, extent_source = extent_of(meta, meta_path)
    if (path / fare_model.ARRAYS_FILE).is_file():
        # the weights as arrays: numpy's forward pass, torch never imported
        module = fare_model.load_arrays(path, arch, fare_model.model_version(meta))
        loaded = fare_model.LoadedModel(
            module, spec, arch, (float(fare_range[0]), float(fare_range[1])), meta
        )
        return loaded, extent, extent_source
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        raise UserError(
            f"{path / fare_model.ARRAYS_FILE}: missing -- a model directory written before "
            f"{fare_model.ARRAYS_FILE} existed needs torch to be served, and this server has none; "
            "train it again, or serve it where torch is installed"
        )
    try:
        loaded = fare_model.load(path)
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - torch.load/load_state_dict raise many types for a bad file
        raise UserError(
            f"{weights}: cannot load the weights (corrupt, or not the architecture {fare_model.META_FILE} "
            f"describes): {_one_line(err)}"
        ) from None
    return loaded, extent, extent_source


def limit_threads(threads: int | None = None) -> int:
    """Give the forward pass ``threads`` threads -- numpy's BLAS (threadpoolctl), and torch's
    intra-op threads where a model is served with torch -- by default as many as the container
    has CPUs (not the node's cores): more threads than the CPU limit only get throttled and
    raise tail latency. Returns the count."""
    import sys

    from threadpoolctl import threadpool_limits

    threads = threads or cpu_threads()
    threadpool_limits(limits=threads, user_api="blas")
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    return threads
