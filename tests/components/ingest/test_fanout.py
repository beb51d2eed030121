"""Ingest fanned out across tasks (plan, one task per file group, merge) equals one task."""

from __future__ import annotations

import itertools
import json
import random
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from components.common.errors import UserError
from components.common.staged import require_complete
from components.ingest import fanout
from components.ingest.core import STEP

from .conftest import quarantine_of, read_quarantine, read_raw, run

# --- the plan: consecutive runs balanced by size -----------------------------------------------


def _best_cap(sizes: list[int], n: int) -> int:
    """The smallest possible largest run over every cut into at most n consecutive runs."""
    best = sum(sizes)
    for k in range(min(n, len(sizes))):
        for cuts in itertools.combinations(range(1, len(sizes)), k):
            bounds = [0, *cuts, len(sizes)]
            best = min(best, max(sum(sizes[a:b]) for a, b in itertools.pairwise(bounds)))
    return best


@pytest.mark.parametrize("seed", range(40))
def test_groups_are_consecutive_runs_with_the_smallest_largest_run(seed) -> None:
    rng = random.Random(seed)
    sizes = [rng.choice([1, 5, 10, 100, 1000]) * rng.randint(1, 9) for _ in range(rng.randint(1, 9))]
    n = rng.randint(1, 6)
    groups = fanout.group_sizes(sizes, n)
    assert [i for g in groups for i in g] == list(range(len(sizes)))  # every file once, in order
    assert len(groups) == min(n, len(sizes)) and all(groups)
    assert max(sum(sizes[i] for i in g) for g in groups) == _best_cap(sizes, n)


def test_groups_of_equal_files_and_unknown_sizes() -> None:
    assert fanout.group_sizes([10] * 5, 4) == [[0, 1], [2], [3], [4]]
    assert fanout.group_sizes([10] * 8, 4) == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert fanout.group_sizes([10, 10], 8) == [[0], [1]]
    assert fanout.group_sizes([100, 1, 1, 1], 2) == [[0], [1, 2, 3]]
    assert fanout.group_sizes([None, None, None, None], 2) == [[0, 1], [2, 3]]  # by count
    assert fanout.group_sizes([90, None, 10, None], 2) == [[0], [1, 2, 3]]  # None: the mean, 50
    assert fanout.group_sizes([], 3) == []
    with pytest.raises(UserError, match="at least 1"):
        fanout.group_sizes([1], 0)


def test_plan_lists_directory_zip_members_and_s3(generated, generated_zip, s3) -> None:
    names = ["taxi_2015_01.txt", "taxi_2015_02.txt"]
    sizes = [(generated / n).stat().st_size for n in names]
    assert fanout.plan(str(generated), 4) == [
        {"task": 0, "files": [names[0]], "bytes": sizes[0]},
        {"task": 1, "files": [names[1]], "bytes": sizes[1]},
    ]
    assert fanout.plan(str(generated), 1) == [{"task": 0, "files": names, "bytes": sum(sizes)}]
    zipped = fanout.plan(str(generated_zip / "taxi_2015.zip"), 2)
    assert [g["files"] for g in zipped] == [[f"taxi_2015.zip!{n}"] for n in names]
    assert [g["bytes"] for g in zipped] == sizes  # members' uncompressed sizes
    s3.bucket("raw")
    for n in names:
        s3.put("raw", f"dc/{n}", generated / n)
    s3.put("raw", "dc/notes.txt", b"not a month file")
    assert fanout.plan("s3://raw/dc", 2) == fanout.plan(str(generated), 2)
    with pytest.raises(UserError, match="no taxi_YYYY_MM.txt"):
        fanout.plan("s3://raw/dc/notes.txt*", 2)


# --- a multi-month set where two tasks write the same partition --------------------------------


