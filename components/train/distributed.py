"""The process group of a distributed run -- DDP (torch.distributed, under torchrun or a
PyTorchJob) or Horovod (horovod.torch, under horovodrun or an MPIJob's mpirun): this process's
rank, collectives over small vectors and picklable objects, and ``all_ranks_or_none`` for phases
that may fail on some ranks only (docs/train.md, "Distributed training"). Both backends give the
training loop the same collectives, so sharding, statistics and error handling are written once."""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from components.common.errors import UserError

TIMEOUT_ENV = "FAREFLOW_DDP_TIMEOUT_MINUTES"  # collective timeout of a DDP run, in minutes
DEFAULT_TIMEOUT_MINUTES = 30
BACKENDS = ("ddp", "horovod")  # also TrainConfig's --backend choices
# Where each launcher puts a process's rank and the world size: torchrun/PyTorchJob, horovodrun
# (gloo), mpirun (Open MPI: horovodrun --mpi, an MPIJob's launcher).
_RANK_ENV = {
    "ddp": [("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")],
    "horovod": [
        ("HOROVOD_RANK", "HOROVOD_SIZE", "HOROVOD_LOCAL_RANK", "HOROVOD_LOCAL_SIZE"),
        (
            "OMPI_COMM_WORLD_RANK",
            "OMPI_COMM_WORLD_SIZE",
            "OMPI_COMM_WORLD_LOCAL_RANK",
            "OMPI_COMM_WORLD_LOCAL_SIZE",
        ),
    ],
}


