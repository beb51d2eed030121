from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.common import contract, datasets, features
from components.common.errors import UserError
from components.quality import core, layout, merge, partitions, result
from components.quality.rules import load_rules

from .conftest import DEFECTS_PER_MONTH, MONTHS, ROWS_PER_MONTH
from .rawdata import DEFECTS, raw_table, write_raw

INGESTED = '{"step": "ingest"}'  # the _SUCCESS marker of a finished ingest


def test_each_defect_is_rejected_by_its_rule_and_rows_add_up(quality_run):
    result, _ = quality_run
    s = result.counts
    assert s["rows_in"] == len(MONTHS) * ROWS_PER_MONTH
    assert s["rejected_by_rule"] == dict.fromkeys(DEFECTS, len(MONTHS) * DEFECTS_PER_MONTH)
    assert s["rows_clean"] == s["rows_in"] - len(DEFECTS) * len(MONTHS) * DEFECTS_PER_MONTH
    assert s["rows_in"] == s["rows_clean"] + s["rows_rejected"] and s["invariant_ok"]
    # the day-first defect moves rows into the next month's partition, so 4 partitions exist
    assert s["partitions"] == [
        "year=2015/month=1",
        "year=2015/month=2",
        "year=2015/month=3",
        "year=2015/month=4",
    ]
    # 1.25% each: above the 1% allowed for these two rules, within every other threshold
    assert not s["gate_passed"]
    assert [v["rule"] for v in s["gate_violations"]] == ["pickup_outside_file_month", "dropoff_before_pickup"]


def test_clean_rows_have_the_contract_schema_and_correct_features(quality_run):
    result, out = quality_run
    clean = datasets.read_clean(str(out / "clean"))
    assert clean.schema == contract.CLEAN_SCHEMA
    assert clean.num_rows == result.counts["rows_clean"]
    df = clean.to_pandas()
    assert df["fare"].between(*contract.FARE_RANGE).all()
    assert df[["origin_lat", "origin_lon", "dest_lat", "dest_lon", "pickup_datetime"]].notna().all().all()
    ts = df["pickup_datetime"]
    assert (df["weekday"] == ts.dt.day_of_week).all() and (df["hour"] == ts.dt.hour).all()
    assert (df["year"] == ts.dt.year).all() and (df["month"] == ts.dt.month).all()
    expected_km = features.haversine_km(df["origin_lat"], df["origin_lon"], df["dest_lat"], df["dest_lon"])
    np.testing.assert_allclose(df["distance_km"], expected_km, rtol=1e-9)
    # one file per partition, no partition columns inside the files
    files = sorted((out / "clean").rglob("*.parquet"))
    assert [f.relative_to(out / "clean").parent.as_posix() for f in files] == result.counts["partitions"]
    assert "year" not in pq.read_schema(files[0]).names


def test_rejected_rows_keep_raw_columns_lineage_and_first_failed_rule(quality_run, tmp_path):
    result, out = quality_run
    rejected = datasets.read_rejected(str(out / "clean_rejected"))
    assert rejected.num_rows == result.counts["rows_rejected"]
    assert set(contract.RAW_SCHEMA.names) <= set(rejected.column_names)
    counts = rejected.group_by("rule").aggregate([("rule", "count")]).to_pydict()
    assert dict(zip(counts["rule"], counts["rule_count"], strict=True)) == result.counts["rejected_by_rule"]
    # a row failing two rules is attributed to the first one in rule order
    both = raw_table(50, 2016, 5, defects={"missing_fare": 1})
    both = both.set_column(
        25,
        "ORIGINDATETIME_TR",
        pa.array([None] + both["ORIGINDATETIME_TR"].to_pylist()[1:], pa.timestamp("s")),
    )
    write_raw(tmp_path / "raw", [both])
    res = core.run(
        core.QualityConfig(input_uri=str(tmp_path / "raw"), output_uri=str(tmp_path / "c"), workers=1)
    )
    assert res.counts["rejected_by_rule"]["missing_pickup_time"] == 1
    assert res.counts["rejected_by_rule"]["missing_fare"] == 0


