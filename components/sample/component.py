"""KFP component over ``components.sample.core`` (logic and tests live there)."""

# No "from __future__ import annotations": kfp reads the annotations as objects.

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Output

from components.common.images import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def sample(
    clean: Input[Dataset],
    population_stats: Input[Artifact],
    rows: int,
    seed: int,
    shards: int,
    fractions: str,
    splits: Output[Dataset],
    report: Output[HTML],
    summary_md: Output[Markdown],
    metrics: Output[Metrics],
) -> dict:
    """Train/validation/test splits of ``clean`` (``rows`` 0 = automatic size), checked
    against ``population_stats``; ``splits.path`` holds train/ validation/ test/ shards."""
    from components.common.cpu import streaming_process

    streaming_process()
    from components.common.publish import publish_component
    from components.sample import core
    from components.sample.report import render_html, render_markdown

    config = core.SampleConfig(
        input_uri=clean.path,
        population_stats_uri=population_stats.path,
        output_uri=splits.path,
        rows=rows,
        fractions=core.parse_fractions(fractions),
        seed=seed,
        shards=shards,
    )
    result = core.run(config)
    summary = publish_component(
        result, render_html, render_markdown, report=report, summary_md=summary_md, metrics=metrics,
        artifacts={"splits": splits},
    )  # fmt: skip
    if not result.passed:  # after the report and metrics, which show why
        raise core.SampleCheckFailed(result.failure_message())
    splits.metadata.update({"rows": summary["rows"], "seed": summary["seed"], "shards": shards})
    return summary
