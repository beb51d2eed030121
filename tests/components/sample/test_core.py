from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from components.common import contract, datasets
from components.common.errors import UserError
from components.sample import core, hashing

from .conftest import synthetic_trips, write_clean, write_population_stats


def keys(table: pa.Table) -> set[int]:
    """objectid is unique in the fixtures, so it stands for the trip."""
    return set(table.column("objectid").to_pylist())


def read_split(root, name) -> pa.Table:
    return ds.dataset(root / name, format="parquet").to_table()


def test_draw_is_the_bottom_k_of_the_sample_hash_whatever_the_batch_size(inputs, monkeypatch):
    clean, _, table = inputs
    expected_h = np.sort(hashing.trip_hash(table, 5, hashing.SAMPLE_SALT))[:1000]
    sample, h = core.draw(datasets.open_clean(str(clean)), 1000, seed=5)
    np.testing.assert_array_equal(h, expected_h)
    np.testing.assert_array_equal(hashing.trip_hash(sample, 5, hashing.SAMPLE_SALT), h)
    assert sample.schema == contract.CLEAN_SCHEMA
    monkeypatch.setattr(core, "BATCH_ROWS", 97)  # many batches: running threshold and compaction
    small, h_small = core.draw(datasets.open_clean(str(clean)), 1000, seed=5)
    np.testing.assert_array_equal(h_small, h)
    assert small.equals(sample)


def test_same_input_and_seed_give_the_same_rows_per_split(inputs, tmp_path):
    clean, stats, _ = inputs
    outs = []
    for name in ("a", "b"):
        result = core.run(core.SampleConfig(str(clean), str(stats), str(tmp_path / name), rows=3000, seed=11))
        assert result.passed
        outs.append(tmp_path / name)
    for split in core.SPLITS:
        assert read_split(outs[0], split).equals(read_split(outs[1], split))
    other = core.run(core.SampleConfig(str(clean), str(stats), str(tmp_path / "c"), rows=3000, seed=12))
    assert keys(read_split(tmp_path / "c", "train")) != keys(read_split(outs[0], "train"))
    assert other.passed


def test_splits_are_disjoint_cover_the_sample_and_follow_the_fractions(inputs):
    clean, _, _ = inputs
    sample, _ = core.draw(datasets.open_clean(str(clean)), 5000, seed=0)
    splits = core.split_table(sample, 0, (0.6, 0.3, 0.1))
    parts = [keys(splits[s]) for s in core.SPLITS]
    assert sum(map(len, parts)) == sample.num_rows == len(set().union(*parts))
    for i, frac in enumerate((0.6, 0.3, 0.1)):
        n = len(parts[i])
        # binomial: within 4 standard deviations
        assert abs(n - frac * 5000) < 4 * np.sqrt(5000 * frac * (1 - frac)), (i, n)


def test_a_trips_split_does_not_depend_on_the_attempt_seed(inputs):
    clean, _, table = inputs
    dataset = datasets.open_clean(str(clean))
    a, _ = core.draw(dataset, 4000, seed=0)
    b, _ = core.draw(dataset, 4000, seed=1)  # a retry samples other rows...
    assert keys(a) != keys(b)
    split_a = dict(
        zip(a.column("objectid").to_pylist(), core.split_codes(a, 0, core.DEFAULT_FRACTIONS), strict=True)
    )
    split_b = dict(
        zip(b.column("objectid").to_pylist(), core.split_codes(b, 0, core.DEFAULT_FRACTIONS), strict=True)
    )
    common = split_a.keys() & split_b.keys()
    assert len(common) > 2000
    assert all(split_a[k] == split_b[k] for k in common)  # ...but never moves a trip between splits