def test_duplicates_keep_the_first_occurrence_by_source_line(tmp_path):
    t = raw_table(20, 2015, 6, defects={"duplicate_trip": 3})  # rows 0-2 copy row 19
    write_raw(tmp_path / "raw", [t])
    res = core.run(
        core.QualityConfig(input_uri=str(tmp_path / "raw"), output_uri=str(tmp_path / "c"), workers=1)
    )
    rejected = datasets.read_rejected(str(tmp_path / "c_rejected"))
    assert res.counts["rejected_by_rule"]["duplicate_trip"] == 3
    assert sorted(rejected["source_line"].to_pylist()) == [3, 4, 21]  # lines of rows 1, 2 and 19
    assert 2 not in rejected["source_line"].to_pylist()


def test_population_stats_match_numpy_over_clean_rows(quality_run):
    result, out = quality_run
    stats, reservoir = datasets.load_stats(str(out / "clean_stats"))
    clean = datasets.read_clean(str(out / "clean"))
    assert stats["rows"] == clean.num_rows
    assert set(stats["columns"]) == {contract.LABEL, *contract.FEATURES}
    for col, s in stats["columns"].items():
        values = clean[col].to_numpy().astype("float64")
        assert s["count"] == values.size
        assert s["mean"] == pytest.approx(values.mean(), rel=1e-12)
        assert s["std"] == pytest.approx(values.std(), rel=1e-9, abs=1e-12)
        assert (s["min"], s["max"]) == (pytest.approx(values.min()), pytest.approx(values.max()))
    # fewer clean rows than RESERVOIR_ROWS: the reservoir is all of them, as a set
    assert reservoir.schema == contract.CLEAN_SCHEMA
    assert sorted(reservoir["objectid"].to_pylist()) == sorted(clean["objectid"].to_pylist())


def _run_both_paths(raw_dir, tmp_path, **kw):
    rules = load_rules()
    cfg = core.QualityConfig(
        input_uri=str(raw_dir), output_uri=str(tmp_path / "a" / "clean"), ruleset=rules, workers=2, **kw
    )
    inproc = core.run(cfg)
    parts = []
    for i, key in enumerate(p.key for p in partitions.plan_partitions(str(raw_dir))):
        out = tmp_path / "parts" / str(i)
        core.process_partition_to(
            str(raw_dir), key, rules, str(out), seed=kw.get("seed", 0), reservoir_rows=cfg.reservoir_rows
        )
        parts.append(str(out))
    b = tmp_path / "b"
    fanout = core.merge_partition_outputs(
        parts[::-1], rules, str(b / "clean"), str(b / "rejected"), str(b / "stats")
    )
    return inproc, fanout, tmp_path / "a", b


def test_fan_out_and_in_process_paths_give_identical_results(raw_dir, tmp_path):
    inproc, fanout, a, b = _run_both_paths(raw_dir, tmp_path, reservoir_rows=50, seed=3)
    assert inproc.counts == fanout.counts
    assert datasets.read_clean(str(a / "clean")).equals(datasets.read_clean(str(b / "clean")))
    assert datasets.read_rejected(str(a / "clean_rejected")).equals(
        datasets.read_rejected(str(b / "rejected"))
    )
    sa, ra = datasets.load_stats(str(a / "clean_stats"))
    sb, rb = datasets.load_stats(str(b / "stats"))
    assert sa == sb and ra.equals(rb) and ra.num_rows == 50
    assert inproc.raw_profile == fanout.raw_profile and inproc.histograms == fanout.histograms