@dataclass(frozen=True)
class Dist:
    """This process's place in the run: rank, world size, device, and whether DDP is on."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: str = "cpu"
    backend: str | None = None  # the transport: gloo, nccl (DDP); horovod-gloo, horovod-mpi
    framework: str = "ddp"  # ddp (torch.distributed) or horovod (horovod.torch)

    @property
    def horovod(self) -> bool:
        return self.framework == "horovod" and self.world > 1

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def launched_as_rank() -> bool:
    """Started as one rank of a run by a launcher: torchrun / a PyTorchJob (WORLD_SIZE and RANK),
    horovodrun (HOROVOD_RANK/SIZE) or mpirun (OMPI_COMM_WORLD_RANK/SIZE)."""
    return any(_launcher_env(backend) is not None for backend in BACKENDS)


def _launcher_env(backend: str) -> tuple[str, str, str, str] | None:
    """The names of the rank/world/local-rank/local-size variables a launcher set for ``backend``."""
    for names in _RANK_ENV[backend]:
        if names[0] in os.environ and names[1] in os.environ:
            return names
    return None


def check_launcher(backend: str) -> None:
    """A rank started for one backend but told to use the other fails at once, with the fix:
    torchrun's ranks cannot form a Horovod group, nor mpirun's a DDP one."""
    if _launcher_env(backend) is not None:
        return
    other = next((b for b in BACKENDS if b != backend and _launcher_env(b) is not None), None)
    if other is not None:
        launcher = {"ddp": "torchrun (a PyTorchJob)", "horovod": "horovodrun/mpirun (an MPIJob)"}[other]
        raise UserError(
            f"--backend {backend}: this process was started by {launcher}, which needs --backend {other}"
        )


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


def _size_cpu_threads(local_world: int) -> None:
    """Unless OMP_NUM_THREADS says otherwise, give each local process its share of the
    container's CPU limit (not the node's cores, which torch would use in a pod)."""
    if os.environ.get("OMP_NUM_THREADS"):
        return
    import torch

    from components.common.cpu import cpu_threads

    torch.set_num_threads(cpu_threads(local_world))


def start_process_group(requested_device: str, backend: str = "ddp") -> Dist:
    """Join the run's process group when a launcher started this process as one of several
    ranks -- torch.distributed for ``ddp``, Horovod for ``horovod`` -- else a one-process Dist."""
    if backend not in BACKENDS:
        raise UserError(f"--backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    if launched_as_rank():
        check_launcher(backend)
    names = _launcher_env(backend)
    defaults = (0, 1, 0, 1)  # rank, world, local rank, local world of a process on its own
    rank, world, local_rank, local_world = (
        (_env_int(n, v) for n, v in zip(names, defaults, strict=True)) if names else defaults
    )
    _size_cpu_threads(local_world)
    device = _pick_device(requested_device, local_rank)
    if world <= 1:
        return Dist(device=device, framework=backend)
    if backend == "horovod":
        return _start_horovod(device)
    import torch
    import torch.distributed as dist

    minutes = _env_int(TIMEOUT_ENV, DEFAULT_TIMEOUT_MINUTES)
    if minutes < 1:
        raise UserError(f"environment variable {TIMEOUT_ENV}: expected at least 1 (minutes), got {minutes}")
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    timeout = datetime.timedelta(minutes=minutes)
    restart = _env_int("TORCHELASTIC_RESTART_COUNT", 0)
    if restart > 0 and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        # A group torchrun restarted (--max-restarts) meets in the same store as the group before
        # it when the agent shares its rendezvous store: under a fresh prefix, or rank 0 may read
        # the dead ranks' gloo addresses (seen: every restart failed in connectFullMesh with
        # "Connection refused"). Without the shared store (TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1,
        # the PyTorchJob's elastic pods) every round has a new store and a pod torchrun started
        # afresh counts its restarts from 0, so a prefix would split the group.
        from torch.distributed.rendezvous import rendezvous

        store, _, _ = next(rendezvous("env://", rank=rank, world_size=world, timeout=timeout))
        store = dist.PrefixStore(f"fareflow/restart-{restart}", store)
        dist.init_process_group(backend=backend, store=store, rank=rank, world_size=world, timeout=timeout)
    else:
        dist.init_process_group(backend=backend, init_method="env://", timeout=timeout)
    return Dist(rank=rank, world=world, local_rank=local_rank, device=device, backend=backend)


# HOROVOD_CYCLE_TIME's default per controller (a user's setting wins); docs/train.md, "Distributed scaling"
HOROVOD_CYCLE_TIME_MS = {"gloo": 1.0, "mpi": 0.2}


def horovod_controller() -> str:
    """The controller ``hvd.init()`` will pick in this process: gloo under horovodrun --gloo (it
    sets HOROVOD_CONTROLLER=gloo and a rendezvous address), else MPI (mpirun, an MPIJob)."""
    gloo = os.environ.get("HOROVOD_CONTROLLER") == "gloo" or "HOROVOD_GLOO_RENDEZVOUS_ADDR" in os.environ
    return "gloo" if gloo else "mpi"


def _start_horovod(device: str) -> Dist:
    """``hvd.init()`` under horovodrun (gloo) or mpirun (the MPI controller): rank and size come
    from Horovod itself, which agrees with the launcher's variables read above."""
    try:
        import horovod.torch as hvd
    except ImportError as err:
        raise UserError(
            f"--backend horovod: Horovod is not installed here ({err}); the trainer image has it, "
            "and `make horovod` builds it into the development venv"
        ) from None
    # Horovod's collectives have no timeout of their own: a rank that never joins one (it died,
    # or ranks disagree on the op) would stall the others forever. Its stall check shuts the job
    # down after the DDP runs' collective timeout instead.
    minutes = _env_int(TIMEOUT_ENV, DEFAULT_TIMEOUT_MINUTES)
    os.environ.setdefault("HOROVOD_STALL_SHUTDOWN_TIME_SECONDS", str(minutes * 60))
    # Its background loop's cycle: a step's gradients wait up to one cycle to be negotiated and
    # reduced, and this MLP's steps take milliseconds. Over gloo 1 ms measured best on the 2-core
    # machine (batch 8192, 2 ranks x 1 thread: ~790k rows/s vs ~660k at Horovod's default, ~620k
    # at 10 ms, ~470-630k at 0.2 ms). Over MPI every cycle's negotiation is an MPI_Allreduce that
    # Open MPI busy-polls until the other rank's loop joins, taking the core from this rank's
    # compute; with mpi_yield_when_idle its poll yields, and then 0.2 ms measured best (batch
    # 8192: 1.77x one process x 1 thread, against 1.27x without the yield, 1.47x at 3 ms):
    # docs/train.md. A user's HOROVOD_CYCLE_TIME / OMPI_MCA_mpi_yield_when_idle wins.
    controller = horovod_controller()
    os.environ.setdefault("HOROVOD_CYCLE_TIME", str(HOROVOD_CYCLE_TIME_MS[controller]))
    if controller == "mpi":
        os.environ.setdefault("OMPI_MCA_mpi_yield_when_idle", "1")  # read by MPI_Init, in hvd.init()
    hvd.init()
    if device.startswith("cuda"):
        import torch

        device = f"cuda:{hvd.local_rank() % torch.cuda.device_count()}"
        torch.cuda.set_device(torch.device(device))
    transport = "horovod-gloo" if hvd.gloo_enabled() else "horovod-mpi"
    return Dist(
        rank=hvd.rank(), world=hvd.size(), local_rank=hvd.local_rank(), device=device,
        backend=transport, framework="horovod",
    )  # fmt: skip


