"""kfp wrapper of the ingest step: a lightweight component calling ``components.ingest.core``."""

from kfp import dsl
from kfp.dsl import Dataset, Metrics, Output

from components.common.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def ingest(source: str, raw: Output[Dataset], quarantine: Output[Dataset], metrics: Output[Metrics]) -> dict:
    """Raw DC taxi trip files at ``source`` -> typed Parquet (year=/month=) + quarantine."""
    from components.common.publish import publish_component
    from components.ingest import core
    from components.ingest.result import IngestResult

    config = core.IngestConfig(
        source_uri=source, output_uri=raw.path, quarantine_uri=quarantine.path, progress=False
    )
    result = IngestResult(core.ingest(config))
    return publish_component(result, metrics=metrics, artifacts={"raw": raw, "quarantine": quarantine})
