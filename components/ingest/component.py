"""kfp wrappers of the ingest step: lightweight components calling ``components.ingest``.

Two ways to run the step in a pipeline; both give the same rows per partition, the same
quarantine and the same summary totals (``components.ingest.fanout``):

- ``ingest``: one task reads every file (kfp.local, small data).
- fan-out (cluster, large data):
      plan = ingest_plan(source=source, tasks=ingest_tasks)         -> List[dict] file groups
      with dsl.ParallelFor(plan.output) as group:
          part = ingest_part(source=source, group=group)
      ingest_merge(parts=dsl.Collected(part.outputs["part"]))       -> raw, quarantine, summary
"""

from typing import List  # noqa: UP035 (kfp reads these annotations)

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Output

from components.common.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def ingest(source: str, raw: Output[Dataset], quarantine: Output[Dataset], metrics: Output[Metrics]) -> dict:
    """Raw DC taxi trip files at ``source`` -> typed Parquet (year=/month=) + quarantine."""
    from components.common.cpu import streaming_process

    streaming_process()
    from components.common.publish import publish_component
    from components.ingest import core
    from components.ingest.result import IngestResult

    config = core.IngestConfig(
        source_uri=source, output_uri=raw.path, quarantine_uri=quarantine.path, progress=False
    )
    result = IngestResult(core.run(config))
    return publish_component(result, metrics=metrics, artifacts={"raw": raw, "quarantine": quarantine})


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def ingest_plan(source: str, tasks: int) -> list:
    """The source's month files in at most ``tasks`` groups balanced by size, for dsl.ParallelFor:
    ``[{"task": 0, "files": ["taxi_2015_01.txt", ...], "bytes": N}, ...]``."""
    from components.ingest.fanout import plan

    return plan(source, tasks)


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def ingest_part(source: str, group: dict, part: Output[Artifact]) -> dict:
    """One fan-out task: ingest one planned group of files into ``part`` (its summary returned)."""
    from components.common.cpu import streaming_process

    streaming_process()
    from components.ingest.fanout import ingest_group

    summary = ingest_group(source, group, part.path)
    part.metadata.update(
        {"task": summary["task"], "files": summary["files"], "rows_read": summary["rows_read"]}
    )
    return summary


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def ingest_merge(
    parts: Input[List[Artifact]],  # noqa: UP006
    raw: Output[Dataset],
    quarantine: Output[Dataset],
    metrics: Output[Metrics],
) -> dict:
    """Gather the fan-out's parts into one ingest output (what ``ingest`` writes): raw, quarantine."""
    from components.common.publish import publish_component
    from components.ingest.fanout import merge_parts
    from components.ingest.result import IngestResult

    result = IngestResult(merge_parts([p.path for p in parts], raw.path, quarantine.path))
    return publish_component(result, metrics=metrics, artifacts={"raw": raw, "quarantine": quarantine})
