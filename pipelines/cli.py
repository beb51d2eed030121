"""The ``fareflow`` console script: one entry point over every step and pipeline action.

Sub-commands are resolved lazily so ``fareflow --help`` starts fast: each maps to a
module exposing ``main(argv) -> int`` (the same one ``python -m MODULE`` runs).
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("components.generate.__main__", "write synthetic trip files in the DC taxi format"),
    "ingest": ("components.ingest.__main__", "raw trip files -> typed, partitioned Parquet + quarantine"),
    "quality": ("components.quality.__main__", "data-quality rules, clean Parquet, report and gate"),
    "sample": ("components.sample.__main__", "train/validation/test splits with a statistical check"),
    "tune": ("components.tune.__main__", "Optuna study (TPE, median pruning) -> best hyper-parameters"),
    "train": (
        "components.train.__main__",
        "train the fare MLP on the splits (torchrun DDP with --workers N)",
    ),
    "serve": ("components.serve.__main__", "serve a model directory over HTTP (KServe v1 + v2 protocols)"),
    "deploy": (
        "components.cluster.__main__",
        "serve a model in the cluster (KServe), directly or as a checked canary",
    ),
    "run": ("pipelines.local", "run the whole pipeline on this machine through kfp.local"),
    "compile": ("pipelines.compile", "write the pipeline IR YAML for Kubeflow Pipelines"),
    "submit": ("pipelines.submit", "compile and submit the pipeline to a Kubeflow Pipelines host"),
    "runs": ("pipelines.runs", "list the runs 'fareflow run' kept, or compare two side by side"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: fareflow COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run 'fareflow COMMAND --help' for the options of one command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(usage())
        return 0
    if argv[0] in {"-V", "--version"}:
        from components.common.images import VERSION

        print(f"fareflow {VERSION}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"fareflow: error: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