def test_reservoir_is_the_global_bottom_k_of_the_seeded_hash(raw_dir, tmp_path):
    """Merged per-partition bottom-k == the k smallest hash keys over all clean rows (seeded)."""
    k = 40

    def run(name, seed, rows):
        cfg = core.QualityConfig(
            input_uri=str(raw_dir), output_uri=str(tmp_path / name), workers=1, reservoir_rows=rows, seed=seed
        )
        return core.run(cfg)

    everything = run("all", 1, 10_000)  # k above the partition sizes: partial samples hold every clean row
    keyed = pa.concat_tables(
        pq.read_table(p) for p in (tmp_path / "all_stats" / "partitions").rglob(layout.PARTIAL_RESERVOIR)
    )
    assert keyed.num_rows == everything.counts["rows_clean"]
    expected = keyed.sort_by([(layout.SAMPLE_KEY, "ascending")]).slice(0, k)["objectid"].to_pylist()
    assert run("k", 1, k).reservoir["objectid"].to_pylist() == expected
    assert set(run("other_seed", 2, k).reservoir["objectid"].to_pylist()) != set(expected)


def _partials(stats_dir):
    return [json.loads(p.read_text()) for p in sorted((stats_dir / "partitions").rglob(layout.PARTIAL_FILE))]


def test_bounded_reservoir_partials_merge_to_the_unbounded_reservoir(raw_dir, tmp_path, monkeypatch):
    """core.run cuts the reservoir partials at a key bound (RESERVOIR_MARGIN x k of the input
    rows): they hold fewer rows, and the merged reservoir is still the bottom-k of every clean
    row; a bound too tight for it is detected and the partitions run again without it."""
    k = 40
    calls = []
    real = core.run_partitions
    monkeypatch.setattr(core, "run_partitions", lambda jobs, *a: calls.append(jobs) or real(jobs, *a))

    def run(name, margin):
        monkeypatch.setattr(core, "RESERVOIR_MARGIN", margin)
        calls.clear()
        cfg = core.QualityConfig(
            input_uri=str(raw_dir), output_uri=str(tmp_path / name), workers=1, reservoir_rows=k, seed=5
        )
        return core.run(cfg), _partials(tmp_path / f"{name}_stats")

    expected, unbounded = run("unbounded", 10**6)  # the bound would pass every key: none is set
    assert expected.reservoir.num_rows == k and len(calls) == 1
    assert all(
        p["reservoir_bound"] is None and p["reservoir_kept"] == min(k, p["rows_clean"]) for p in unbounded
    )

    cut, partials = run("cut", 2)  # ~2/3 k of each partition's ~400 rows under the bound, ~2k in all
    assert len(calls) == 1 and all(p["reservoir_bound"] is not None for p in partials)
    assert sum(p["reservoir_kept"] < min(k, p["rows_clean"]) for p in partials) >= 3
    assert cut.reservoir.equals(expected.reservoir)

    tight, partials = run("tight", 0.2)  # ~k/5 keys under the bound: too few, run again unbounded
    assert len(calls) == 2 and len(calls[0]) == len(partials)
    assert [j.reservoir_bound is None for j in calls[0] + calls[1]] == [False] * len(partials) + [True] * len(
        partials
    )
    assert all(p["reservoir_bound"] is None for p in partials)
    assert tight.reservoir.equals(expected.reservoir) and tight.counts == expected.counts


def test_bounded_profile_sample_partials_merge_to_the_unbounded_sample(raw_dir, tmp_path, monkeypatch):
    """The raw profile sample's partials are cut the same way (PROFILE_MARGIN x its rows of the
    input rows): the raw quantiles are unchanged; a bound too tight reruns without it."""
    real_jobs = core.jobs_for
    monkeypatch.setattr(
        core, "jobs_for", lambda *a: [replace(j, profile_rows=60) for j in real_jobs(*a)]
    )  # 60 of ~1200 rows
    monkeypatch.setattr(core, "PROFILE_EXTRA", 0)

    def run(name, margin):
        monkeypatch.setattr(core, "PROFILE_MARGIN", margin)
        cfg = core.QualityConfig(input_uri=str(raw_dir), output_uri=str(tmp_path / name), workers=1)
        return core.run(cfg), _partials(tmp_path / f"{name}_stats")

    expected, partials = run("unbounded", 10**6)
    assert all(p["profile_bound"] is None and p["profile_kept"] == min(60, p["rows_in"]) for p in partials)
    for name, margin in (("cut", 2), ("tight", 0.2)):
        got, partials = run(name, margin)
        assert got.raw_profile == expected.raw_profile
        cut = sum(
            p["profile_bound"] is not None and p["profile_kept"] < min(60, p["rows_in"]) for p in partials
        )
        assert cut >= 3 if name == "cut" else all(p["profile_bound"] is None for p in partials)


