"""Launching a training run on this machine: in this process, or as ``--workers N`` processes --
torchrun's DDP ranks (``--backend ddp``) or Horovod's ranks (``--backend horovod``: mpirun when
this Horovod has MPI, else horovodrun over gloo; ``horovod_transport``); writing its summary JSON and report directory (docs/train.md)."""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from collections.abc import Callable

from components.common import model_dir
from components.common.configspec import to_argv
from components.common.errors import UserError

from .config import TrainConfig
from .core import log_line, run
from .distributed import PEER_FAILED
from .result import TrainResult
from .splits import check_max_rows

# "TypeError: ..." at the end of a rank's traceback, behind a launcher's "[1]<stderr>:" prefix
_EXCEPTION_LINE = re.compile(r"(?:^|>:)((?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception): .+)$")


def write_outputs(
    result: TrainResult, *, summary_json: str | None = None, report_dir: str | None = None
) -> None:
    """The summary JSON and the report (report.html, summary.md)."""
    from components.common.publish import publish_cli

    from .report import render_html, render_markdown

    publish_cli(result, render_html, render_markdown, summary_json=summary_json, report_dir=report_dir)


def launch_local(
    config: TrainConfig,
    workers: int = 1,
    *,
    report_dir: str | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] = log_line,
    max_restarts: int = 0,
) -> dict:
    """Train on this machine and return the summary (``TrainResult.summary()``).

    ``workers == 1``: in this process. ``workers > 1``: ``python -m torch.distributed.run
    --standalone --nproc_per_node=W -m components.train ...`` (CPU: gloo DDP) or, with
    ``--backend horovod``, ``mpirun -np W python -m components.train ...`` (Horovod with MPI) or
    ``horovodrun -np W -H localhost:W --gloo python -m components.train ...``; rank 0 writes the summary JSON read back here; the ranks' output is passed through to
    stderr, and a failure raises ``UserError`` with the workers' own error line.
    ``max_restarts`` (DDP only): torchrun restarts the group that many times when a worker dies
    (the ranks resume from the newest checkpoint)."""
    if workers < 1:
        raise UserError(f"--workers: expected at least 1, got {workers}")
    if max_restarts < 0:
        raise UserError(f"--max-restarts: expected 0 or more, got {max_restarts}")
    config.validate()
    if max_restarts and config.backend != "ddp":
        raise UserError(
            "--max-restarts: only with --backend ddp (torchrun restarts a failed group; horovodrun does not)"
        )
    if workers == 1:
        result = run(config, log=log, progress=progress)
        write_outputs(result, report_dir=report_dir)
        return result.summary()
    import subprocess
    from collections import deque

    check_max_rows(config.max_rows, workers)  # fail here, before starting the workers
    model_dir.check_output(config.output_uri)
    with tempfile.TemporaryDirectory(prefix="fareflow-train-") as tmp:
        summary_path = os.path.join(tmp, "summary.json")
        launcher = _launcher(config.backend, workers, max_restarts)
        cmd = [*launcher, "components.train", *to_argv(config), "--summary-json", summary_path]
        if report_dir:
            cmd += ["--report-dir", str(report_dir)]
        env = dict(os.environ)
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
        for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
            env.pop(name, None)  # the launcher sets its own
        name = (
            f"Horovod ({'MPI' if 'mpirun' in launcher[0] else 'gloo'})"
            if config.backend == "horovod"
            else "DDP"
        )
        shown = " ".join(os.path.basename(a) for a in launcher if a not in (sys.executable, "-m"))
        log(f"launching {workers} {name} workers: {shown}")
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
            why = worker_error(tail, code)
            raise UserError(f"distributed training ({workers} workers) failed: {why}")
        try:
            with open(summary_path, encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError) as err:
            raise UserError(f"distributed training finished but wrote no readable summary ({err})") from None


def _launcher(backend: str, workers: int, max_restarts: int) -> list[str]:
    """The command, up to its ``-m``, that starts ``workers`` ranks of a module on this machine."""
    if backend == "ddp":
        return [
            sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={workers}",
            f"--max-restarts={max_restarts}", "-m",
        ]  # fmt: skip
    transport = horovod_transport()
    if transport == "mpi":
        import shutil

        mpirun = shutil.which("mpirun")
        assert mpirun is not None  # horovod_transport checked
        # mpirun's own binding (a core per rank for N <= 2); root needs its consent flag
        root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
        return [mpirun, *root, "-np", str(workers), sys.executable, "-m"]
    return [_horovodrun(), "-np", str(workers), "-H", f"localhost:{workers}", "--gloo", sys.executable, "-m"]


TRANSPORT_ENV = "FAREFLOW_HOROVOD_TRANSPORT"  # auto (default), mpi or gloo: how --backend horovod launches


def horovod_transport() -> str:
    """How ``--backend horovod --workers N`` launches here: ``mpi`` (mpirun; Horovod's MPI
    controller and Open MPI's shared memory) when this Horovod was built with MPI and mpirun is
    on PATH, else ``gloo`` (horovodrun --gloo); ``$FAREFLOW_HOROVOD_TRANSPORT`` chooses."""
    import shutil

    wanted = os.environ.get(TRANSPORT_ENV, "") or "auto"
    if wanted not in ("auto", "mpi", "gloo"):
        raise UserError(f"environment variable {TRANSPORT_ENV}: expected auto, mpi or gloo, got {wanted!r}")
    _horovodrun()  # Horovod is here at all
    if wanted == "gloo":
        return "gloo"
    built, mpirun = _horovod_mpi_built(), shutil.which("mpirun")
    if built and mpirun:
        return "mpi"
    if wanted == "mpi":
        why = "this Horovod was built without MPI" if not built else "no mpirun on PATH"
        raise UserError(
            f"{TRANSPORT_ENV}=mpi: {why} (install Open MPI, then `make horovod` builds it with MPI)"
        )
    return "gloo"


def _horovod_mpi_built() -> bool:
    try:
        import horovod.torch as hvd
    except ImportError as err:  # an MPI build without libmpi here, for one
        raise UserError(f"--backend horovod: Horovod does not load here ({err})") from None
    return bool(hvd.mpi_built())


def _horovodrun() -> str:
    import importlib.util
    import shutil

    # horovodrun sits beside this Python in a venv or an image (Horovod's console script)
    here = os.path.join(os.path.dirname(sys.executable), "horovodrun")
    horovodrun = here if os.access(here, os.X_OK) else shutil.which("horovodrun")
    if importlib.util.find_spec("horovod") is None or horovodrun is None:
        raise UserError(
            "--backend horovod: Horovod is not installed here (no horovod module or horovodrun); "
            "the trainer image has it, and `make horovod` builds it into the development venv"
        )
    return horovodrun


def worker_error(lines, code: int) -> str:
    """The one line that says why a launched run failed, from the end of its ranks' output: the
    failing rank's own ``fareflow train: error:`` line before the others' "rank R of W failed
    ...", else (a crash, not a handled error) the first exception line of a rank's traceback,
    else the exit status."""
    marker = "fareflow train: error:"
    # ranks failing together may interleave their lines: "...: error: A...: error: B"
    errors = [e.strip() for line in lines for e in line.split(marker)[1:] if e.strip()]
    own = [e for e in errors if not re.match(PEER_FAILED.format(rank=r"\d+", world=r"\d+"), e)]
    crashed = [m.group(1) for line in lines if (m := _EXCEPTION_LINE.search(line))]
    return (own or errors or crashed or [f"exit status {code}"])[0]
