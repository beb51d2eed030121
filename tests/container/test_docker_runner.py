"""Pipelines run end to end through kfp.local.DockerRunner on podman's Docker-compatible
socket, inside the built component image (``make container-test``).

DockerRunner can report success for a failed container (kfp issue 13332), so these
tests check what the tasks wrote, not only that the run returned, and check that a
failing task fails the run.
"""

# No `from __future__ import annotations` here: kfp reads component annotations as types.

import json
from pathlib import Path

import pytest
from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from components.common.images import COMPONENT_IMAGE

from .conftest import IMAGE_UID, run_container_without_auto_remove

pytestmark = pytest.mark.container


# --- a tiny two-step pipeline: the harness works whatever the real pipeline holds -----------


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def write_squares(n: int, rows: Output[Dataset]) -> str:
    """Write i and i*i for i < n as Parquet; return who wrote it (uid, project version)."""
    import os

    import pyarrow as pa
    import pyarrow.parquet as pq

    from components.common.images import VERSION  # the project is installed in the image

    pq.write_table(pa.table({"i": list(range(n)), "sq": [i * i for i in range(n)]}), rows.path)
    return f"uid={os.getuid()} fareflow={VERSION}"


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def sum_squares(rows: Input[Dataset], metrics: Output[Metrics]) -> float:
    import pyarrow.parquet as pq

    table = pq.read_table(rows.path)
    total = float(sum(table.column("sq").to_pylist()))
    metrics.log_metric("rows", table.num_rows)
    metrics.log_metric("sum_sq", total)
    return total


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def fail_with(message: str) -> str:
    raise RuntimeError(message)


@dsl.pipeline(name="container-tier-two-step")
def two_step(n: int = 5) -> float:
    written = write_squares(n=n)
    return sum_squares(rows=written.outputs["rows"]).outputs["Output"]


@dsl.pipeline(name="container-tier-failing")
def fails_after_first_step(n: int = 3) -> str:
    written = write_squares(n=n)
    return fail_with(message="intended failure").after(written).output


def _files(root: Path, name: str) -> list[Path]:
    return sorted(p for p in root.rglob(name) if p.is_file())


def test_single_task_output_comes_from_inside_the_image(docker_runner, pipeline_root: Path) -> None:
    from importlib.metadata import version

    task = write_squares(n=4)
    assert task.outputs["Output"] == f"uid={IMAGE_UID} fareflow={version('fareflow')}"
    import pyarrow.parquet as pq

    table = pq.read_table(task.outputs["rows"].path)
    assert table.column("sq").to_pylist() == [0, 1, 4, 9]
    assert Path(task.outputs["rows"].path).is_relative_to(pipeline_root)


def test_two_step_pipeline_passes_artifacts_between_containers(
    docker_runner, pipeline_root: Path, leftover_containers
) -> None:
    import pyarrow.parquet as pq

    result = two_step(n=5)
    assert result.output == 0 + 1 + 4 + 9 + 16
    # Each task's outputs landed on the host through DockerRunner's pipeline_root bind
    # mount, written by the image's user.
    (run_dir,) = [p for p in pipeline_root.iterdir() if p.name.startswith("container-tier-two-step-")]
    rows = run_dir / "write-squares" / "rows"
    assert pq.read_table(rows).column("i").to_pylist() == [0, 1, 2, 3, 4]
    assert rows.stat().st_uid == IMAGE_UID
    executor_output = json.loads((run_dir / "sum-squares" / "executor_output.json").read_text())
    (metrics,) = executor_output["artifacts"]["metrics"]["artifacts"]
    assert metrics["metadata"] == {"rows": 5, "sum_sq": 30.0}
    assert leftover_containers() == [], "the harness must remove every container it starts"


def test_failing_task_fails_the_run(docker_runner, leftover_containers) -> None:
    with pytest.raises(RuntimeError, match="fail-with"):
        fails_after_first_step(n=3)
    assert leftover_containers() == []


def test_failing_single_task_raises(docker_runner) -> None:
    with pytest.raises(RuntimeError, match="FAILURE"):
        fail_with(message="boom")


def test_replacement_reports_the_real_exit_code(podman_socket: str, image_refs, leftover_containers) -> None:
    """The replaced run_docker_container returns the container's exit code (not 0 after removal)."""
    import docker

    client = docker.DockerClient(base_url=podman_socket)
    try:
        code = run_container_without_auto_remove(
            client, image_refs["component"], ["sh", "-c", "echo to-stdout; exit 3"], volumes={}
        )
    finally:
        client.close()
    assert code == 3
    assert leftover_containers() == []


# --- the real pipeline ----------------------------------------------------------------------


def test_taxi_fare_pipeline_end_to_end(docker_runner, pipeline_root: Path) -> None:
    """pipelines/taxi_fare.py through DockerRunner: source data generated on the host under
    the pipeline_root (the only host path DockerRunner mounts), every step in the image."""
    import pyarrow.parquet as pq

    from components.generate import core
    from pipelines.taxi_fare import taxi_fare_pipeline

    source = pipeline_root / "source"
    generated = core.run(
        core.GenerateConfig(output_uri=str(source), rows=20_000, months="2015-01:2015-02", seed=11)
    )
    task = taxi_fare_pipeline(source=str(source))
    outputs = dict(task.outputs)

    ingest = outputs["ingest"]
    assert ingest["rows_read"] == generated.rows
    assert ingest["rows_written"] + ingest["rows_quarantined"] == ingest["rows_read"]
    assert ingest["rows_written"] > 0.9 * generated.rows  # a few defective rows are quarantined
    # The Parquet the ingest container wrote is on the host and holds exactly rows_written rows.
    (ingest_dir,) = [p for p in pipeline_root.glob("*/ingest") if p.is_dir()]
    parquet = [p for p in ingest_dir.rglob("*.parquet") if not any("quarantine" in part for part in p.parts)]
    assert parquet, f"no Parquet under {ingest_dir}"
    assert sum(pq.ParquetFile(p).metadata.num_rows for p in parquet) == ingest["rows_written"]
    # Steps added later (quality, sample, ...) must return a non-empty summary too.
    for step, summary in outputs.items():
        assert summary, f"step {step!r} returned an empty summary"
