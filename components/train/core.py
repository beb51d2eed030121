"""Train step: the final fare model on the sample step's splits, one process or DDP.

Input: the sample step's output (``train/``, ``validation/``, ``test/`` of
``part-NNNNN.parquet`` files with the ``contract.CLEAN_SCHEMA`` columns, and ``_SUCCESS``),
a local path or ``s3://`` URI. Output: a model directory (``model.save``: ``model.pt`` +
``model.json`` with the feature spec, metrics, per-epoch history and config).

Training: AdamW + MSE on ``contract.LABEL``; inputs from ``features.encode`` with a
``FeatureSpec`` fitted on the train split. The network learns the *standardised* fare
(train mean and std), which converges far faster than raw dollars; the scaling is then folded
into the output layer (weight * std, bias * std + mean), so the saved module outputs fares. ``batch_size`` is the
*global* batch: with W processes each one takes ``batch_size // W`` rows per step, so a
run's hyper-parameters mean the same whatever the number of workers.

Distributed (DDP): a process started by torchrun or a PyTorchJob (``WORLD_SIZE`` > 1 in the
environment) joins the process group (``nccl`` on CUDA, ``gloo`` on CPU) and trains on its
own shard of the train split (:func:`shard_plan`): when the part files deal out evenly (their
number a multiple of W and the ranks' row totals within 1%), rank r reads files r, r+W,
r+2W, ...; otherwise the rows of all files (in file order) are cut into W contiguous ranges
(sizes differ by at most one row). Every rank reads only the Parquet footers of the other
files, so all ranks take the same decisions (and raise the same errors); a rank without a
single row is refused up front, and again by an all-reduced minimum after loading.

- Feature statistics and the train mean: the count and sum of every continuous feature and
  of the label are all-reduced, then the sum of squared deviations from that global mean
  (two passes, no cancellation), so the ``FeatureSpec`` is that of the whole train split;
  one process uses ``FeatureSpec.fit`` itself.
- Steps: every rank runs the same number of steps per epoch (set by the largest shard; a
  shard a row smaller goes round again for it), as DDP's collective gradient averaging requires.
- Losses: each epoch's squared-error sum and row count are all-reduced (the training RMSE);
  the final train RMSE/MAE are all-reduced over the shards with the best weights.
- Rank 0 evaluates validation after each epoch and broadcasts it, so all ranks agree on the
  best epoch and on early stopping; rank 0 evaluates test once at the end with the best
  weights, writes the model directory and returns the result; the others wait for it.
- Errors: the phases whose outcome may differ between ranks (checking the inputs, loading a
  rank's shard, rank 0 loading validation/test, rank 0 writing the model) end with
  :func:`all_ranks_or_none`: an error on one rank makes every rank raise (the others
  ``rank R of W failed <phase>: <its message>``) and leave the process group, instead of
  waiting for it forever (a multi-pod job has no torchrun to kill the peers). Any other stuck
  collective fails after ``FAREFLOW_DDP_TIMEOUT_MINUTES`` (default 30) minutes.

One process on CPU is deterministic for a seed (same weights, same metrics).
"""

from __future__ import annotations

import datetime
import gc
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from components.common import contract, storage
from components.common.errors import UserError
from components.common.features import CONTINUOUS, FeatureSpec, columns_from_table, encode

from . import model as model_dir

SPLITS: tuple[str, ...] = ("train", "validation", "test")
PART_PREFIX, PART_SUFFIX = "part-", ".parquet"
DEVICES = ("auto", "cpu", "cuda")
EVAL_BATCH = 1 << 16
TRUTH_KEY = "best_rmse"  # components.generate writes the best achievable RMSE under this key
SCATTER_POINTS = 5000  # test predictions kept for the report's plots
TIMEOUT_ENV = "FAREFLOW_DDP_TIMEOUT_MINUTES"  # collective timeout of a DDP run, in minutes
DEFAULT_TIMEOUT_MINUTES = 30