def test_adding_a_month_keeps_every_old_trip_in_its_split(tmp_path):
    old = synthetic_trips(6000, [(2015, 1), (2015, 2)], seed=1)
    new_month = synthetic_trips(3000, [(2015, 3)], seed=2, first_objectid=10_000_001)
    clean = write_clean(old, tmp_path / "clean")
    stats_old = write_population_stats(old, tmp_path / "stats_old")
    before = core.run(
        core.SampleConfig(str(clean), str(stats_old), str(tmp_path / "before"), rows=4000, seed=3)
    )
    write_clean(
        new_month, tmp_path / "clean", basename="new-{i}.parquet"
    )  # a new year=2015/month=3 partition
    stats_new = write_population_stats(pa.concat_tables([old, new_month]), tmp_path / "stats_new")
    after = core.run(
        core.SampleConfig(str(clean), str(stats_new), str(tmp_path / "after"), rows=4000, seed=3)
    )
    assert before.passed and after.passed
    assert after.size.population_rows == 9000
    split_of = {}
    for split in core.SPLITS:
        for k in keys(read_split(tmp_path / "before", split)):
            split_of[k] = split
    moved, old_in_after, new_in_after = 0, 0, 0
    for split in core.SPLITS:
        for k in keys(read_split(tmp_path / "after", split)):
            if k >= 10_000_001:
                new_in_after += 1
                continue
            old_in_after += 1
            # bottom-k: the threshold only falls as rows are added, so an old trip in the new
            # sample was in the old sample, and in the same split.
            assert k in split_of
            moved += split_of[k] != split
    assert moved == 0
    assert new_in_after > 0 and old_in_after > 2000


def test_shards_split_rows_evenly_and_reassemble_the_split(inputs, tmp_path):
    clean, stats, _ = inputs
    result = core.run(core.SampleConfig(str(clean), str(stats), str(tmp_path / "out"), rows=3001, shards=4))
    for split in core.SPLITS:
        files = sorted((tmp_path / "out" / split).iterdir())
        assert [f.name for f in files] == [f"part-{i:05d}.parquet" for i in range(4)]
        sizes = [pq.read_metadata(f).num_rows for f in files]
        assert max(sizes) - min(sizes) <= 1
        assert sizes == result.shard_rows[split]
        whole = pa.concat_tables([pq.read_table(f) for f in files])
        assert whole.schema.names == contract.CLEAN_SCHEMA.names
        # Parquet has no second unit: timestamps come back as ms; readers cast to CLEAN_SCHEMA.
        assert whole.cast(contract.CLEAN_SCHEMA).equals(result.splits[split])
    assert sum(sum(v) for v in result.shard_rows.values()) == 3001


def test_rewriting_with_fewer_shards_leaves_no_stale_files(inputs, tmp_path):
    clean, stats, _ = inputs
    core.run(core.SampleConfig(str(clean), str(stats), str(tmp_path / "out"), rows=2000, shards=5))
    core.run(core.SampleConfig(str(clean), str(stats), str(tmp_path / "out"), rows=2000, shards=2))
    assert len(list((tmp_path / "out" / "train").iterdir())) == 2


