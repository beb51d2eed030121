"""kfp wrapper of the ingest step: a lightweight component calling ``components.ingest.core``."""

from kfp import dsl
from kfp.dsl import Dataset, Metrics, Output

from components.common.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def ingest(source: str, raw: Output[Dataset], quarantine: Output[Dataset], metrics: Output[Metrics]) -> dict:
    """Raw DC taxi trip files at ``source`` -> typed Parquet (year=/month=) + quarantine."""
    from components.common.artifacts import save_metrics
    from components.ingest.core import IngestConfig, ingest_for_component

    summary = ingest_for_component(
        IngestConfig(source=source, output=raw.path, quarantine=quarantine.path), metrics
    )
    save_metrics(metrics)
    summary["artifacts"] = {"raw": raw.uri, "quarantine": quarantine.uri}
    return summary
