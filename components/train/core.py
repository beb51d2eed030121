"""Train step: the fare MLP on the sample step's splits, one process or one DDP rank.

``run(TrainConfig)`` -> ``TrainResult`` on rank 0 (None elsewhere), after writing the model
directory (``components.common.model_dir``). AdamW + MSE on the standardised fare, the scale
folded into the last layer; one process on CPU is deterministic for a seed. The DDP contract
(sharding, all-reduced statistics, errors on one rank) is in docs/train.md.
"""

from __future__ import annotations

import gc
import math
import sys
import time
from collections.abc import Callable

import numpy as np

from components.common import model_dir
from components.common.errors import UserError
from components.common.features import encode

from . import checkpoint
from .config import TrainConfig
from .distributed import (
    Dist,
    _all_reduce,
    _broadcast,
    _broadcast_object,
    _gather_objects,
    all_ranks_or_none,
    end_process_group,
    horovod_optimizer,
    start_process_group,
)
from .evaluate import SCATTER_POINTS, Errors, error_sums, predict, read_truth
from .result import TrainResult
from .resume import checkpoint_uri_of, fingerprint, provenance, resume_state, rng_state
from .splits import _no_rows_message, check_shards, discover, load_split
from .stats import fit_spec, fold_label_scale, training_extent
from .stop import STOP_CHECK_STEPS, Interrupted, NoStop, StopFlag


def log_line(message: str) -> None:
    print(f"train: {message}", file=sys.stderr, flush=True)


