"""Launching a training run on this machine: in this process or as ``--workers N`` torchrun
DDP processes; writing its summary JSON and report directory (docs/train.md)."""

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
    --standalone --nproc_per_node=W -m components.train ...`` (CPU: gloo DDP), whose rank 0
    writes the summary JSON read back here; its output is passed through to stderr, and a
    failure raises ``UserError`` with the workers' own error line. ``max_restarts``: torchrun
    restarts the group that many times when a worker dies (the ranks resume from the newest
    checkpoint)."""
    if workers < 1:
        raise UserError(f"--workers: expected at least 1, got {workers}")
    if max_restarts < 0:
        raise UserError(f"--max-restarts: expected 0 or more, got {max_restarts}")
    config.validate()
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
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={workers}",
            f"--max-restarts={max_restarts}",
            "-m", "components.train", *to_argv(config), "--summary-json", summary_path,
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
            marker = "fareflow train: error:"
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
