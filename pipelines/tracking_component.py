"""The cluster pipeline's tracking step: a KFP component (logic in ``pipelines.tracking``).

It runs after training, in the project image, and logs the run to the MLflow tracking server
the platform ConfigMap names (components/mlflow: MLFLOW_TRACKING_HOST/PORT, or an explicit
MLFLOW_TRACKING_URI); with none named it logs nothing, and a tracking failure is a warning in
its log, never a failed pipeline. The MLflow run is named by the KFP run
(``dsl.PIPELINE_JOB_NAME_PLACEHOLDER``) and tagged with its id.
"""

# No "from __future__ import annotations": kfp reads the annotations as objects.

from kfp import dsl
from kfp.dsl import Input, Model

from components.common.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def track(
    ingest: dict,
    quality: dict,
    sample: dict,
    tune: dict,
    train: dict,
    model: Input[Model],
    source: str,
    parameters: dict,
    namespace: str,
    run_name: str,
    run_id: str,
    experiment: str = "fareflow",
) -> str:
    """Log the pipeline run (the steps' summaries, ``parameters``, the model's model.json and
    model.npz) to MLflow; return the MLflow run id ("" when not logged)."""
    from pathlib import Path

    from pipelines import tracking

    outputs = {"ingest": ingest, "quality": quality, "sample": sample, "tune": tune, "train": train}
    return tracking.log_pipeline_run(
        outputs,
        namespace=namespace,
        name=run_name,
        source=source,
        parameters=parameters,
        model_dir=Path(model.path),
        tags={"kfp.run_id": run_id, "kfp.run_name": run_name},
        experiment=experiment,
    )