def test_a_bounded_partial_missing_bottom_k_rows_is_refused_by_the_merge(raw_dir, tmp_path):
    from components.quality.clean_partition import key_bound, process_partition

    cfg = core.QualityConfig(
        input_uri=str(raw_dir), output_uri=str(tmp_path / "c"), workers=1, reservoir_rows=40
    ).resolved()
    parts = partitions.plan_partitions(str(raw_dir))
    for job in core.jobs_for(cfg, parts):
        process_partition(replace(job, reservoir_bound=key_bound(10, 1200)))
    with pytest.raises(merge.SampleIncomplete):
        merge.merge([cfg.partials_uri], cfg.ruleset)


def test_the_sample_top_k_reruns_without_its_fast_bound_when_too_few_rows_pass_it(tmp_path):
    """The keys are meant to be a uniform hash; skewed keys (all large) pass the fast bound
    too rarely, and the written rows are still the exact top-k."""
    import duckdb

    from components.quality.clean_partition import KEY_MAX, _write_bottom_k

    con = duckdb.connect()
    con.execute(
        f"CREATE TABLE t AS SELECT CAST({KEY_MAX} - (i * 7919) % 5000 AS UBIGINT) AS k, 'f' AS source_file, "
        "i AS source_line FROM range(5000) r(i)"
    )
    schema = pa.schema([("k", pa.uint64()), ("source_file", pa.string()), ("source_line", pa.int64())])
    out = tmp_path / "s.parquet"
    assert _write_bottom_k(con, "SELECT *", "t", "k", 100, 5000, None, schema, str(out)) == 100
    want = con.sql("SELECT * FROM t ORDER BY k, source_file, source_line LIMIT 100").to_arrow_table()
    assert pq.read_table(out).cast(schema).equals(want.cast(schema))
    bound = KEY_MAX - 4990  # a bound of the caller's: rows above it never appear
    assert _write_bottom_k(con, "SELECT *", "t", "k", 100, 5000, bound, schema, str(out)) == 10


def test_corrupted_data_set_fails_the_gate_listing_each_violation(tmp_path):
    bad = raw_table(
        1000, 2015, 1, defects={"missing_fare": 80, "coordinates_outside_dc": 30, "missing_pickup_time": 100}
    )
    write_raw(tmp_path / "raw", [bad])
    res = core.run(
        core.QualityConfig(input_uri=str(tmp_path / "raw"), output_uri=str(tmp_path / "c"), workers=1)
    )
    assert not res.gate_passed
    assert {v["rule"] for v in res.violations} == {"missing_fare", "coordinates_outside_dc"}
    with pytest.raises(result.GateFailed) as err:
        res.check_gate()
    msg = str(err.value)
    assert "missing_fare rejected 8.00% of rows (allowed 3.00%)" in msg
    assert "coordinates_outside_dc rejected 3.00% of rows (allowed 2.00%)" in msg
    assert "\n" not in msg
    # the outputs were still written, so the failure can be inspected
    assert datasets.read_clean(str(tmp_path / "c")).num_rows == 1000 - 210
    # thresholds are overridable
    loose = load_rules().with_thresholds({"missing_fare": 10, "coordinates_outside_dc": 5, "total": 25})
    res2 = core.run(
        core.QualityConfig(
            input_uri=str(tmp_path / "raw"),
            output_uri=str(tmp_path / "c"),
            ruleset=loose,
            workers=1,
            overwrite=True,
        )
    )
    assert res2.gate_passed
    tight_total = load_rules().with_thresholds({"missing_fare": 10, "coordinates_outside_dc": 5, "total": 20})
    assert [v["rule"] for v in result.evaluate_gate(tight_total, 1000, res2.counts["rejected_by_rule"])] == [
        "total"
    ]


