"""The in-place classification (sql.classify_statements) against the reference query.

``classify_statements`` builds the classified table once in (source_file, source_line)
order and finds exact duplicates by hashing the compared columns first and running the
rule's window only over rows whose hash occurs more than once. These tests check that it
flags exactly the rows the single reference query (``sql.classify``: the window over every
surviving row) flags, also when different rows share a hash (forced by a degenerate hash)
and when the input is not in source order.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from components.common import contract, datasets
from components.quality import core, sql
from components.quality.rules import load_rules

from .rawdata import DEFECTS, raw_table, write_raw


def _tricky_partition() -> pa.Table:
    """One month with every defect, plus duplicate groups that differ in one column only,
    NULLs in compared columns (equal for PARTITION BY), 0.0 vs -0.0, and triplicates."""
    t = raw_table(300, 2015, 6, seed=11, defects=dict.fromkeys(DEFECTS, 4))
    cols = {name: t.column(name).to_pylist() for name in t.column_names}
    n = t.num_rows

    def copy(src: int, dst: int, **change) -> None:
        for name in cols:
            if name not in ("OBJECTID", contract.SOURCE_LINE):
                cols[name][dst] = cols[name][src]
        for name, value in change.items():
            cols[name][dst] = value

    copy(100, 150)  # exact copy
    copy(100, 151)  # a third one
    copy(100, 152, MILEAGE=cols["MILEAGE"][100] + 0.01)  # differs in one column: not a duplicate
    cols["DESTINATIONZIP"][110] = None  # NULLs compare equal in PARTITION BY
    copy(110, 160)
    cols["TOLLAMOUNT"][120] = 0.0
    copy(120, 170, TOLLAMOUNT=-0.0)  # 0.0 and -0.0 are one value for PARTITION BY and hash()
    copy(130, 180, ORIGIN_BLOCKNAME="2ND ST NW")  # differs in a string column
    copy(200, 40)  # the copy comes first in the file: the earlier line is kept
    assert n == len(cols["OBJECTID"])
    return pa.table(cols, schema=contract.RAW_SCHEMA)


def _classify_both(raw: pa.Table, ruleset, *, shuffle: bool) -> tuple[list, list]:
    if shuffle:
        raw = raw.take(pa.array(np.random.default_rng(3).permutation(raw.num_rows)))
    con = duckdb.connect()
    try:
        con.register("raw_input", raw)
        reference = con.execute(
            f"SELECT source_file, source_line, rule FROM ({sql.classify(ruleset, 2015, 6)}) "
            "ORDER BY source_file, source_line"
        ).fetchall()
        for statement in sql.classify_statements(ruleset, 2015, 6, "classified", order=shuffle):
            con.execute(statement)
        # no ORDER BY: the table itself must be in (source_file, source_line) order
        fast = con.execute("SELECT source_file, source_line, rule FROM classified").fetchall()
    finally:
        con.close()
    return reference, fast


@pytest.mark.parametrize("shuffle", [False, True], ids=["source-order", "shuffled"])
@pytest.mark.parametrize("hash_function", ["hash", "0 * hash"], ids=["hash", "every-row-collides"])
def test_in_place_classification_equals_the_reference_query(monkeypatch, shuffle, hash_function):
    monkeypatch.setattr(sql, "HASH_FUNCTION", hash_function)
    reference, fast = _classify_both(_tricky_partition(), load_rules(), shuffle=shuffle)
    assert fast == reference
    dups = sorted(line for _, line, rule in fast if rule == "duplicate_trip")
    # line = row + 2. 4 planted by raw_table, rows 150 and 151 (copies of 100), 160 (of 110,
    # NULLs), 170 (of 120, -0.0) and 200 (its copy at row 40 comes first); 152 and 180 differ
    assert {154, 182}.isdisjoint(dups) and {152, 153, 162, 172, 202} <= set(dups)
    assert len(dups) == 4 + 5


def test_hash_prefilter_applies_only_to_the_exact_duplicate_pattern():
    rules = load_rules()
    dup = next(r for r in rules.rules if r.name == "duplicate_trip")
    assert sql.duplicate_columns(dup.reject_if)[:2] == ["TRIPTYPE", "PROVIDERNAME"]
    assert len(sql.duplicate_columns(dup.reject_if)) == len(contract.RAW_SCHEMA) - 3
    for other in (
        "row_number() OVER (PARTITION BY FAREAMOUNT ORDER BY source_line) > 2",
        "count(*) OVER (PARTITION BY FAREAMOUNT) > 1",
        "row_number() OVER (PARTITION BY round(FAREAMOUNT) ORDER BY source_line) > 1",
    ):
        assert sql.duplicate_columns(other) is None


def test_other_partition_rules_and_later_row_rules_match_the_reference():
    rules = load_rules(
        text="""
rules:
  - name: far_above_the_median_fare
    description: a partition-scoped rule that is not the duplicate pattern
    scope: partition
    reject_if: FAREAMOUNT > 3 * median(FAREAMOUNT) OVER ()
  - name: long_trip
    description: a row rule after the partition rules
    reject_if: MILEAGE > 12