@dataclass(frozen=True)
class TrainConfig:
    splits_uri: str
    output_uri: str
    epochs: int = 8
    batch_size: int = 1024
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    hidden: tuple[int, ...] = (128, 64, 32)
    dropout: float = 0.0
    seed: int = 0
    patience: int = 3  # epochs without a better validation RMSE before stopping; 0 = never stop early
    min_delta: float = 0.0  # a validation RMSE must beat the best by more than this to count
    device: str = "auto"
    max_rows: int | None = None  # use at most this many rows of each split (None = all)
    truth_uri: str | None = None  # the generator's truth.json, for best_possible_rmse

    def validate(self) -> None:
        if self.epochs < 1:
            raise UserError(f"--epochs: expected at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise UserError(f"--batch-size: expected at least 1, got {self.batch_size}")
        for flag, value in (("--lr", self.learning_rate), ("--weight-decay", self.weight_decay)):
            if not math.isfinite(value) or value < 0 or (flag == "--lr" and value == 0):
                raise UserError(
                    f"{flag}: expected a finite {'positive' if flag == '--lr' else 'non-negative'} number, got {value}"
                )
        if self.patience < 0:
            raise UserError(
                f"--patience: expected 0 (off) or a positive number of epochs, got {self.patience}"
            )
        if not math.isfinite(self.min_delta) or self.min_delta < 0:
            raise UserError(f"--min-delta: expected a non-negative number, got {self.min_delta}")
        if self.device not in DEVICES:
            raise UserError(f"--device: expected one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.max_rows is not None and self.max_rows < 1:
            raise UserError(f"--max-rows: expected a positive number of rows, got {self.max_rows}")
        self.architecture()

    def architecture(self) -> model_dir.Architecture:
        return model_dir.Architecture(hidden=tuple(int(h) for h in self.hidden), dropout=float(self.dropout))

    def to_dict(self) -> dict:
        return {**asdict(self), "hidden": list(self.hidden)}


def parse_hidden(text: str) -> tuple[int, ...]:
    """'128,64,32' -> (128, 64, 32): one or more positive layer widths."""
    try:
        sizes = tuple(int(p) for p in str(text).split(","))
    except ValueError:
        sizes = ()
    if not sizes or any(s < 1 for s in sizes):
        raise UserError(
            f"--hidden: expected comma-separated positive layer widths (e.g. 128,64,32), got {text!r}"
        )
    return sizes


# --- the process group ---------------------------------------------------------------


@dataclass(frozen=True)
class Dist:
    """This process's place in the run: rank, world size, device, and whether DDP is on."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: str = "cpu"
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def launched_as_rank() -> bool:
    """Started by torchrun / a PyTorchJob (the launcher sets WORLD_SIZE and RANK)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise UserError(f"environment variable {name}: expected an integer, got {value!r}") from None


def _pick_device(requested: str, local_rank: int) -> str:
    import torch

    if requested == "cuda" and not torch.cuda.is_available():
        # Never fall back to CPU: a GPU pod running CPU torch would train silently, slowly.
        build = (
            f"torch {torch.__version__} is a CPU-only build"
            if torch.version.cuda is None
            else "no CUDA device"
        )
        raise UserError(
            f"--device cuda: {build} here (a GPU pod needs the -cuda trainer image; use --device auto or cpu)"
        )
    if requested == "cpu" or not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{local_rank % torch.cuda.device_count()}"


def _size_cpu_threads() -> None:
    """Unless OMP_NUM_THREADS says otherwise, give each local process its share of the
    container's CPU limit (not the node's cores, which torch would use in a pod)."""
    if os.environ.get("OMP_NUM_THREADS"):
        return
    import torch

    from components.common.cpu import cpu_threads

    torch.set_num_threads(cpu_threads(_env_int("LOCAL_WORLD_SIZE", 1)))


def start_process_group(requested_device: str) -> Dist:
    """Join the torchrun/PyTorchJob process group when WORLD_SIZE > 1; else a one-process Dist."""
    world = _env_int("WORLD_SIZE", 1)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    _size_cpu_threads()
    device = _pick_device(requested_device, local_rank)
    if world <= 1:
        return Dist(device=device)
    import torch
    import torch.distributed as dist

    minutes = _env_int(TIMEOUT_ENV, DEFAULT_TIMEOUT_MINUTES)
    if minutes < 1:
        raise UserError(f"environment variable {TIMEOUT_ENV}: expected at least 1 (minutes), got {minutes}")
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    dist.init_process_group(
        backend=backend, init_method="env://", timeout=datetime.timedelta(minutes=minutes)
    )
    return Dist(rank=rank, world=world, local_rank=local_rank, device=device, backend=backend)


def end_process_group(d: Dist) -> None:
    if d.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def _all_reduce(d: Dist, values, op: str = "sum") -> np.ndarray:
    """Sum (or max, or min) a small float64 vector over the ranks; identity for one process."""
    values = np.asarray(values, dtype=np.float64)
    if not d.distributed:
        return values
    import torch
    import torch.distributed as dist

    t = torch.as_tensor(values, dtype=torch.float64, device=d.device)
    ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
    dist.all_reduce(t, op=ops[op])
    return t.cpu().numpy()


def _broadcast(d: Dist, values) -> np.ndarray:
    """Rank 0's float64 vector on every rank."""
    values = np.asarray(values, dtype=np.float64)
    if not d.distributed:
        return values
    import torch
    import torch.distributed as dist

    t = torch.as_tensor(values, dtype=torch.float64, device=d.device)
    dist.broadcast(t, src=0)
    return t.cpu().numpy()


PEER_FAILED = "rank {rank} of {world} failed"  # how the other ranks report a rank's error


def _one_line(err: BaseException) -> str:
    text = str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}"
    return (text.strip().splitlines() or [type(err).__name__])[0]


def _first_failure(d: Dist, failed: BaseException | None) -> tuple[int, str] | None:
    """Collective: every rank says whether it failed; the lowest failing rank and its one-line
    message on every rank (broadcast from it), or None when no rank failed."""
    import torch.distributed as dist

    first = int(_all_reduce(d, [d.rank if failed is not None else d.world], op="min")[0])
    if first >= d.world:
        return None
    message = [_one_line(failed) if d.rank == first and failed is not None else None]
    dist.broadcast_object_list(message, src=first)
    return first, str(message[0])


@contextmanager
def all_ranks_or_none(d: Dist, what: str) -> Iterator[None]:
    """A phase that may fail on some ranks only (their data, rank 0's own work): at its end every
    rank learns whether any failed, and if one did all of them raise -- the failing rank its own
    error, the others ``UserError("rank R of W failed <what>: <its message>")`` -- instead of
    waiting for it in the next collective (a hang in a multi-pod run). Nothing for one process."""
    if not d.distributed:
        yield
        return
    try:
        yield
    except Exception as err:
        _first_failure(d, err)
        raise
    failure = _first_failure(d, None)
    if failure is not None:
        rank, message = failure
        raise UserError(f"{PEER_FAILED.format(rank=rank, world=d.world)} {what}: {message}")


# --- reading the splits --------------------------------------------------------------


@dataclass(frozen=True)
class PartFile:
    path: str  # inside the filesystem
    uri: str  # for messages
    rows: int


@dataclass(frozen=True)
class Splits:
    uri: str
    fs: pafs.FileSystem
    files: dict[str, list[PartFile]]

    def rows(self, split: str) -> int:
        return sum(f.rows for f in self.files[split])


NEEDED_COLUMNS: tuple[str, ...] = (contract.LABEL, *contract.FEATURES)


def _display(uri: str, root: str, path: str) -> str:
    return uri.rstrip("/") + path[len(root) :]


def _check_part_schema(schema: pa.Schema, uri: str) -> None:
    missing = [c for c in NEEDED_COLUMNS if c not in schema.names]
    if missing:
        raise UserError(
            f"{uri}: no column(s) {missing} (expected the sample step's splits with contract.CLEAN_SCHEMA columns)"
        )
    for name in NEEDED_COLUMNS:
        t = schema.field(name).type
        if not (pa.types.is_integer(t) or pa.types.is_floating(t)):
            raise UserError(
                f"{uri}: column {name!r} is {t}, expected a number ({contract.CLEAN_SCHEMA.field(name).type})"
            )


def discover(splits_uri: str) -> Splits:
    """List and check every split's part files (footers only): ``UserError`` naming the path
    for a missing ``_SUCCESS``, a missing or empty split, or a file without the needed columns."""
    storage.require_complete(splits_uri)
    fs, root = storage.resolve_filesystem(splits_uri)
    files: dict[str, list[PartFile]] = {}
    for split in SPLITS:
        directory = f"{root}/{split}"
        shown = _display(splits_uri, root, directory)
        try:
            infos = fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True))
        except OSError as err:
            raise UserError(f"{shown}: cannot list the {split} split ({err})") from None
        parts = sorted(
            i.path
            for i in infos
            if i.type == pafs.FileType.File
            and i.base_name.startswith(PART_PREFIX)
            and i.base_name.endswith(PART_SUFFIX)
        )
        if not parts:
            raise UserError(f"{shown}: no {PART_PREFIX}*{PART_SUFFIX} files (missing {split} split?)")
        files[split] = []
        for path in parts:
            uri = _display(splits_uri, root, path)
            try:
                meta = pq.ParquetFile(fs.open_input_file(path)).metadata
                schema = meta.schema.to_arrow_schema()
            except (pa.ArrowInvalid, OSError) as err:
                raise UserError(f"{uri}: not a readable Parquet file ({err})") from None
            _check_part_schema(schema, uri)
            files[split].append(PartFile(path, uri, meta.num_rows))
        if sum(f.rows for f in files[split]) == 0:
            raise UserError(f"{shown}: the {split} split has no rows")
    return Splits(splits_uri, fs, files)


