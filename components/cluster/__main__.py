"""``fareflow deploy`` (``python -m components.cluster``): serve a model directory in object storage
as the KServe InferenceService NAME, directly or as a canary of the model serving now.

With ``--canary-percent P`` the new model first serves P % of the traffic beside the current one,
is checked against it (error rate; fares for fixed reference trips within tolerance) and is then
promoted or rolled back; the last line says which, and why, naming both models' versions
("promoted model version NEW over OLD", "rolled back model version NEW, serving OLD"). Needs a
kubeconfig (or an in-cluster ServiceAccount) allowed to patch InferenceServices in NAMESPACE, and
network access to the predictors (in the cluster by default; ``--predictor-url`` for a port-forward). docs/cluster.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from components.common.errors import cli_entry


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fareflow deploy",
        description="Serve a model directory in object storage as the KServe InferenceService NAME, "
        "directly or as a canary of the model serving now: with --canary-percent the new model "
        "first serves that share of the traffic, is checked against the current one, then is "
        "promoted or rolled back (exit status 3).",
    )
    p.add_argument(
        "--name", default="taxi-fare", help="InferenceService name = the URL's model name (default taxi-fare)"
    )
    p.add_argument("--namespace", default="fareflow", help="project namespace (default fareflow)")
    p.add_argument(
        "--model-uri",
        required=True,
        help="the model directory: s3://BUCKET/PREFIX/ holding model.json, model.npz and model.pt",
    )
    p.add_argument("--canary-percent", type=int, default=0, help="serve the new model to this share of traffic first, check, then promote or roll back (0: replace at once)")  # fmt: skip
    p.add_argument(
        "--canary-requests",
        type=int,
        default=50,
        help="calls to the candidate for its error rate (default 50)",
    )
    p.add_argument(
        "--max-error-rate",
        type=float,
        default=0.0,
        help="share of failing calls the candidate may have (default 0)",
    )
    p.add_argument(
        "--abs-tolerance", type=float, default=2.0, help="dollars a reference fare may move (default 2.0) ..."
    )
    p.add_argument(
        "--rel-tolerance",
        type=float,
        default=0.25,
        help="... or this share of it, whichever is larger (default 0.25)",
    )
    p.add_argument(
        "--ready-timeout",
        type=float,
        default=600.0,
        help="seconds the candidate has to get ready (default 600)",
    )
    p.add_argument(
        "--timeout", type=float, default=900.0, help="seconds a deploy or promotion may take (default 900)"
    )
    p.add_argument("--predictor-url", help="URL template of a predictor, {service} and {namespace} filled in (default: the in-cluster Service)")  # fmt: skip
    p.add_argument("--summary-json", help="also write the summary here")
    return p


@cli_entry(prog="fareflow deploy")
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.summary_json:
        from pathlib import Path

        from components.common.errors import UserError

        parent = Path(args.summary_json).resolve().parent
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            raise UserError(f"--summary-json {args.summary_json}: {parent} is not a writable directory")
    from components.cluster import canary, core, models, serving
    from components.common import k8s

    settings = core.load_settings(args.namespace)
    model = core.s3_uri(args.model_uri)
    if args.canary_percent:
        check = canary.CanaryCheck(
            traffic_percent=args.canary_percent, requests=args.canary_requests, max_error_rate=args.max_error_rate,
            abs_tolerance=args.abs_tolerance, rel_tolerance=args.rel_tolerance, ready_timeout_s=args.ready_timeout,
        )  # fmt: skip
        url = None
        if args.predictor_url:

            def url(pname: str | None) -> str:
                service = k8s.predictor_service(args.name, pname)
                return args.predictor_url.format(service=service, namespace=settings.namespace)

        summary = serving.deploy_canary(settings, args.name, model, check, args.timeout, predictor_url=url)
        line = (
            f"InferenceService {settings.namespace}/{args.name}: {summary['decision']}: {summary['reason']}"
        )
    else:
        version = models.read_model_version(model)
        isvc = serving.inference_service_object(settings, args.name, model, model_version=version)
        summary = serving.deploy(isvc, args.timeout)
        summary["action"] = "deployed"
        line = (
            f"InferenceService {settings.namespace}/{args.name}: deployed {summary['storage_uri']} "
            f"(model version {version or 'unversioned'})"
        )
    if args.summary_json:
        with open(args.summary_json, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2, default=str)
    print(line)
    return 0 if summary["action"] != "rolled back" else 3


if __name__ == "__main__":
    sys.exit(main())
