"""What a run resumes from and records: its fingerprint (what a checkpoint must agree with),
the checkpoint to resume (or the refusal), the RNG state a checkpoint holds, the epoch-end
checkpoint's URI and the model's provenance for ``model.json``. See docs/train.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from components.common.errors import UserError

from . import checkpoint
from .config import TrainConfig
from .distributed import Dist


def fingerprint(config: TrainConfig, splits, d: Dist) -> dict:
    """What a checkpoint must agree with to be resumed: the model, the data (every split's part
    files by name and rows) and the settings that shape the optimisation path. Epochs, patience
    and min-delta may change between runs (e.g. more epochs)."""
    data = {
        split: [[f.uri.rstrip("/").rsplit("/", 1)[-1], f.rows] for f in files]
        for split, files in sorted(splits.files.items())
    }
    return {
        "architecture": config.architecture().to_dict(),
        "data": data,
        "batch_size": config.batch_size,
        "learning_rate": config.learning_rate,
        "weight_decay": config.weight_decay,
        "seed": config.seed,
        "max_rows": config.max_rows,
        "world_size": d.world,
    }


def resume_state(config: TrainConfig, current: dict, log: Callable[[str], None]) -> dict | None:
    """The newest checkpoint's state if it fits this run (``UserError`` naming it if not, unless
    it is a finished run's: then it is deleted and training starts anew), None when there is
    none; with ``--resume no`` the old checkpoints are deleted instead."""
    directory = config.checkpoint_dir()
    if not config.resume:
        if checkpoint.clear(directory):
            log(f"--no-resume: deleted the earlier checkpoints in {directory}")
        return None
    found = checkpoint.listing(directory)
    if not found:
        return None
    newest = found[-1]
    state = checkpoint.read(newest, directory)
    why = checkpoint.mismatch(state.get("fingerprint") or {}, current)
    if why is not None and state.get("finished"):
        # a finished run's model is replaced by a new run with other settings, as it always was;
        # only an unfinished run's work is worth refusing to throw away
        checkpoint.clear(directory)
        log(f"{newest.uri}: a finished run with other settings ({why}); training anew")
        return None
    if why is not None:
        raise UserError(
            f"{newest.uri}: incompatible checkpoint ({why}); pass --no-resume to start over "
            "or give another --checkpoint-dir"
        )
    state["uri"] = newest.uri
    return state


def rng_state(np_state: dict, device: str, sse: float = 0.0, seconds: float = 0.0) -> dict:
    import torch

    out = {"numpy": np_state, "torch": torch.get_rng_state(), "sse": sse, "seconds": seconds}
    if device.startswith("cuda"):
        out["cuda"] = torch.cuda.get_rng_state(torch.device(device))
    return out


def provenance(config: TrainConfig, fingerprint_: dict) -> dict:
    """Where a model came from, for ``model.json``: the splits (their URI and a digest of every
    split's part files by name and rows, as a checkpoint's fingerprint lists them), the code
    (package version, git commit where the source is a checkout, digest of the source) and when."""
    import datetime
    import hashlib

    from components.common.code_version import code_version

    data = json.dumps(fingerprint_["data"], sort_keys=True).encode()
    return {
        "splits_uri": config.splits_uri,
        "data_digest": hashlib.sha256(data).hexdigest()[:16],
        "code": code_version().as_dict(),
        "trained_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def checkpoint_uri_of(config: TrainConfig, epoch: int) -> str | None:
    """The URI of the epoch-end checkpoint just written (None when none are kept)."""
    if not config.keep_checkpoints:
        return None
    return f"{config.checkpoint_dir().rstrip('/')}/{checkpoint.file_name(epoch, 0)}"