def _whole_files(file_rows: list[int], world: int) -> bool:
    """Whole files per rank only when they deal out evenly: the file count is a multiple of
    ``world`` and the ranks' row totals (files r, r+W, ...) are within 1% (at least one row)."""
    if len(file_rows) % world:
        return False
    totals = [sum(file_rows[r::world]) for r in range(world)]
    return max(totals) - min(totals) <= max(1, sum(file_rows) // (100 * world))


def shard_plan(
    file_rows: list[int], rank: int, world: int, max_rows: int | None = None
) -> list[tuple[int, int, int]]:
    """The ``(file index, start row, stop row)`` pieces rank ``rank`` of ``world`` trains on.

    Files that deal out evenly (:func:`_whole_files`, e.g. the sample step's ``--shards`` =
    workers): files ``rank, rank + world, ...`` whole. Otherwise the rows of all files in order,
    cut into ``world`` contiguous ranges (sizes differ by at most one). ``max_rows`` caps the
    rows of all ranks together (each rank keeps the head of its share of ``max_rows``)."""
    if _whole_files(file_rows, world):
        pieces = [(i, 0, file_rows[i]) for i in range(rank, len(file_rows), world)]
    else:
        total = sum(file_rows)
        lo, hi = (rank * total) // world, ((rank + 1) * total) // world
        pieces, offset = [], 0
        for i, n in enumerate(file_rows):
            start, stop = max(lo, offset), min(hi, offset + n)
            if start < stop:
                pieces.append((i, start - offset, stop - offset))
            offset += n
    if max_rows is not None:
        budget = ((rank + 1) * max_rows) // world - (rank * max_rows) // world
        capped = []
        for i, start, stop in pieces:
            take = min(stop - start, budget)
            if take > 0:
                capped.append((i, start, start + take))
            budget -= take
        pieces = capped
    return pieces


def shard_sizes(file_rows: list[int], world: int, max_rows: int | None = None) -> list[int]:
    """Rows per rank under :func:`shard_plan`."""
    return [sum(b - a for _, a, b in shard_plan(file_rows, r, world, max_rows)) for r in range(world)]


def check_max_rows(max_rows: int | None, world: int) -> None:
    if max_rows is not None and max_rows < world:
        raise UserError(
            f"--max-rows {max_rows}: fewer than the {world} workers (each needs at least one train row)"
        )


def _no_rows_message(where: str, file_rows: list[int], world: int, max_rows: int | None, rank: int) -> str:
    capped = f" (--max-rows {max_rows})" if max_rows is not None and max_rows < sum(file_rows) else ""
    return (
        f"{where}: {sum(file_rows):,} row(s) in {len(file_rows)} file(s){capped} for {world} workers: "
        f"rank {rank} gets no rows (give fewer workers or more rows)"
    )


def check_shards(file_rows: list[int], world: int, max_rows: int | None, where: str) -> None:
    """``UserError`` when a rank's train shard would be empty (every rank decides the same)."""
    check_max_rows(max_rows, world)
    sizes = shard_sizes(file_rows, world, max_rows)
    if min(sizes) == 0:
        raise UserError(_no_rows_message(where, file_rows, world, max_rows, sizes.index(0)))


def _read_pieces(splits: Splits, split: str, pieces: list[tuple[int, int, int]]) -> pa.Table:
    tables = []
    for index, start, stop in pieces:
        part = splits.files[split][index]
        try:
            table = pq.read_table(part.path, filesystem=splits.fs, columns=list(NEEDED_COLUMNS))
        except (pa.ArrowInvalid, OSError) as err:
            raise UserError(f"{part.uri}: cannot read ({err})") from None
        tables.append(table.slice(start, stop - start))
    if not tables:
        return pa.table({c: pa.array([], pa.float64()) for c in NEEDED_COLUMNS})
    return pa.concat_tables(tables, promote_options="permissive")


@dataclass
class Arrays:
    """Encoded rows of one split (or one rank's shard of it)."""

    columns: dict[str, np.ndarray]
    label: np.ndarray  # float64
    where: str  # for messages

    @property
    def rows(self) -> int:
        return int(self.label.size)


def _arrays(table: pa.Table, where: str) -> Arrays:
    columns = columns_from_table(table)
    label = table.column(contract.LABEL).to_numpy(zero_copy_only=False).astype(np.float64)
    for name, values in {contract.LABEL: label, **columns}.items():
        bad = ~np.isfinite(values)
        if bad.any():
            raise UserError(f"{where}: column {name!r} has {int(bad.sum()):,} missing or non-finite value(s)")
    return Arrays(columns, label, where)


def load_split(splits: Splits, split: str, d: Dist, *, sharded: bool, max_rows: int | None) -> Arrays:
    files = splits.files[split]
    rows = [f.rows for f in files]
    if sharded:
        pieces = shard_plan(rows, d.rank, d.world, max_rows)
        where = (
            f"{splits.uri.rstrip('/')}/{split} (rank {d.rank} of {d.world})"
            if d.distributed
            else f"{splits.uri.rstrip('/')}/{split}"
        )
    else:
        pieces = shard_plan(rows, 0, 1, max_rows)
        where = f"{splits.uri.rstrip('/')}/{split}"
    return _arrays(_read_pieces(splits, split, pieces), where)


# --- statistics over all ranks ---------------------------------------------------------


def fit_spec(train: Arrays, d: Dist) -> tuple[FeatureSpec, float, float]:
    """The train split's ``FeatureSpec`` and the mean and std of its fares, over all ranks' shards."""
    if not d.distributed:
        spec = FeatureSpec.fit(train.columns)
        return spec, float(train.label.mean()), _positive(float(train.label.std()))
    names = [*CONTINUOUS, contract.LABEL]
    data = [*(train.columns[c] for c in CONTINUOUS), train.label]
    first = _all_reduce(d, [train.rows, *(float(v.sum()) for v in data)])
    n = first[0]
    if n == 0:
        raise UserError("cannot fit feature statistics on an empty training split")
    mean = first[1:] / n
    squares = _all_reduce(d, [float(((v - m) ** 2).sum()) for v, m in zip(data, mean, strict=True)])
    std = np.sqrt(squares / n)
    spec_mean = {name: float(mean[i]) for i, name in enumerate(names[:-1])}
    spec_std = {name: _positive(float(std[i])) for i, name in enumerate(names[:-1])}
    return FeatureSpec(mean=spec_mean, std=spec_std), float(mean[-1]), _positive(float(std[-1]))


def training_extent(train: Arrays, d: Dist) -> dict[str, list[float]]:
    """The train split's extent over all ranks' shards, for ``model.json``: the latitudes and
    longitudes of both trip ends and the pick-up years. The model server refuses trips outside
    it (plus a margin) instead of extrapolating a fare. Called on every rank (collectives)."""
    c = train.columns
    low = [min(c["origin_lat"].min(), c["dest_lat"].min()), min(c["origin_lon"].min(), c["dest_lon"].min())]
    high = [max(c["origin_lat"].max(), c["dest_lat"].max()), max(c["origin_lon"].max(), c["dest_lon"].max())]
    low = _all_reduce(d, [*low, c["year"].min()], op="min")
    high = _all_reduce(d, [*high, c["year"].max()], op="max")
    return {
        "lat": [float(low[0]), float(high[0])],
        "lon": [float(low[1]), float(high[1])],
        "year": [int(low[2]), int(high[2])],
    }


def _positive(std: float) -> float:
    """A usable scale: ``std`` if positive and finite, else 1 (the rule of ``FeatureSpec.fit``)."""
    return std if std > 0 and math.isfinite(std) else 1.0


def fold_label_scale(module, mean: float, std: float) -> None:
    """Make a module trained on ``(fare - mean) / std`` output fares: rescale its last layer."""
    import torch

    last = module[-1]
    with torch.no_grad():
        last.weight.mul_(std)
        last.bias.mul_(std).add_(mean)


# --- training ----------------------------------------------------------------------------


@dataclass
class Errors:
    """Squared and absolute error sums over ``rows`` rows."""

    sse: float
    sae: float
    rows: int

    @property
    def rmse(self) -> float:
        return math.sqrt(self.sse / self.rows) if self.rows else float("nan")

    @property
    def mae(self) -> float:
        return self.sae / self.rows if self.rows else float("nan")


def predict(module, x, device: str) -> np.ndarray:
    """Model output for the rows of ``x`` (a float32 array or tensor), in evaluation batches."""
    import torch

    was_training = module.training
    module.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(x), EVAL_BATCH):
            batch = torch.as_tensor(x[start : start + EVAL_BATCH], device=device)
            out.append(module(batch).squeeze(-1).double().cpu().numpy())
    module.train(was_training)
    return np.concatenate(out) if out else np.zeros(0)