def test_merge_moments_is_exact_and_order_stable():
    rng = np.random.default_rng(0)
    chunks = [rng.normal(2017, 1.3, n) for n in (5, 1000, 1, 333)]
    parts = [
        {
            "count": c.size,
            "sum": math.fsum(c),
            "mean": c.mean(),
            "m2": c.var() * c.size,
            "min": c.min(),
            "max": c.max(),
        }
        for c in chunks
    ]
    merged = merge.merge_moments(parts)
    allv = np.concatenate(chunks)
    assert merged["count"] == allv.size and merged["sum"] == pytest.approx(math.fsum(allv), rel=1e-15)
    assert merged["mean"] == pytest.approx(allv.mean(), rel=1e-14)
    assert merged["std"] == pytest.approx(allv.std(), rel=1e-10)
    assert (
        merge.merge_moments([{"count": 0, "sum": 0.0, "mean": 0.0, "m2": 0.0, "min": None, "max": None}])[
            "mean"
        ]
        is None
    )


def test_unusable_inputs_fail_with_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not a directory"):
        core.run(core.QualityConfig(input_uri=str(tmp_path / "nope"), output_uri=str(tmp_path / "c")))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "_SUCCESS").write_text(INGESTED)  # complete but empty
    with pytest.raises(UserError, match="no Parquet files"):
        partitions.plan_partitions(str(tmp_path / "empty"))
    wrong = tmp_path / "wrong" / "year=2015" / "month=1"
    wrong.mkdir(parents=True)
    pq.write_table(pa.table({"FAREAMOUNT": [1.0]}), wrong / "x.parquet")
    (tmp_path / "wrong" / "_SUCCESS").write_text(INGESTED)
    with pytest.raises(UserError, match=r"missing raw column\(s\)"):
        core.run(
            core.QualityConfig(input_uri=str(tmp_path / "wrong"), output_uri=str(tmp_path / "c"), workers=1)
        )
    stray = tmp_path / "stray"
    stray.mkdir()
    pq.write_table(pa.table({"a": [1]}), stray / "x.parquet")
    (stray / "_SUCCESS").write_text(INGESTED)
    with pytest.raises(UserError, match="outside a year=YYYY/month=M"):
        partitions.plan_partitions(str(stray))


def test_existing_output_is_not_overwritten_without_permission(raw_dir, tmp_path):
    (tmp_path / "clean").mkdir()
    (tmp_path / "clean" / "keep.txt").write_text("x")
    with pytest.raises(UserError, match="--overwrite"):
        core.run(core.QualityConfig(input_uri=str(raw_dir), output_uri=str(tmp_path / "clean"), workers=1))
    assert (tmp_path / "clean" / "keep.txt").exists()


def test_partial_json_is_self_describing(quality_run):
    _, out = quality_run
    partial = json.loads(
        (out / "clean_stats" / "partitions" / "year=2015" / "month=2" / layout.PARTIAL_FILE).read_text()
    )
    assert partial["partition"] == "year=2015/month=2"
    assert partial["rows_in"] == partial["rows_clean"] + sum(partial["rejected_by_rule"].values())


