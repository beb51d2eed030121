"""KFP components of the quality step (thin wrappers over ``core``).

Two ways to run the step in a pipeline; both produce identical clean rows, rejected rows,
counts and population statistics:

- ``quality``: one task, partitions processed in a local process pool (kfp.local, small data).
- fan-out (cluster, large data):
      plan  = quality_plan(raw=raw)                                 -> List[str] partition keys
      with dsl.ParallelFor(plan.output) as key:
          part = quality_partition(raw=raw, partition=key, rules_yaml=rules_yaml)
      quality_merge(parts=dsl.Collected(part.outputs["result"]), rules_yaml=rules_yaml)

``rules_yaml`` is the text of a rules file (same format as ``--rules``), merged over the
shipped default rules; "" means the defaults. Thresholds live in it (``gate:`` and each
rule's ``max_reject_pct``). A failed gate raises after every output is written, so the
pipeline stops before anything trains on bad data and the report shows why.
"""

from typing import List, NamedTuple  # noqa: UP035 (kfp reads these annotations)

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Output

from components.common.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def quality(
    raw: Input[Dataset],
    rules_yaml: str,
    clean: Output[Dataset],
    rejected: Output[Dataset],
    population_stats: Output[Artifact],
    report: Output[HTML],
    summary_md: Output[Markdown],
    metrics: Output[Metrics],
    seed: int = 0,
    workers: int = 0,
) -> dict:
    """Apply the data-quality rules to the ingest output (all partitions, in-process pool)."""
    from components.common.cpu import streaming_process

    streaming_process()
    from components.quality import core
    from components.quality.publish import publish_quality
    from components.quality.rules import load_rules

    result = core.run(
        core.QualityConfig(
            input_uri=raw.path,
            output_uri=clean.path,
            rejected_uri=rejected.path,
            stats_uri=population_stats.path,
            ruleset=load_rules(text=rules_yaml),
            workers=workers,
            seed=seed,
            progress=False,  # a task's log is no terminal
        )
    )
    return publish_quality(
        result, report=report, summary_md=summary_md, metrics=metrics,
        clean=clean, rejected=rejected, population_stats=population_stats,
    )  # fmt: skip


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def quality_plan(raw: Input[Dataset]) -> list:
    """The partition keys (``year=2015/month=1``) of the ingest output, for dsl.ParallelFor."""
    from components.quality.partitions import plan_partitions

    return [p.key for p in plan_partitions(raw.path)]


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def quality_partition(
    raw: Input[Dataset], partition: str, rules_yaml: str, result: Output[Artifact], seed: int = 0
) -> NamedTuple("PartitionCounts", rows_in=int, rows_clean=int):
    """One fan-out task: the rules over one partition -> result/{clean,rejected,partials}/."""
    from collections import namedtuple

    from components.common.cpu import streaming_process

    streaming_process()
    from components.quality.core import process_partition_to
    from components.quality.rules import load_rules

    partial = process_partition_to(raw.path, partition, load_rules(text=rules_yaml), result.path, seed=seed)
    result.metadata.update({"partition": partial["partition"], "rows_in": partial["rows_in"]})
    return namedtuple("PartitionCounts", ["rows_in", "rows_clean"])(partial["rows_in"], partial["rows_clean"])


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def quality_merge(
    parts: Input[List[Artifact]],  # noqa: UP006
    rules_yaml: str,
    clean: Output[Dataset],
    rejected: Output[Dataset],
    population_stats: Output[Artifact],
    report: Output[HTML],
    summary_md: Output[Markdown],
    metrics: Output[Metrics],
) -> dict:
    """Gather the fan-out results: clean/rejected data sets, population statistics, report, gate."""
    from components.common.cpu import streaming_process

    streaming_process()
    from components.quality.core import merge_partition_outputs
    from components.quality.publish import publish_quality
    from components.quality.rules import load_rules

    result = merge_partition_outputs(
        [p.path for p in parts], load_rules(text=rules_yaml), clean.path, rejected.path, population_stats.path
    )
    return publish_quality(
        result, report=report, summary_md=summary_md, metrics=metrics,
        clean=clean, rejected=rejected, population_stats=population_stats,
    )  # fmt: skip
