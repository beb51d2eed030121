"""The model directory on the object store: where a training job writes it, its model.json
(version, metrics), and the copy into the train task's ``Model`` artifact.

A model directory is ``components.common.model_dir``'s format; the train job's rank 0 writes it
to ``s3://BUCKET/fareflow/models/JOB/`` and KServe's storage initializer downloads it from there.
"""

from __future__ import annotations

import json

from components.common.errors import UserError

MODEL_PREFIX = "fareflow/models"


def model_output_uri(splits_s3: str, name: str) -> str:
    bucket = splits_s3[len("s3://") :].split("/", 1)[0]
    return f"s3://{bucket}/{MODEL_PREFIX}/{name}"


def read_model_json(model_dir: str) -> dict:
    """``model_dir``/model.json (a local path or ``s3://`` prefix) as a dict; ``UserError`` if it
    is missing or unreadable."""
    from components.common import model_dir as fare_model
    from components.common import storage

    where = f"{model_dir.rstrip('/')}/{fare_model.META_FILE}"
    fs, root = storage.resolve_filesystem(model_dir.rstrip("/"))
    try:
        with fs.open_input_stream(f"{root}/{fare_model.META_FILE}") as src:
            meta = json.loads(src.read().decode("utf-8"))
    except FileNotFoundError:
        raise UserError(f"{where}: missing (not a model directory)") from None
    except (OSError, ValueError) as err:
        raise UserError(f"{where}: cannot read it ({err})") from None
    if not isinstance(meta, dict):
        raise UserError(f"{where}: expected a JSON object, got {type(meta).__name__}")
    return meta


def read_model_version(model_dir: str) -> str | None:
    """``model_version`` from the model's model.json; None for a model written before versions."""
    from components.common import model_dir as fare_model

    return fare_model.model_version(read_model_json(model_dir))


def read_model_metrics(model_dir: str) -> dict:
    return dict(read_model_json(model_dir).get("metrics") or {})


def copy_model_dir(src_s3: str, dest_dir: str) -> list[str]:
    """Copy the model directory the job wrote (``model.json`` required; when it carries train's
    staged-output markers, a finished one: ``_SUCCESS`` of the train step) into ``dest_dir``."""
    import os

    import pyarrow.fs as pafs

    from components.common.staged import INCOMPLETE_MARKER, SUCCESS_MARKER, require_complete
    from components.common.storage import resolve_filesystem

    fs, path = resolve_filesystem(src_s3)
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    files = [i for i in infos if i.type == pafs.FileType.File]
    names = {os.path.basename(i.path) for i in files if os.path.dirname(i.path) == path.rstrip("/")}
    if names & {SUCCESS_MARKER, INCOMPLETE_MARKER}:  # train's staged output: only a finished one
        require_complete(src_s3, "train")
    if "model.json" not in names:
        raise UserError(f"{src_s3}: no model.json (the training job wrote no complete model directory)")
    os.makedirs(dest_dir, exist_ok=True)
    copied = []
    for info in files:
        rel = info.path[len(path.rstrip("/")) + 1 :]
        target = os.path.join(dest_dir, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with fs.open_input_stream(info.path) as src, open(target, "wb") as dst:
            dst.write(src.read())
        copied.append(rel)
    return sorted(copied)
