"""The kfp components through kfp.local (SubprocessRunner, current environment)."""

import json
from pathlib import Path

import pytest
from kfp import dsl, local

from components.common import datasets
from components.quality import core, partitions
from components.quality.component import quality, quality_merge, quality_partition, quality_plan

pytestmark = pytest.mark.slow


@pytest.fixture
def kfp_local(tmp_path):
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path / "root"),
        raise_on_error=True,
    )
    yield tmp_path / "root"


def _artifact_dir(root: Path, task: str, name: str) -> Path:
    (found,) = [p for p in root.rglob(name) if p.parent.name == task or p.parent.name.startswith(task)]
    return found


def test_quality_component_runs_and_gates(raw_dir, kfp_local):
    @dsl.pipeline
    def pipe(raw_uri: str, rules_yaml: str) -> dict:
        raw = dsl.importer(artifact_uri=raw_uri, artifact_class=dsl.Dataset, reimport=False)
        return quality(raw=raw.output, rules_yaml=rules_yaml, workers=1).outputs["Output"]

    loose = "rules:\n  - {name: pickup_outside_file_month, max_reject_pct: 2}\n  - {name: dropoff_before_pickup, max_reject_pct: 2}\n"
    task = pipe(raw_uri=str(raw_dir), rules_yaml=loose)
    summary = task.output
    assert summary["rows_in"] == 1200 and summary["gate_passed"] is True
    assert summary["rows_in"] == summary["rows_clean"] + summary["rows_rejected"]
    clean = _artifact_dir(kfp_local, "quality", "clean")
    assert datasets.read_clean(str(clean)).num_rows == summary["rows_clean"]
    html = _artifact_dir(kfp_local, "quality", "report").read_text()
    assert html.count("data:image/png;base64,") == 4
    (executor_output,) = [
        p for p in kfp_local.rglob("executor_output.json") if p.parent.name.startswith("quality")
    ]
    (metrics,) = json.loads(executor_output.read_text())["artifacts"]["metrics"]["artifacts"]
    assert metrics["metadata"]["rows_in"] == 1200
    assert metrics["metadata"]["reject_pct_missing_fare"] == 1.25

    with pytest.raises(RuntimeError, match="quality"):  # default thresholds: the fixture fails two of them
        pipe(raw_uri=str(raw_dir), rules_yaml="")


def test_fan_out_components_match_the_in_process_component(raw_dir, kfp_local, tmp_path):
    rules_yaml = "gate: {max_total_reject_pct: 50}\nrules:\n  - {name: pickup_outside_file_month, max_reject_pct: 2}\n  - {name: dropoff_before_pickup, max_reject_pct: 2}\n"

    @dsl.pipeline
    def fan_out(raw_uri: str, partitions: list, rules_yaml: str) -> dict:
        raw = dsl.importer(artifact_uri=raw_uri, artifact_class=dsl.Dataset, reimport=False)
        with dsl.ParallelFor(partitions) as key:
            part = quality_partition(raw=raw.output, partition=key, rules_yaml=rules_yaml)
        return quality_merge(parts=dsl.Collected(part.outputs["result"]), rules_yaml=rules_yaml).outputs[
            "Output"
        ]

    @dsl.pipeline
    def plan(raw_uri: str) -> list:
        raw = dsl.importer(artifact_uri=raw_uri, artifact_class=dsl.Dataset, reimport=False)
        return quality_plan(raw=raw.output).output

    keys = plan(raw_uri=str(raw_dir)).output
    assert keys == [p.key for p in partitions.plan_partitions(str(raw_dir))]
    summary = fan_out(raw_uri=str(raw_dir), partitions=keys, rules_yaml=rules_yaml).output

    reference = core.run(
        core.QualityConfig(
            input_uri=str(raw_dir), output_uri=str(tmp_path / "ref"), workers=1,
            ruleset=__import__("components.quality.rules", fromlist=["x"]).load_rules(text=rules_yaml),
        )
    )  # fmt: skip
    assert {k: summary[k] for k in ("rows_in", "rows_clean", "rows_rejected", "rejected_by_rule")} == {
        k: reference.counts[k] for k in ("rows_in", "rows_clean", "rows_rejected", "rejected_by_rule")
    }
    merged_clean = _artifact_dir(kfp_local, "quality-merge", "clean")
    assert datasets.read_clean(str(merged_clean)).equals(datasets.read_clean(str(tmp_path / "ref")))