def _fan_out(source: str, tasks: int, where: Path, output: str | None = None) -> tuple[list[dict], dict]:
    groups = fanout.plan(source, tasks)
    parts = [str(where / f"part{g['task']}") for g in groups]
    for g, part in zip(groups, parts, strict=True):
        fanout.ingest_group(source, json.loads(json.dumps(g, default=float)), part, block_size=1 << 16)
    return groups, fanout.merge_parts(parts, output or str(where / "merged"))


def _by_partition(table: pa.Table) -> dict[tuple[int, int], pa.Table]:
    keys = sorted(set(zip(table["year"].to_pylist(), table["month"].to_pylist(), strict=True)))
    return {
        k: table.filter(pc.and_(pc.equal(table["year"], k[0]), pc.equal(table["month"], k[1]))) for k in keys
    }


_RUN_KEYS = {"output", "quarantine", "parquet_files", "seconds", "rows_per_s", "mb_per_s", "tasks"}


def test_fan_out_equals_one_task(months, tmp_path) -> None:
    one = run(months, tmp_path / "one", block_size=1 << 16)
    groups, merged = _fan_out(str(months), 4, tmp_path)
    assert len(groups) == 4  # one task per month file
    # a row of the April file's task is in March, a partition the March file's task writes too
    april = read_raw(tmp_path / "part3")
    assert (2015, 3) in set(zip(april["year"].to_pylist(), april["month"].to_pylist(), strict=True))
    march_files = sorted(p.name for p in (tmp_path / "merged" / "year=2015" / "month=3").iterdir())
    assert march_files == ["part-00002-00000.parquet", "part-00003-00000.parquet"]

    # the same rows per partition, in the same order (files read in name order)
    a, b = read_raw(tmp_path / "one"), read_raw(tmp_path / "merged")
    assert a.num_rows == b.num_rows == one["rows_written"]
    pa_, pb = _by_partition(a), _by_partition(b)
    assert pa_.keys() == pb.keys() and len(pa_) >= 4
    for key in pa_:
        assert pa_[key].equals(pb[key]), key
    # the same quarantine lines, same order
    q1, q2 = quarantine_of(tmp_path / "one"), quarantine_of(tmp_path / "merged")
    assert q1.num_rows == one["rows_quarantined"] > 0 and q1.equals(q2)
    assert "taxi_2015_04.txt" in q1["source_file"].to_pylist()
    # the same summary (and _SUCCESS) but for where it was written and the part files' names
    assert {k: v for k, v in merged.items() if k not in _RUN_KEYS} == {
        k: v for k, v in one.items() if k not in _RUN_KEYS
    }
    doc = require_complete(str(tmp_path / "merged"), STEP)
    assert doc == {k: v for k, v in merged.items() if k != "seconds"} | {"step": STEP}
    assert [t["task"] for t in merged["tasks"]] == [0, 1, 2, 3]
    assert sum(t["rows_read"] for t in merged["tasks"]) == one["rows_read"]


def test_quality_accepts_the_merged_output_and_gives_the_one_task_result(months, tmp_path) -> None:
    from components.common import datasets
    from components.quality import core as quality_core
    from components.quality.rules import load_rules

    run(months, tmp_path / "one")
    _fan_out(str(months), 3, tmp_path)
    rules = load_rules(text="gate: {max_total_reject_pct: 100}\n")
    results = {
        name: quality_core.run(
            quality_core.QualityConfig(
                input_uri=str(tmp_path / name),
                output_uri=str(tmp_path / f"clean-{name}"),
                ruleset=rules,
                workers=1,
            )
        )
        for name in ("one", "merged")
    }
    keys = ("rows_in", "rows_clean", "rows_rejected", "rejected_by_rule")
    assert {k: results["merged"].counts[k] for k in keys} == {k: results["one"].counts[k] for k in keys}
    assert results["one"].counts["rows_in"] > 8_000
    assert datasets.read_clean(str(tmp_path / "clean-merged")).equals(
        datasets.read_clean(str(tmp_path / "clean-one"))
    )