def run(
    config: TrainConfig,
    *,
    log: Callable[[str], None] = log_line,
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
    d = start_process_group(config.device, config.backend)
    try:
        with StopFlag() if config.keep_checkpoints else NoStop() as stop:
            return _train(config, d, log if d.main else (lambda _m: None), progress, on_epoch, stop)
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
    stop: StopFlag | None = None,
) -> TrainResult | None:
    import torch

    from components.common.progress import progress_bar

    started = time.perf_counter()
    # Every rank checks everything up front (footers only), so all ranks fail alike and early.
    # Each phase whose outcome may differ between ranks ends with all_ranks_or_none: if one rank
    # fails, all of them stop with an error instead of waiting for it in the next collective.
    with all_ranks_or_none(d, "checking the inputs"):
        model_dir.check_output(config.output_uri)
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
        name = "Horovod" if d.horovod else "DDP"
        log(
            f"{name}: {d.world} processes ({d.backend} on {d.device.split(':')[0]}), {train_rows_total:,} train rows in all"
        )

    current = fingerprint(config, splits, d)
    state = None
    with all_ranks_or_none(d, "reading the checkpoint"):
        if d.main:
            state = resume_state(config, current, log)
    state = _broadcast_object(d, state)  # every rank resumes from rank 0's checkpoint

    arch = config.architecture()
    module = model_dir.build(arch)
    if state is not None:
        module.load_state_dict(state["model"])
    module.to(d.device)
    net = module
    if d.distributed and not d.horovod:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(
            module, device_ids=[torch.device(d.device)] if d.device.startswith("cuda") else None
        )
    torch.manual_seed(config.seed + d.rank)  # dropout masks differ between ranks
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    if d.horovod:
        # Horovod's counterpart of DDP: gradients averaged over the ranks in step() (as DDP
        # averages them in backward), rank 0's weights and optimizer state on every rank. The
        # wrapper is a new optimizer over the same parameters, so the checkpoint's state is
        # loaded into it, not into the AdamW it was made from.
        import horovod.torch as hvd

        optimizer = horovod_optimizer(optimizer, module)
        hvd.broadcast_parameters(module.state_dict(), root_rank=0)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
    if d.horovod:
        hvd.broadcast_optimizer_state(optimizer, root_rank=0)
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
    start_epoch, start_step, resumed_rank = 0, 0, None
    if state is not None:
        history = [dict(h) for h in state["history"]]
        best_rmse, best_epoch, waited = (
            float(state["best_rmse"]),
            int(state["best_epoch"]),
            int(state["waited"]),
        )
        best_state = (
            {k: v.to(d.device) for k, v in state["best_state"].items()} if state["best_state"] else None
        )
        stopped_early = bool(state["stopped_early"])
        start_epoch, start_step = int(state["epoch"]), int(state["step"])
        resumed_rank = state["ranks"][d.rank]
        np_rng.bit_generator.state = resumed_rank["numpy"]
        torch.set_rng_state(resumed_rank["torch"])
        if "cuda" in resumed_rank and d.device.startswith("cuda"):
            torch.cuda.set_rng_state(resumed_rank["cuda"], torch.device(d.device))
        where_in = f", step {start_step} of epoch {start_epoch + 1}" if start_step else ""
        log(f"resumed from epoch {start_epoch}{where_in} ({state['uri']})")
        if stopped_early or (state["finished"] and start_epoch >= config.epochs):
            log(f"training had finished at epoch {start_epoch}; not retraining (model from the checkpoint)")
        del state

    def save_checkpoint(epoch_done: int, step: int, np_state: dict, sse: float, seconds: float) -> str | None:
        """Every rank's RNG state to rank 0, which writes the checkpoint (collectives: call on all)."""
        ranks = _gather_objects(d, rng_state(np_state, d.device, sse, seconds))
        uri = None
        with all_ranks_or_none(d, "writing a checkpoint"):
            if d.main:
                finished = step == 0 and (stopped_early or epoch_done >= config.epochs)
                uri = checkpoint.write(
                    config.checkpoint_dir(),
                    {
                        "epoch": epoch_done,
                        "step": step,
                        "finished": finished,
                        "fingerprint": current,
                        "model": {k: v.detach().cpu() for k, v in module.state_dict().items()},
                        "optimizer": optimizer.state_dict(),
                        "history": history,
                        "best_rmse": best_rmse,
                        "best_epoch": best_epoch,
                        "best_state": {k: v.cpu() for k, v in best_state.items()} if best_state else None,
                        "waited": waited,
                        "stopped_early": stopped_early,
                        "ranks": ranks,
                    },
                    config.keep_checkpoints,
                )
        return uri

    def interrupted(epoch_done: int, step: int, uri: str | None) -> Interrupted:
        where_in = f", step {step} of epoch {epoch_done + 1}" if step else ""
        saved = f"checkpoint {uri}" if uri else "no checkpoint"
        return Interrupted(
            f"stopped by SIGTERM after epoch {epoch_done}{where_in}; {saved}; run the same command to resume"
        )

    checking = stop is not None and config.keep_checkpoints > 0
    done = stopped_early or start_epoch >= config.epochs
    for epoch in range(start_epoch + 1, config.epochs + 1) if not done else ():
        net.train()
        epoch_rng = np_rng.bit_generator.state  # the checkpoint's: redraws this epoch's order
        # This rank's rows in a fresh random order, going round again up to the largest shard.
        order = np.concatenate(
            [np_rng.permutation(train.rows) for _ in range(math.ceil(largest / train.rows))]
        )[:largest]
        order_t = torch.as_tensor(order, device=d.device)
        sse = torch.zeros((), dtype=torch.float64, device=d.device)
        first, t0 = 0, time.perf_counter()
        if resumed_rank is not None and epoch == start_epoch + 1 and start_step:
            first = start_step
            sse += float(resumed_rank["sse"])
            t0 -= float(resumed_rank["seconds"])
            torch.set_rng_state(resumed_rank["torch"])  # as it was at that step
        with progress_bar(
            steps, f"epoch {epoch}/{config.epochs}", enabled=progress if d.main else False, unit="batches"
        ) as advance:
            advance(first)
            for step in range(first, steps):
                due = checking and step > first and (not d.distributed or step % STOP_CHECK_STEPS == 0)
                if due and stop.agreed(d):
                    uri = save_checkpoint(epoch - 1, step, epoch_rng, float(sse), time.perf_counter() - t0)
                    raise interrupted(epoch - 1, step, uri)
                idx = order_t[step * per_rank_batch : (step + 1) * per_rank_batch]
                xb, yb = x_train[idx], y_train[idx]
                optimizer.zero_grad()  # grads set to None (torch's default; Horovod's takes no argument)
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
            val = error_sums(predict(module, x_val, d.device) * train_std + train_mean, validation.label)
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
        if config.keep_checkpoints:
            save_checkpoint(epoch, 0, np_rng.bit_generator.state, 0.0, 0.0)
        if stopped_early:
            log(f"early stop: no better validation RMSE for {waited} epoch(s); best was epoch {best_epoch}")
            break
        if checking and epoch < config.epochs and stop.agreed(d):
            raise interrupted(epoch, 0, checkpoint_uri_of(config, epoch))

    module.load_state_dict(best_state)
    fold_label_scale(module, train_mean, train_std)  # from here on the module outputs fares
    train_err = error_sums(predict(module, x_train, d.device), train.label)
    totals = _all_reduce(d, [train_err.sse, train_err.sae, train_err.rows])
    train_err = Errors(float(totals[0]), float(totals[1]), int(totals[2]))
    result = None
    with all_ranks_or_none(d, "writing the model"):  # the other ranks wait here for rank 0
        if d.main:
            test_pred = predict(module, encode(test.columns, spec), d.device)
            test_err = error_sums(test_pred, test.label)
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
                "provenance": provenance(config, current),
                "extent": extent,
                "training": {
                    "world_size": d.world,
                    "backend": d.backend,
                    "framework": d.framework,
                    "device": d.device,
                    "best_epoch": best_epoch,
                    "rows": result.rows,
                },
            }
            model_dir.write_model(config.output_uri, module.cpu(), spec, arch, **extra)
            log(
                f"test RMSE {metrics['test_rmse']:.4f} (mean baseline {metrics['baseline_rmse']:.4f}), "
                f"best epoch {best_epoch}; model -> {config.output_uri}"
            )
    return result
