"""``python -m components.common.k8s KIND ...``: print a PyTorchJob, MPIJob or InferenceService
as YAML (a dry run; nothing is applied); ``to_yaml``.
"""

from __future__ import annotations

import argparse
import sys

from .pods import DEFAULT_NAMESPACE, GpuScheduling
from .serving import DEPLOYMENT_MODES, inference_service
from .training import mpi_job, pytorch_job


def to_yaml(obj: dict | list[dict]) -> str:
    import yaml

    docs = obj if isinstance(obj, list) else [obj]
    return yaml.safe_dump_all(docs, sort_keys=False)


def _parser() -> argparse.ArgumentParser:
    from ..images import SERVER_IMAGE, TRAINER_IMAGE

    p = argparse.ArgumentParser(
        prog="python -m components.common.k8s",
        description="Print a PyTorchJob, MPIJob or InferenceService as YAML (dry run; nothing is applied). "
        "Arguments after -- go to the training module.",
    )
    p.add_argument("kind", choices=["pytorchjob", "mpijob", "inferenceservice"])
    p.add_argument("--name", default="fareflow-train")
    p.add_argument("--namespace", default=DEFAULT_NAMESPACE)
    p.add_argument(
        "--image", default=None, help=f"default: {TRAINER_IMAGE} (jobs), {SERVER_IMAGE} unused by ISVC"
    )
    p.add_argument("--module", default="components.train", help="python module the training pods run")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--gpus", type=int, default=0, help="GPUs per training/serving pod (0: CPU pool)")
    p.add_argument("--storage-uri", default="s3://fareflow/models/latest")
    p.add_argument("--deployment-mode", default="Standard", choices=DEPLOYMENT_MODES)
    p.add_argument("--min-replicas", type=int, default=1)
    p.add_argument("--max-replicas", type=int, default=3)
    p.add_argument("--scale-metric", default=None, help="cpu/memory (Standard), concurrency/rps (Knative)")
    p.add_argument(
        "--scale-target",
        type=int,
        default=None,
        help="the metric's target: cpu/memory a %% of the request (1-100; memory has no default), "
        "concurrency/rps a count per pod (default: cpu 70, concurrency 10, rps 100)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    from ..images import TRAINER_IMAGE

    argv = list(sys.argv[1:] if argv is None else argv)
    own, _, module_args = (
        (argv[: argv.index("--")], True, argv[argv.index("--") + 1 :])
        if "--" in argv
        else (
            argv,
            False,
            [],
        )
    )
    ns = _parser().parse_args(own)
    ns.args = module_args
    gpu = GpuScheduling(gpus_per_pod=ns.gpus) if ns.gpus else None
    image = ns.image or TRAINER_IMAGE
    if ns.kind == "pytorchjob":
        obj = pytorch_job(
            ns.name, image, ns.module, ns.args, namespace=ns.namespace, workers=ns.workers, gpu=gpu
        )
    elif ns.kind == "mpijob":
        obj = mpi_job(ns.name, image, ns.module, ns.args, namespace=ns.namespace, workers=ns.workers, gpu=gpu)
    else:
        obj = inference_service(
            ns.name,
            ns.storage_uri,
            namespace=ns.namespace,
            deployment_mode=ns.deployment_mode,
            min_replicas=ns.min_replicas,
            max_replicas=ns.max_replicas,
            scale_metric=ns.scale_metric,
            scale_target=ns.scale_target,
            gpu=gpu,
        )
    sys.stdout.write(to_yaml(obj))
    return 0