def test_a_part_is_not_an_ingest_output(months, tmp_path) -> None:
    (group, *_) = fanout.plan(str(months), 2)
    fanout.ingest_group(str(months), group, str(tmp_path / "part"))
    assert require_complete(str(tmp_path / "part"), fanout.PART_STEP)["task"] == 0
    with pytest.raises(UserError, match="expected the output of the ingest step"):
        require_complete(str(tmp_path / "part"), STEP)


def test_merge_refuses_overlapping_or_mixed_parts(months, tmp_path) -> None:
    groups = fanout.plan(str(months), 2)
    fanout.ingest_group(str(months), groups[0], str(tmp_path / "a"))
    fanout.ingest_group(str(months), groups[0], str(tmp_path / "b"))  # the same task again
    with pytest.raises(UserError, match="task 0 appears in more than one part"):
        fanout.merge_parts([str(tmp_path / "a"), str(tmp_path / "b")], str(tmp_path / "m"))
    fanout.ingest_group(str(months), {**groups[0], "task": 1}, str(tmp_path / "c"))
    with pytest.raises(UserError, match="taxi_2015_01.txt was ingested twice"):
        fanout.merge_parts([str(tmp_path / "a"), str(tmp_path / "c")], str(tmp_path / "m"))
    with pytest.raises(UserError, match="ingest-part"):
        fanout.merge_parts([str(months)], str(tmp_path / "m"))  # not a part
    assert not (tmp_path / "m").exists()


def test_a_group_whose_file_is_gone_fails_in_one_line(months, tmp_path) -> None:
    source = tmp_path / "src"
    shutil.copytree(months, source)
    groups = fanout.plan(str(source), 4)
    (source / "taxi_2015_04.txt").unlink()
    with pytest.raises(UserError, match=r"no longer holds taxi_2015_04.txt .*plan the run again"):
        fanout.ingest_group(str(source), groups[3], str(tmp_path / "p"))
    with pytest.raises(UserError, match="task must be a whole number"):
        fanout.ingest_group(str(source), {"task": 0.5, "files": groups[0]["files"]}, str(tmp_path / "p"))


def test_fan_out_on_s3_equals_one_task(months, s3, tmp_path) -> None:
    """Zip members on S3 read in place, the parts and the merged set on S3."""
    import zipfile

    archive = tmp_path / "taxi_2015.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(months.glob("taxi_*.txt")):
            z.write(path, path.name)
    s3.bucket("raw")
    s3.bucket("lake")
    source = s3.put("raw", "dc/taxi_2015.zip", archive)
    one = run(source, tmp_path / "one")  # one task on the same source
    groups = fanout.plan(source, 3)
    parts = [f"s3://lake/parts/{g['task']}" for g in groups]
    for g, part in zip(groups, parts, strict=True):
        fanout.ingest_group(source, g, part)
    merged = fanout.merge_parts(parts, "s3://lake/raw", "s3://lake/quarantine")
    assert len(groups) == 3
    assert {k: v for k, v in merged.items() if k not in _RUN_KEYS} == {
        k: v for k, v in one.items() if k not in _RUN_KEYS
    }
    keys = s3.keys("lake", "raw/")
    assert "raw/_SUCCESS" in keys and "raw/_INCOMPLETE" not in keys
    assert sorted(k[4:] for k in keys if k.endswith(".parquet")) == merged["parquet_files"]
    assert require_complete("s3://lake/raw", STEP)["rows_read"] == one["rows_read"]
    local = tmp_path / "copy"
    for key in s3.keys("lake"):
        if not key.startswith("parts/"):
            (local / key).parent.mkdir(parents=True, exist_ok=True)
            (local / key).write_bytes(s3.get("lake", key))
    a, b = _by_partition(read_raw(tmp_path / "one")), _by_partition(read_raw(local / "raw"))
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].equals(b[key]), key
    q = read_quarantine(local / "quarantine" / "part-00000.parquet")
    assert q.equals(quarantine_of(tmp_path / "one")) and q.num_rows == one["rows_quarantined"]
