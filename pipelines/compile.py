"""fareflow compile: write the pipeline's IR YAML for Kubeflow Pipelines."""

from __future__ import annotations

import argparse
from pathlib import Path

from components.common.errors import cli_entry


def compile_pipeline(
    output_path: str, quality_fan_out: bool = True, cluster: bool = True, ingest_fan_out: bool | None = None
) -> str:
    """Compile the pipeline to ``output_path`` (IR YAML); return the path.

    ``quality_fan_out`` (default on for the cluster): one quality task per month partition.
    ``ingest_fan_out`` (default: as ``cluster``): ``ingest_tasks`` ingest tasks over groups of
    source files, merged into one data set.
    ``cluster`` (default on): train as a PyTorchJob and deploy to KServe; off = train in the task.
    """
    from kfp import compiler

    from pipelines.taxi_fare import build_pipeline

    Path(output_path).parent.mkdir(parents=True, exist_ok=True)
    pipeline = build_pipeline(quality_fan_out=quality_fan_out, cluster=cluster, ingest_fan_out=ingest_fan_out)
    compiler.Compiler().compile(pipeline_func=pipeline, package_path=output_path)
    return output_path


@cli_entry(prog="fareflow compile")
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fareflow compile", description=__doc__)
    parser.add_argument("--output", default="taxi_fare_pipeline.yaml", help="IR YAML path to write")
    parser.add_argument(
        "--quality-fan-out",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="one quality task per month partition (default: on; off = one task with a process pool)",
    )
    parser.add_argument(
        "--ingest-fan-out",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="ingest_tasks tasks over groups of source files, merged (default: as --cluster; off = one ingest task)",
    )
    parser.add_argument(
        "--cluster",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="train as a PyTorchJob and deploy to KServe (default: on; off = train inside the pipeline task)",
    )
    args = parser.parse_args(argv)
    from components.common import cli
    from components.common.images import COMPONENT_IMAGE

    cli.output_file("--output", args.output)  # before kfp is imported and the pipeline built

    path = compile_pipeline(
        args.output,
        quality_fan_out=args.quality_fan_out,
        cluster=args.cluster,
        ingest_fan_out=args.ingest_fan_out,
    )
    print(f"wrote {path} (component image {COMPONENT_IMAGE})")
    return 0