def horovod_optimizer(optimizer, module):
    """``optimizer`` as Horovod's ``DistributedOptimizer`` over ``module``'s parameters, with all
    gradients in one group: one grouped all-reduce per step, submitted by the hook of the last
    gradient that backward computes. Ungrouped, every parameter's hook submits its own tensor as
    backward reaches it; Horovod's background loop negotiates what is ready once per cycle
    (``HOROVOD_CYCLE_TIME``), so a step's eight tensors could go out as several collectives, each
    a gloo round trip (0.5-1 ms on the 2-core machine against a 5-7 ms step). Measured at batch
    8192 on 2 ranks: the wait in ``step()`` fell from 6-9 ms to about 2.5 ms a step (docs/train.md)."""
    import horovod.torch as hvd

    return hvd.DistributedOptimizer(optimizer, named_parameters=module.named_parameters(), groups=1)


def end_process_group(d: Dist) -> None:
    if d.horovod:
        import horovod.torch as hvd

        hvd.shutdown()
    elif d.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def _all_reduce(d: Dist, values, op: str = "sum") -> np.ndarray:
    """Sum (or max, or min) a small float64 vector over the ranks; identity for one process."""
    values = np.asarray(values, dtype=np.float64)
    if not d.distributed:
        return values
    import torch

    t = torch.as_tensor(values, dtype=torch.float64, device=d.device)
    if d.horovod:
        import horovod.torch as hvd

        ops = {"sum": hvd.Sum, "max": hvd.Max, "min": hvd.Min}
        return hvd.allreduce(t, op=ops[op]).cpu().numpy()
    import torch.distributed as dist

    ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
    dist.all_reduce(t, op=ops[op])
    return t.cpu().numpy()


def _broadcast(d: Dist, values) -> np.ndarray:
    """Rank 0's float64 vector on every rank."""
    values = np.asarray(values, dtype=np.float64)
    if not d.distributed:
        return values
    import torch

    t = torch.as_tensor(values, dtype=torch.float64, device=d.device)
    if d.horovod:
        import horovod.torch as hvd

        return hvd.broadcast(t, root_rank=0).cpu().numpy()
    import torch.distributed as dist

    dist.broadcast(t, src=0)
    return t.cpu().numpy()


PEER_FAILED = "rank {rank} of {world} failed"  # how the other ranks report a rank's error


def _one_line(err: BaseException) -> str:
    text = str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}"
    return (text.strip().splitlines() or [type(err).__name__])[0]


def _first_failure(d: Dist, failed: BaseException | None) -> tuple[int, str] | None:
    """Collective: every rank says whether it failed; the lowest failing rank and its one-line
    message on every rank (broadcast from it), or None when no rank failed."""
    first = int(_all_reduce(d, [d.rank if failed is not None else d.world], op="min")[0])
    if first >= d.world:
        return None
    message = _one_line(failed) if d.rank == first and failed is not None else None
    return first, str(_broadcast_object(d, message, src=first))


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


def _broadcast_object(d: Dist, obj, src: int = 0):
    """Rank ``src``'s picklable object on every rank (a checkpoint's state on resume)."""
    if not d.distributed:
        return obj
    if d.horovod:
        import horovod.torch as hvd

        # named: Horovod's default name is the object's type, which differs between the ranks
        # (None on all but src) -- a mismatch that hangs every rank
        return hvd.broadcast_object(obj if d.rank == src else None, root_rank=src, name="fareflow.object")
    import torch.distributed as dist

    box = [obj if d.rank == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def _gather_objects(d: Dist, obj) -> list | None:
    """Every rank's picklable object, in rank order, on rank 0 (None elsewhere)."""
    if not d.distributed:
        return [obj]
    if d.horovod:
        import horovod.torch as hvd

        everyone = hvd.allgather_object(obj, name="fareflow.objects")  # Horovod has no gather to one rank
        return list(everyone) if d.main else None
    import torch.distributed as dist

    out = [None] * d.world if d.main else None
    dist.gather_object(obj, out, dst=0)
    return out