def test_shard_bounds_even():
    assert core.shard_bounds(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert core.shard_bounds(2, 4) == [(0, 0), (0, 1), (1, 1), (1, 2)]


def test_sampled_rows_keep_their_values(inputs, tmp_path):
    clean, stats, table = inputs
    result = core.run(core.SampleConfig(str(clean), str(stats), str(tmp_path / "o"), rows=500))
    train = result.splits["train"]
    idx = pc.index_in(train.column("objectid"), value_set=table.column("objectid"))
    original = table.take(idx)
    for name in contract.CLEAN_SCHEMA.names:
        assert train.column(name).equals(original.column(name)), name


@pytest.mark.parametrize(
    "text", ["0.8,0.1", "0.8,0.1,0.2", "a,b,c", "1,0,0", "0.9,0.2,-0.1", "nan,0.5,0.5", ""]
)
def test_bad_fractions_are_user_errors(text):
    with pytest.raises(UserError, match="--fractions"):
        core.parse_fractions(text)
    assert core.parse_fractions(" 0.7, 0.2 ,0.1") == (0.7, 0.2, 0.1)


def test_bad_inputs_are_user_errors(inputs, tmp_path):
    clean, stats, _ = inputs
    with pytest.raises(UserError, match="clean data set not found"):
        core.run(core.SampleConfig(str(tmp_path / "nope"), str(stats), str(tmp_path / "o")))
    with pytest.raises(UserError, match=f"^{tmp_path}: no _SUCCESS marker"):  # not a quality output
        core.run(core.SampleConfig(str(clean), str(tmp_path), str(tmp_path / "o")))
    with pytest.raises(UserError, match="only 6,000 rows"):
        core.run(core.SampleConfig(str(clean), str(stats), str(tmp_path / "o"), rows=6001))
    with pytest.raises(UserError, match="--shards"):
        core.run(core.SampleConfig(str(clean), str(stats), str(tmp_path / "o"), shards=0))
    (stats / contract.POPULATION_STATS_FILE).unlink()
    with pytest.raises(UserError, match="no stats.json"):  # a quality output without its stats
        core.run(core.SampleConfig(str(clean), str(stats), str(tmp_path / "o")))


def test_failed_check_writes_no_splits_and_retries_with_next_seeds(make_inputs, tmp_path):
    clean, stats, table = make_inputs()
    median = float(np.median(table.column("distance_km").to_numpy()))
    short = table.filter(
        pc.less(table.column("distance_km"), median)
    )  # deliberately biased: only short trips
    biased = write_clean(short, tmp_path / "biased")
    result = core.run(
        core.SampleConfig(str(biased), str(stats), str(tmp_path / "o"), rows=1000, max_attempts=3, seed=4)
    )
    assert not result.passed
    assert [a.seed for a in result.attempts] == [4, 5, 6]
    assert not (tmp_path / "o").exists()
    # The last attempt (seed 6) sampled other rows, but split them with the base seed 4.
    for i, name in enumerate(core.SPLITS):
        assert (core.split_codes(result.splits[name], 4, core.DEFAULT_FRACTIONS) == i).all()
    msg = result.failure_message()
    assert "3 attempt(s) (seeds 4-6)" in msg and "\n" not in msg
    worst = result.last.check.worst
    assert worst.column in {"distance_km", contract.LABEL}
    assert f"worst: {worst.column} in {worst.split}:" in msg


def test_no_pointless_retries_when_the_sample_is_every_row(make_inputs, tmp_path):
    _, stats, table = make_inputs()
    median = float(np.median(table.column("distance_km").to_numpy()))
    biased = write_clean(table.filter(pc.less(table.column("distance_km"), median)), tmp_path / "biased")
    result = core.run(core.SampleConfig(str(biased), str(stats), str(tmp_path / "o"), rows=0, max_attempts=5))
    assert result.size.rows == result.size.population_rows == 3000  # automatic size: all rows
    assert not result.passed and len(result.attempts) == 1
    assert "retries cannot help" in result.failure_message()


def _mark_quality_complete(root) -> None:
    (root / "_SUCCESS").write_text('{"step": "quality", "role": "output"}')


def test_raw_or_mistyped_input_is_refused_naming_file_and_column(inputs, tmp_path):
    clean, stats, table = inputs
    raw = tmp_path / "raw" / "year=2015" / "month=1"
    raw.mkdir(parents=True)
    _mark_quality_complete(tmp_path / "raw")
    pq.write_table(pa.table({"OBJECTID": [1, 2], "FAREAMOUNT": [5.0, 6.0]}), raw / "part-0.parquet")
    with pytest.raises(UserError, match=r"part-0\.parquet: no column 'objectid'"):
        core.run(core.SampleConfig(str(tmp_path / "raw"), str(stats), str(tmp_path / "o")))
    typed = tmp_path / "typed" / "year=2015" / "month=1"
    typed.mkdir(parents=True)
    _mark_quality_complete(tmp_path / "typed")
    bad = table.drop_columns(["year", "month"])
    bad = bad.set_column(
        bad.schema.get_field_index(contract.LABEL),
        contract.LABEL,
        pa.array([str(v) for v in bad.column(contract.LABEL).to_pylist()]),
    )
    pq.write_table(bad, typed / "part-0.parquet")
    with pytest.raises(UserError, match=rf"column '{contract.LABEL}' is string"):
        core.run(core.SampleConfig(str(tmp_path / "typed"), str(stats), str(tmp_path / "o")))
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        (None, "no _SUCCESS marker: not a complete output"),
        ("_INCOMPLETE", r"the quality step has not finished writing it \(_INCOMPLETE, no _SUCCESS\)"),
        (
            '{"step": "ingest"}',
            "holds a _SUCCESS of the ingest step, expected the output of the quality step",
        ),
        ("{not json", "holds a _SUCCESS that is not a JSON object"),
    ],
)
def test_clean_input_must_be_marked_complete_by_quality(inputs, tmp_path, marker, message):
    """A quality run that died half-way (no _SUCCESS of the quality step): its rows must never be sampled."""
    clean, stats, _ = inputs
    path = clean / "_SUCCESS"
    if marker is None:
        path.unlink()
    elif marker == "_INCOMPLETE":  # a quality run that died half-way (on S3: written in place)
        path.rename(clean / "_INCOMPLETE")
    else:
        path.write_text(marker)
    with pytest.raises(UserError, match=message):
        core.run(core.SampleConfig(str(clean), str(stats), str(tmp_path / "o")))
    assert not (tmp_path / "o").exists()