def _errors(pred: np.ndarray, label: np.ndarray) -> Errors:
    r = pred - label
    return Errors(float((r * r).sum()), float(np.abs(r).sum()), int(label.size))


def _log(message: str) -> None:
    print(f"train: {message}", file=sys.stderr, flush=True)


@dataclass
class TrainResult:
    """What rank 0 returns: the summary's parts and a sample of test predictions for plots."""

    config: TrainConfig
    metrics: dict[str, float]
    history: list[dict]
    rows: dict[str, int]
    best_epoch: int
    stopped_early: bool
    world_size: int
    device: str
    backend: str | None
    seconds: float
    test_actual: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    test_predicted: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))

    def summary(self) -> dict:
        return {
            "metrics": dict(self.metrics),
            "history": [dict(h) for h in self.history],
            "best_epoch": self.best_epoch,
            "epochs_run": len(self.history),
            "stopped_early": self.stopped_early,
            "rows": dict(self.rows),
            "world_size": self.world_size,
            "device": self.device,
            "backend": self.backend,
            "seconds": round(self.seconds, 3),
            "model": self.config.output_uri,
            "config": self.config.to_dict(),
        }


def read_truth(uri: str) -> float:
    """``best_rmse`` from the generator's ``truth.json`` (a local path or ``s3://`` URI)."""
    fs, path = storage.resolve_filesystem(uri)
    try:
        with fs.open_input_stream(path) as src:
            doc = json.loads(src.read().decode("utf-8"))
    except FileNotFoundError:
        raise UserError(f"{uri}: no such file (expected the generator's truth.json)") from None
    except (OSError, ValueError) as err:
        raise UserError(f"{uri}: not a readable JSON file ({err})") from None
    value = doc.get(TRUTH_KEY) if isinstance(doc, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UserError(
            f"{uri}: expected a number under {TRUTH_KEY!r} (the generator's truth.json), got {value!r}"
        )
    return float(value)


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
    if names and model_dir.META_FILE not in names:
        raise UserError(
            f"{uri}: not empty and not a model directory (no {model_dir.META_FILE}); refusing to replace it -- "
            "give a new or empty location"
        )


def write_model(uri: str, module, spec: FeatureSpec, arch, **extra) -> None:
    """``model.save`` locally; for ``s3://`` save to a temporary directory and upload
    ``model.pt`` then ``model.json`` (last, so a prefix with model.json is complete)."""
    if not storage.is_s3(uri):
        try:
            model_dir.save(uri, module, spec, arch, **extra)
        except OSError as err:
            raise UserError(f"{uri}: cannot write the model there ({err})") from None
        return
    fs, prefix = storage.resolve_filesystem(uri)
    with tempfile.TemporaryDirectory(prefix="fareflow-model-") as tmp:
        local = model_dir.save(os.path.join(tmp, "model"), module, spec, arch, **extra)
        try:
            fs.delete_dir_contents(prefix, missing_dir_ok=True)  # the earlier model (check_output said so)
            for name in (model_dir.WEIGHTS_FILE, model_dir.META_FILE):
                with open(local / name, "rb") as src, fs.open_output_stream(f"{prefix}/{name}") as out:
                    shutil.copyfileobj(src, out)
        except OSError as err:
            raise UserError(f"{uri}: cannot upload the model ({err})") from None


def run(
    config: TrainConfig,
    *,
    log: Callable[[str], None] = _log,
    progress: bool | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> TrainResult | None:
    """Train (joining the process group when launched as a rank); rank 0 returns the result
    and has written the model directory, other ranks return None.

    ``on_epoch(epoch, validation_rmse)``, when given, is called on rank 0 after each epoch's
    validation (epochs count from 1; the RMSE may be non-finite if training diverged); an
    exception it raises stops training and propagates (the tune step's pruning). Under DDP
    every rank must pass a callback or none (its outcome is shared by a collective)."""
    config.validate()
    d = start_process_group(config.device)
    try:
        return _train(config, d, log if d.main else (lambda _m: None), progress, on_epoch)
    except UserError as err:
        if d.distributed:
            # The traceback's frames hold the DDP model, which holds the process group: free them
            # before leaving the group, not at interpreter exit (where gloo may abort the process).
            err.__traceback__ = None
        raise
    finally:
        if d.distributed:
            # DDP's reducer sits in reference cycles: collect it now, while its process group
            # exists. Left to interpreter exit it outlived the group and gloo aborted the process
            # ("terminate called without an active exception", exit -6) after a finished run.
            gc.collect()
        end_process_group(d)


def _train(
    config: TrainConfig,
    d: Dist,
    log: Callable[[str], None],
    progress: bool | None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> TrainResult | None:
    import torch

    from components.common.progress import progress_bar

    started = time.perf_counter()
    # Every rank checks everything up front (footers only), so all ranks fail alike and early.
    # Each phase whose outcome may differ between ranks ends with all_ranks_or_none: if one rank
    # fails, all of them stop with an error instead of waiting for it in the next collective.
    with all_ranks_or_none(d, "checking the inputs"):
        check_output(config.output_uri)
        truth = read_truth(config.truth_uri) if config.truth_uri else None
        splits = discover(config.splits_uri)
        train_files = [f.rows for f in splits.files["train"]]
        where = f"{config.splits_uri.rstrip('/')}/train"
        check_shards(train_files, d.world, config.max_rows, where)

    torch.manual_seed(config.seed)
    np_rng = np.random.default_rng([config.seed, d.rank])
    with all_ranks_or_none(d, "loading its train shard"):
        train = load_split(splits, "train", d, sharded=True, max_rows=config.max_rows)
    # Also if the ranks' views of the files differed: an empty shard would divide by zero below
    # while the others wait in DDP's backward.
    smallest = int(_all_reduce(d, [train.rows], op="min")[0])
    if smallest == 0:
        empty = int(_all_reduce(d, [d.rank if train.rows == 0 else d.world], op="min")[0])
        raise UserError(_no_rows_message(where, train_files, d.world, config.max_rows, empty))
    spec, train_mean, train_std = fit_spec(train, d)
    extent = training_extent(train, d)
    validation = test = None
    with all_ranks_or_none(d, "loading validation/test"):
        if d.main:
            validation = load_split(splits, "validation", d, sharded=False, max_rows=config.max_rows)
            test = load_split(splits, "test", d, sharded=False, max_rows=config.max_rows)
    train_rows_total = int(_all_reduce(d, [train.rows])[0])
    if d.distributed:
        log(
            f"DDP: {d.world} processes ({d.backend} on {d.device.split(':')[0]}), {train_rows_total:,} train rows in all"
        )

    arch = config.architecture()
    module = model_dir.build(arch)
    module.to(d.device)
    net = module
    if d.distributed:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(
            module, device_ids=[torch.device(d.device)] if d.device.startswith("cuda") else None
        )
    torch.manual_seed(config.seed + d.rank)  # dropout masks differ between ranks
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    loss_fn = torch.nn.MSELoss()

    x_train = torch.as_tensor(encode(train.columns, spec), device=d.device)
    y_train = torch.as_tensor(((train.label - train_mean) / train_std).astype(np.float32), device=d.device)
    x_val = encode(validation.columns, spec) if validation is not None else None
    per_rank_batch = max(1, config.batch_size // d.world)
    largest = int(_all_reduce(d, [train.rows], op="max")[0])
    steps = math.ceil(largest / per_rank_batch)

    history: list[dict] = []
    best_rmse, best_epoch, best_state, waited = math.inf, 0, None, 0
    stopped_early = False
    for epoch in range(1, config.epochs + 1):
        net.train()
        # This rank's rows in a fresh random order, going round again up to the largest shard.
        order = np.concatenate(
            [np_rng.permutation(train.rows) for _ in range(math.ceil(largest / train.rows))]
        )[:largest]
        order_t = torch.as_tensor(order, device=d.device)
        sse = torch.zeros((), dtype=torch.float64, device=d.device)
        t0 = time.perf_counter()
        with progress_bar(
            steps, f"epoch {epoch}/{config.epochs}", enabled=progress if d.main else False, unit="batches"
        ) as advance:
            for step in range(steps):
                idx = order_t[step * per_rank_batch : (step + 1) * per_rank_batch]
                xb, yb = x_train[idx], y_train[idx]
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(net(xb).squeeze(-1), yb)
                loss.backward()
                optimizer.step()
                sse += loss.detach().double() * len(idx)
                advance(1)
        totals = _all_reduce(d, [float(sse), float(largest)])  # also waits for every rank
        seconds = time.perf_counter() - t0
        train_rmse = math.sqrt(float(totals[0] / totals[1])) * train_std  # in dollars
        rows_per_s = float(totals[1] / seconds) if seconds > 0 else float("nan")

        if d.main:
            val = _errors(predict(module, x_val, d.device) * train_std + train_mean, validation.label)
            val_rmse, val_mae = val.rmse, val.mae
        else:
            val_rmse = val_mae = 0.0
        val_rmse, val_mae = (float(v) for v in _broadcast(d, [val_rmse, val_mae]))
        history.append(
            {
                "epoch": epoch,
                "train_rmse": train_rmse,
                "validation_rmse": val_rmse,
                "validation_mae": val_mae,
                "rows_per_s": rows_per_s,
                "seconds": seconds,
            }
        )
        improved = val_rmse < best_rmse - config.min_delta
        if improved:
            best_rmse, best_epoch, waited = val_rmse, epoch, 0
            best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        else:
            waited += 1
        log(
            f"epoch {epoch}/{config.epochs}: train RMSE {train_rmse:.4f}, validation RMSE {val_rmse:.4f}"
            f"{' (best)' if improved else ''}, {rows_per_s:,.0f} rows/s"
        )
        if on_epoch is not None:
            with all_ranks_or_none(d, "the epoch callback"):
                if d.main:
                    on_epoch(epoch, val_rmse)
        if not math.isfinite(val_rmse):
            raise UserError(
                f"training diverged at epoch {epoch} (validation RMSE {val_rmse}); try a smaller --lr"
            )
        if config.patience and waited >= config.patience and epoch < config.epochs:
            stopped_early = True
            log(f"early stop: no better validation RMSE for {waited} epoch(s); best was epoch {best_epoch}")
            break

    module.load_state_dict(best_state)
    fold_label_scale(module, train_mean, train_std)  # from here on the module outputs fares
    train_err = _errors(predict(module, x_train, d.device), train.label)
    totals = _all_reduce(d, [train_err.sse, train_err.sae, train_err.rows])
    train_err = Errors(float(totals[0]), float(totals[1]), int(totals[2]))
    result = None
    with all_ranks_or_none(d, "writing the model"):  # the other ranks wait here for rank 0
        if d.main:
            test_pred = predict(module, encode(test.columns, spec), d.device)
            test_err = _errors(test_pred, test.label)
            metrics = {
                "train_rmse": train_err.rmse,
                "train_mae": train_err.mae,
                "validation_rmse": best_rmse,
                "validation_mae": history[best_epoch - 1]["validation_mae"],
                "test_rmse": test_err.rmse,
                "test_mae": test_err.mae,
                "baseline_rmse": math.sqrt(float(np.mean((test.label - train_mean) ** 2))),
                "rows_per_s": sum(h["rows_per_s"] * h["seconds"] for h in history)
                / sum(h["seconds"] for h in history),
            }
            if truth is not None:
                metrics["best_possible_rmse"] = truth
            keep = np.random.default_rng(config.seed).permutation(test.rows)[:SCATTER_POINTS]
            result = TrainResult(
                config=config,
                metrics=metrics,
                history=history,
                rows={"train": train_rows_total, "validation": validation.rows, "test": test.rows},
                best_epoch=best_epoch,
                stopped_early=stopped_early,
                world_size=d.world,
                device=d.device,
                backend=d.backend,
                seconds=time.perf_counter() - started,
                test_actual=test.label[keep],
                test_predicted=test_pred[keep],
            )
            extra = {
                "metrics": metrics,
                "history": history,
                "config": config.to_dict(),
                "extent": extent,
                "training": {
                    "world_size": d.world,
                    "device": d.device,
                    "best_epoch": best_epoch,
                    "rows": result.rows,
                },
            }
            write_model(config.output_uri, module.cpu(), spec, arch, **extra)
            log(
                f"test RMSE {metrics['test_rmse']:.4f} (mean baseline {metrics['baseline_rmse']:.4f}), "
                f"best epoch {best_epoch}; model -> {config.output_uri}"
            )
    return result


# --- launching ---------------------------------------------------------------------------


def cli_args(config: TrainConfig) -> list[str]:
    """The ``python -m components.train`` arguments that reproduce ``config``."""
    args = [
        "--splits", config.splits_uri,
        "--output", config.output_uri,
        "--epochs", str(config.epochs),
        "--batch-size", str(config.batch_size),
        "--lr", repr(config.learning_rate),
        "--weight-decay", repr(config.weight_decay),
        "--hidden", ",".join(str(h) for h in config.hidden),
        "--dropout", repr(config.dropout),
        "--seed", str(config.seed),
        "--patience", str(config.patience),
        "--min-delta", repr(config.min_delta),
        "--device", config.device,
    ]  # fmt: skip
    if config.max_rows is not None:
        args += ["--max-rows", str(config.max_rows)]
    if config.truth_uri:
        args += ["--truth", config.truth_uri]
    return args


def write_outputs(
    result: TrainResult, *, summary_json: str | None = None, report_dir: str | None = None
) -> None:
    """The summary JSON and the report (report.html, summary.md)."""
    if report_dir:
        from components.common.report import write_report_dir

        from .report import render_html, render_markdown

        write_report_dir(report_dir, render_html(result), render_markdown(result))
    if summary_json:
        write_summary(result.summary(), summary_json)


def write_summary(summary: dict, path: str) -> None:
    from pathlib import Path

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


def launch_local(
    config: TrainConfig,
    workers: int = 1,
    *,
    report_dir: str | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] = _log,
) -> dict:
    """Train on this machine and return the summary (``TrainResult.summary()``).

    ``workers == 1``: in this process. ``workers > 1``: ``python -m torch.distributed.run
    --standalone --nproc_per_node=W -m components.train ...`` (CPU: gloo DDP), whose rank 0
    writes the summary JSON read back here; its output is passed through to stderr, and a
    failure raises ``UserError`` with the workers' own error line."""
    if workers < 1:
        raise UserError(f"--workers: expected at least 1, got {workers}")
    config.validate()
    if workers == 1:
        result = run(config, log=log, progress=progress)
        write_outputs(result, report_dir=report_dir)
        return result.summary()
    import subprocess
    from collections import deque

    check_max_rows(config.max_rows, workers)  # fail here, before starting the workers
    check_output(config.output_uri)
    with tempfile.TemporaryDirectory(prefix="fareflow-train-") as tmp:
        summary_path = os.path.join(tmp, "summary.json")
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={workers}",
            "-m", "components.train", *cli_args(config), "--summary-json", summary_path,
        ]  # fmt: skip
        if report_dir:
            cmd += ["--report-dir", str(report_dir)]
        env = dict(os.environ)
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
        for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
            env.pop(name, None)  # the launcher sets its own
        log(f"launching {workers} DDP workers: torchrun --standalone --nproc_per_node={workers}")
        tail: deque[str] = deque(maxlen=200)
        with subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        ) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                sys.stderr.write(line)
                tail.append(line.rstrip("\n"))
            code = proc.wait()
        if code != 0:
            marker = "components.train: error:"
            # ranks failing together may interleave their lines: "...: error: A...: error: B"
            errors = [e.strip() for line in tail for e in line.split(marker)[1:] if e.strip()]
            # the failing rank's own line first, before the others' "rank R of W failed ..."
            own = [e for e in errors if not re.match(PEER_FAILED.format(rank=r"\d+", world=r"\d+"), e)]
            why = (own or errors or [f"exit status {code}"])[0]
            raise UserError(f"distributed training ({workers} workers) failed: {why}")
        try:
            with open(summary_path, encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError) as err:
            raise UserError(f"distributed training finished but wrote no readable summary ({err})") from None