def _tree(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_overwrite_never_deletes_the_input_or_unrelated_files(raw_dir, tmp_path):
    import shutil

    t2 = tmp_path / "t2"
    shutil.copytree(raw_dir, t2 / "raw")
    (t2 / "notes.txt").write_text("mine")
    before = _tree(t2)
    cases = [
        {"output_uri": str(t2)},  # input inside the output
        {"output_uri": str(t2 / "raw")},  # output is the input
        {"output_uri": str(t2 / "raw" / "clean")},  # output inside the input
        {"output_uri": str(tmp_path / "c"), "stats_uri": str(t2)},  # input inside stats
        {"output_uri": str(tmp_path / "c"), "rejected_uri": str(tmp_path / "c" / "rej")},  # outputs nest
        {"output_uri": str(tmp_path / "c"), "stats_uri": str(tmp_path)},  # output inside stats
    ]
    for kw in cases:
        with pytest.raises(UserError, match="inside|overlap"):
            core.run(core.QualityConfig(input_uri=str(t2 / "raw"), workers=1, overwrite=True, **kw))
    assert _tree(t2) == before
    assert not (tmp_path / "c").exists()


def test_overwrite_only_replaces_a_previous_quality_output(raw_dir, tmp_path):
    (tmp_path / "clean").mkdir()
    (tmp_path / "clean" / "keep.txt").write_text("x")
    with pytest.raises(UserError, match="not an earlier output of the quality step"):
        core.run(
            core.QualityConfig(
                input_uri=str(raw_dir), output_uri=str(tmp_path / "clean"), workers=1, overwrite=True
            )
        )
    assert (tmp_path / "clean" / "keep.txt").exists()
    (tmp_path / "clean" / "keep.txt").unlink()
    cfg = core.QualityConfig(
        input_uri=str(raw_dir), output_uri=str(tmp_path / "clean"), workers=1, overwrite=True
    )
    first = core.run(cfg)
    for d, role in (("clean", "output"), ("clean_rejected", "rejected"), ("clean_stats", "stats")):
        marker = json.loads((tmp_path / d / "_SUCCESS").read_text())
        assert marker == {"step": "quality", "role": role}
        assert not list(tmp_path.glob(f".{d}.*"))  # no staging directory left
    (tmp_path / "clean" / "stale.parquet").write_bytes(b"old")
    again = core.run(cfg)  # our own output: replaced
    assert again.counts == first.counts
    assert not (tmp_path / "clean" / "stale.parquet").exists()


def test_a_fan_out_task_lists_only_its_own_partition(raw_dir, tmp_path, monkeypatch):
    import pyarrow.fs as pafs

    listed = []
    real_resolve = core.resolve_filesystem

    class Spy:
        def __init__(self, fs):
            self.fs = fs

        def get_file_info(self, arg):
            if isinstance(arg, pafs.FileSelector):
                listed.append(arg.base_dir)
            return self.fs.get_file_info(arg)

    def resolve(uri):
        fs, path = real_resolve(uri)
        return Spy(fs), path

    monkeypatch.setattr(partitions, "resolve_filesystem", resolve)
    key = partitions.plan_partitions(str(raw_dir))[0].key
    listed.clear()
    part = partitions.find_partition(str(raw_dir), key)
    assert part.key == key
    assert listed and all(d.rstrip("/").endswith(key) for d in listed), listed
    with pytest.raises(UserError, match="no partition year=1999/month=1"):
        partitions.find_partition(str(raw_dir), "year=1999/month=1")


def test_a_kept_database_runs_each_partition_on_a_cursor_with_the_same_outputs(
    raw_dir, tmp_path, monkeypatch
):
    """Pool workers keep one DuckDB database (``keep_database``); each partition's temporary
    tables go with its cursor, and the outputs equal those of a database per partition."""
    from components.quality import clean_partition

    def run(name):
        cfg = core.QualityConfig(input_uri=str(raw_dir), output_uri=str(tmp_path / name), workers=1)
        return core.run(cfg)

    fresh = run("fresh")
    monkeypatch.setattr(clean_partition, "_KEEP_DATABASE", True)
    monkeypatch.setattr(clean_partition, "_DATABASES", {})
    kept = run("kept")
    (db,) = clean_partition._DATABASES.values()
    try:
        # the partitions' tables went with their cursors: the database holds no table memory
        held = "SELECT count(*) FROM duckdb_memory() WHERE tag = 'IN_MEMORY_TABLE' AND memory_usage_bytes > 0"
        assert db.execute(held).fetchone() == (0,)
    finally:
        db.close()
    assert kept.counts == fresh.counts and kept.stats == fresh.stats
    assert kept.reservoir.equals(fresh.reservoir) and kept.raw_profile == fresh.raw_profile
    for sub in ("", "_rejected"):
        a, b = (
            pq.read_table(tmp_path / f"{n}{sub}" / "year=2015" / "month=2" / layout.PART_FILE)
            for n in ("fresh", "kept")
        )
        assert a.equals(b)
