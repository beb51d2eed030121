"""``fareflow compile``: write the pipeline's IR YAML for Kubeflow Pipelines."""

from __future__ import annotations

import argparse
from pathlib import Path

from components.common.errors import cli_entry


def compile_pipeline(output_path: str) -> str:
    """Compile ``taxi_fare_pipeline`` to ``output_path`` (IR YAML); return the path."""
    from kfp import compiler

    from pipelines.taxi_fare import taxi_fare_pipeline

    Path(output_path).parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline_func=taxi_fare_pipeline, package_path=output_path)
    return output_path


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fareflow compile", description=__doc__)
    parser.add_argument("--output", default="taxi_fare_pipeline.yaml", help="IR YAML path to write")
    args = parser.parse_args(argv)
    from components.common.images import COMPONENT_IMAGE

    path = compile_pipeline(args.output)
    print(f"wrote {path} (component image {COMPONENT_IMAGE})")
    return 0