"""
    )
    reference, fast = _classify_both(_tricky_partition(), rules, shuffle=True)
    assert fast == reference
    assert {rule for _, _, rule in fast} >= {"duplicate_trip", "long_trip", None}


def test_unsorted_input_gives_outputs_in_source_order(tmp_path, monkeypatch):
    """Rows spread over files out of source order: outputs are still sorted, results equal."""
    raw = _tricky_partition()
    order = np.random.default_rng(5).permutation(raw.num_rows)
    write_raw(tmp_path / "raw", [raw.take(pa.array(order))], files_per_partition=3)
    runs = {}
    for name, fn in (("hash", "hash"), ("collide", "0 * hash")):
        monkeypatch.setattr(sql, "HASH_FUNCTION", fn)
        res = core.run(
            core.QualityConfig(input_uri=str(tmp_path / "raw"), output_uri=str(tmp_path / name), workers=1)
        )
        rejected = datasets.read_rejected(str(tmp_path / f"{name}_rejected"))
        keys = list(
            zip(rejected["month"].to_pylist(), rejected[contract.SOURCE_LINE].to_pylist(), strict=True)
        )
        assert keys == sorted(keys)  # partitions in order, source order within each
        runs[name] = (res.counts, datasets.read_clean(str(tmp_path / name)), rejected)
    assert runs["hash"][0] == runs["collide"][0]
    assert runs["hash"][1].equals(runs["collide"][1]) and runs["hash"][2].equals(runs["collide"][2])
    assert runs["hash"][0]["rejected_by_rule"]["duplicate_trip"] == 4 + 5


def _order_cases():
    rng = np.random.default_rng(7)
    pools = [["a", "b", "c"], ["ab", "b", "abc", ""], ["x1", "x2", "é1", "e2"], ["taxi_2015_01.txt"]]
    cases = [([], []), (["a"], [3]), (["a", "a"], [2, 1]), (["b", "a"], [1, 2]), (["a", None], [1, 2])]
    cases += [(["a", "a"], [1, None]), (["ab", "b"], [5, 1]), (["b", "ab"], [1, 5]), (["", "a"], [9, 0])]
    for _ in range(400):
        pool = pools[rng.integers(len(pools))]
        n = int(rng.integers(0, 14))
        files = [pool[i] for i in rng.integers(len(pool), size=n)]
        lines = [int(v) for v in rng.integers(0, 6, size=n)]
        if rng.random() < 0.6:  # mostly sorted inputs, some with one row moved
            pairs = sorted(zip(files, lines, strict=True))
            if n > 2 and rng.random() < 0.3:
                pairs.insert(int(rng.integers(n)), pairs.pop(int(rng.integers(n))))
            files, lines = [f for f, _ in pairs], [v for _, v in pairs]
        cases.append((files, lines))
    return cases


def test_input_order_check_matches_a_plain_comparison():
    """``_input_sorted`` (numpy over the Arrow buffers where the names are of one length,
    pyarrow.compute otherwise): True exactly when every row's (source_file, source_line) is
    >= the previous row's, in UTF-8 byte order; False when either column has a null."""
    from components.quality import clean_partition

    con = duckdb.connect()
    numpy_used = 0
    for files, lines in _order_cases():
        table = pa.table(
            {
                contract.SOURCE_FILE: pa.array(files, pa.string()),
                contract.SOURCE_LINE: pa.array(lines, pa.int64()),
            }
        )
        con.register("raw_input", table)
        if None in files or None in lines:
            expected = len(files) < 2
        else:
            keys = [(f.encode(), v) for f, v in zip(files, lines, strict=True)]
            expected = all(a <= b for a, b in zip(keys, keys[1:], strict=False))
        assert clean_partition._input_sorted(con) is expected, (files, lines)
        if len(files) >= 2 and None not in files and None not in lines:
            fast = clean_partition._sorted_numpy(pa.array(files, pa.string()), pa.array(lines, pa.int64()))
            assert fast in (None, expected), (files, lines)
            assert clean_partition._sorted_arrow(pa.array(files), pa.array(lines, pa.int64())) is expected
            numpy_used += fast is not None
        con.unregister("raw_input")
    assert numpy_used > 100  # the numpy path decided most cases


def test_input_order_check_reads_sliced_buffers():
    """Arrays that start inside their buffers (an offset) give the same answer."""
    from components.quality import clean_partition

    files = pa.array(["z", "a", "a", "b", "b"]).slice(1)
    lines = pa.array([9, 1, 2, 0, 5], pa.int64()).slice(1)
    assert clean_partition._sorted_numpy(files, lines) is True
    lines = pa.array([9, 2, 1, 0, 5], pa.int64()).slice(1)
    assert clean_partition._sorted_numpy(files, lines) is False
    assert clean_partition._sorted_numpy(pa.array(["b", "a"]).slice(0), pa.array([1, 2], pa.int64())) is False