def test_stray_non_parquet_file_in_the_input_is_a_user_error(inputs, tmp_path):
    clean, stats, _ = inputs
    (clean / "year=2015" / "month=1" / "notes.parquet").write_text("not parquet")
    with pytest.raises(UserError, match=r"notes\.parquet: not a readable Parquet file"):
        core.run(core.SampleConfig(str(clean), str(stats), str(tmp_path / "o")))


def test_output_that_is_a_file_is_a_user_error(inputs, tmp_path):
    clean, stats, _ = inputs
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a directory"):
        core.run(core.SampleConfig(str(clean), str(stats), str(tmp_path / "file"), rows=2000))
    with pytest.raises(UserError, match="cannot write here"):
        core.write_splits({"train": pa.table({"a": [1]})}, str(tmp_path / "file" / "sub"), 1)


def test_unrelated_output_directory_is_never_replaced(inputs, tmp_path):
    clean, stats, _ = inputs
    out = tmp_path / "mine"
    (out / "train").mkdir(parents=True)
    (out / "train" / "precious.txt").write_text("keep")
    with pytest.raises(UserError, match="not an earlier output of the sample step"):
        core.run(core.SampleConfig(str(clean), str(stats), str(out), rows=2000))
    assert (out / "train" / "precious.txt").read_text() == "keep"
    # ingest's _SUCCESS is not the sample's
    (out / "_SUCCESS").write_text('{"step": "ingest"}')
    with pytest.raises(UserError, match="not an earlier output of the sample step"):
        core.write_splits({"train": pa.table({"a": [1]})}, str(out), 1)
    assert (out / "train" / "precious.txt").exists()


def test_a_finished_output_carries_the_success_marker_with_the_summary(inputs, tmp_path):
    import json

    clean, stats, _ = inputs
    result = core.run(core.SampleConfig(str(clean), str(stats), str(tmp_path / "out"), rows=2000))
    marker = json.loads((tmp_path / "out" / "_SUCCESS").read_text())
    assert marker["step"] == "sample" and marker["rows"] == result.summary()["rows"]
    assert not (tmp_path / "out" / "_INCOMPLETE").exists()
