"""Training checkpoints: written atomically next to the model directory (local or ``s3://``),
the last K kept, read back to resume a run (docs/train.md, "Checkpoints and resume").

A checkpoint file is ``ckpt-EEEE-SSSSSSSS.pt``: EEEE epochs finished, SSSSSSSS steps into the
next one (0 at an epoch's end; more after a SIGTERM mid-epoch). Its bytes are one header line
``fareflow-checkpoint 1 <sha256 of the rest>`` and a ``torch.save`` payload, so a truncated or
altered file is refused instead of half-loaded. Local files are written to a temporary name in
the same directory, fsync'ed and renamed; an ``s3://`` object appears whole when its upload
completes. Only files named like checkpoints are ever listed or deleted.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
from dataclasses import dataclass

import pyarrow.fs as pafs

from components.common import storage
from components.common.errors import UserError

FORMAT = "fareflow-checkpoint"
VERSION = 1
SUFFIX = ".checkpoints"  # default directory: the model directory's name + this, beside it
_NAME = re.compile(r"ckpt-(\d{4,})-(\d{8,})\.pt")


def default_dir(output_uri: str) -> str:
    """``OUTPUT.checkpoints``: beside the model directory (which is replaced when written)."""
    return output_uri.rstrip("/") + SUFFIX


def file_name(epoch: int, step: int) -> str:
    return f"ckpt-{epoch:04d}-{step:08d}.pt"


def _join(directory: str, name: str) -> str:
    return f"{directory.rstrip('/')}/{name}"


@dataclass(frozen=True)
class Found:
    uri: str
    path: str  # inside the filesystem
    epoch: int
    step: int


def _fs(directory: str) -> tuple[pafs.FileSystem, str]:
    try:
        return storage.resolve_filesystem(directory)
    except UserError as err:
        raise UserError(f"--checkpoint-dir {directory}: {err}") from None


def listing(directory: str) -> list[Found]:
    """The checkpoints in ``directory``, oldest first (none when it does not exist)."""
    fs, path = _fs(directory)
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    except OSError as err:
        raise UserError(f"{directory}: cannot list the checkpoints ({err})") from None
    found = []
    for info in infos:
        m = _NAME.fullmatch(info.base_name)
        if m and info.type == pafs.FileType.File:
            found.append(Found(_join(directory, info.base_name), info.path, int(m[1]), int(m[2])))
    return sorted(found, key=lambda f: (f.epoch, f.step))


def encode(state: dict) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    header = f"{FORMAT} {VERSION} {hashlib.sha256(payload).hexdigest()}\n".encode()
    return header + payload


def decode(data: bytes, uri: str) -> dict:
    """The state in a checkpoint's bytes; ``UserError`` naming ``uri`` when it is not whole."""
    import torch

    head, sep, payload = data.partition(b"\n")
    parts = head.decode("ascii", "replace").split(" ")
    hint = "; pass --no-resume to start over"
    if not sep or len(parts) != 3 or parts[0] != FORMAT:
        raise UserError(f"{uri}: not a fareflow checkpoint (no {FORMAT!r} header){hint}")
    if parts[1] != str(VERSION):
        raise UserError(f"{uri}: checkpoint format version {parts[1]}, expected {VERSION}{hint}")
    if hashlib.sha256(payload).hexdigest() != parts[2]:
        raise UserError(f"{uri}: corrupt checkpoint (checksum mismatch, {len(payload)} bytes){hint}")
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unpickling failure is the same refusal
        raise UserError(f"{uri}: unreadable checkpoint ({type(err).__name__}){hint}") from None
    if not isinstance(state, dict) or "epoch" not in state:
        raise UserError(f"{uri}: not a fareflow training checkpoint{hint}")
    return state


def read(found: Found, directory: str) -> dict:
    fs, _ = _fs(directory)
    try:
        with fs.open_input_stream(found.path) as src:
            data = src.read()
    except OSError as err:
        raise UserError(f"{found.uri}: cannot read the checkpoint ({err})") from None
    return decode(data, found.uri)


def write(directory: str, state: dict, keep: int) -> str:
    """Write ``state`` as the checkpoint for its ``epoch``/``step``, then delete all but the
    newest ``keep``; returns its URI."""
    name = file_name(int(state["epoch"]), int(state["step"]))
    data = encode(state)
    uri = _join(directory, name)
    fs, path = _fs(directory)
    try:
        if storage.is_s3(directory):
            with fs.open_output_stream(f"{path}/{name}") as out:  # visible only once complete
                out.write(data)
        else:
            os.makedirs(path, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path, prefix=f".{name}.tmp-")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, os.path.join(path, name))
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
            dir_fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(dir_fd)  # the rename itself survives a crash
            finally:
                os.close(dir_fd)
        for old in listing(directory)[:-keep] if keep > 0 else []:
            fs.delete_file(old.path)
    except OSError as err:
        raise UserError(f"{uri}: cannot write the checkpoint ({err})") from None
    return uri


def clear(directory: str) -> int:
    """Delete every checkpoint in ``directory`` (``--no-resume``); how many there were."""
    fs, _ = _fs(directory)
    old = listing(directory)
    try:
        for f in old:
            fs.delete_file(f.path)
    except OSError as err:
        raise UserError(f"{directory}: cannot delete the old checkpoints ({err})") from None
    return len(old)


def mismatch(saved: dict, current: dict) -> str | None:
    """The first setting that differs between a checkpoint's fingerprint and this run's, as
    ``name: checkpoint X, now Y``; None when they agree."""
    for key in sorted(set(saved) | set(current)):
        if saved.get(key) != current.get(key):
            return f"{key}: checkpoint {_short(saved.get(key))}, now {_short(current.get(key))}"
    return None


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
