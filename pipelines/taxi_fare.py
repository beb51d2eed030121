"""The DC taxi fare pipeline: raw trip files -> ingest -> quality -> sample.

One definition for both execution modes: ``fareflow run`` executes it on this
machine through ``kfp.local``; ``fareflow compile`` / ``fareflow submit`` turn it
into IR YAML for Kubeflow Pipelines. Components only; no logic lives here.
"""


from typing import NamedTuple

from kfp import dsl

from components.ingest.component import ingest

PIPELINE_NAME = "fareflow-taxi-fare"


class PipelineOutputs(NamedTuple):
    ingest: dict


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="DC taxi fare: raw trip files to clean, sampled training data (fareflow).",
)
def taxi_fare_pipeline(source: str) -> PipelineOutputs:
    """``source``: a local directory/glob, ``.zip``, ``s3://bucket/prefix`` or ``https://`` URL
    of taxi_YYYY_MM.txt files (in the cluster it must be reachable from the pods)."""
    ingest_task = ingest(source=source).set_display_name("ingest")
    return PipelineOutputs(ingest=ingest_task.outputs["Output"])
