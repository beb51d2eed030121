from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from components.common import contract
from components.common.errors import UserError
from components.sample import checks, core

from .conftest import MONTHS, synthetic_trips

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def population_table() -> pa.Table:
    return synthetic_trips(20_000, MONTHS, seed=9)


@pytest.fixture(scope="module")
def population(population_table, tmp_path_factory) -> checks.Population:
    from .conftest import write_population_stats

    directory = write_population_stats(
        population_table, tmp_path_factory.mktemp("stats"), reservoir_rows=5000
    )
    return checks.load_population(str(directory))


def uniform_splits(table: pa.Table, rows: int, seed: int) -> dict[str, pa.Table]:
    pick = np.random.default_rng(seed).choice(table.num_rows, rows, replace=False)
    return core.split_table(table.take(pa.array(pick)), 0, core.DEFAULT_FRACTIONS)


def test_load_population_reads_the_contract(population, population_table):
    assert population.rows == 20_000
    assert set(population.columns) == set(checks.TESTED_COLUMNS)
    fare = population_table.column(contract.LABEL).to_numpy()
    assert population.columns[contract.LABEL].mean == pytest.approx(fare.mean())
    assert population.reservoir.num_rows == 5000


def test_z_test_matches_a_hand_computation():
    stats = checks.ColumnStats(count=10_000, mean=10.0, std=4.0, min=0, max=20)
    values = np.full(400, 10.5)
    z, p = checks.z_test(values, stats, population_rows=10_000)
    se = 4.0 / math.sqrt(400) * math.sqrt((10_000 - 400) / (10_000 - 1))
    assert z == pytest.approx(0.5 / se)
    assert p == pytest.approx(math.erfc(abs(0.5 / se) / math.sqrt(2)))
    assert checks.z_test(np.full(5, 3.0), checks.ColumnStats(5, 3.0, 0.0, 3, 3), 5) == (0.0, 1.0)
    assert checks.z_test(np.full(5, 4.0), checks.ColumnStats(5, 3.0, 0.0, 3, 3), 5) == (math.inf, 0.0)


def test_uniform_random_sample_passes_with_bonferroni(population, population_table):
    result = checks.check_splits(uniform_splits(population_table, 8000, seed=1), population)
    # the fixture's population is one year: year is constant, so not tested
    assert result.constant_columns == ("year",)
    assert result.family_size == 3 * (len(checks.TESTED_COLUMNS) - 1) * 2 == 54
    assert result.threshold == pytest.approx(0.05 / 54)
    assert result.passed, result.describe_worst()
    assert {t.split for t in result.tests} == set(core.SPLITS)


def test_biased_sample_of_short_trips_fails(population, population_table):
    distance = population_table.column("distance_km")
    short = population_table.filter(pc.less(distance, float(np.median(distance.to_numpy()))))
    result = checks.check_splits(uniform_splits(short, 4000, seed=2), population)
    assert not result.passed
    failing = {(t.split, t.column) for t in result.tests if t.min_p < result.threshold}
    assert {(s, "distance_km") for s in core.SPLITS} <= failing
    assert result.worst.column in {"distance_km", contract.LABEL}
    assert result.min_p < 1e-20


@pytest.mark.parametrize("column", ["hour", "origin_lat", contract.LABEL])
def test_a_shift_in_one_column_is_caught_in_that_column(population, population_table, column):
    splits = uniform_splits(population_table, 8000, seed=3)
    train = splits["train"]
    i = train.schema.get_field_index(column)
    col = train.column(column)
    shift = 0.35 * population.columns[column].std
    shifted = pc.cast(pc.add(pc.cast(col, pa.float64()), shift), col.type, safe=False)
    splits["train"] = train.set_column(i, train.schema.field(i), shifted)
    result = checks.check_splits(splits, population)
    assert not result.passed
    assert result.worst.column == column and result.worst.split == "train"


def test_auto_size_reproduces_the_reference_2_pow_20_on_a_large_population(population):
    choice = checks.choose_rows(50_000_000, population.columns, tolerance=3e-4)
    assert choice.mode == "auto" and choice.rows == 2**20
    by_n = {s.n: s for s in choice.steps}
    assert not by_n[2**19].stops_improving and by_n[2**20].stops_improving
    assert by_n[2**19].improvement_ratio == pytest.approx(4.05e-4, rel=0.01)
    assert by_n[2**20].improvement_ratio == pytest.approx(2.86e-4, rel=0.01)
    assert "2^20" in choice.explanation()
    # A looser tolerance stops earlier, a stricter one later.
    assert checks.choose_rows(50_000_000, population.columns, tolerance=1e-3).rows == 2**17
    assert checks.choose_rows(50_000_000, population.columns, tolerance=1e-4).rows == 2**24
    # Any population above 2^20 rows gets 2^20; more data never gives a smaller sample.
    sizes = [
        checks.choose_rows(n, population.columns, 3e-4).rows for n in (2**20 + 1, 5_000_000, 10**7, 10**9)
    ]
    assert sizes == [2**20] * 4
    assert checks.choose_rows(2**20, population.columns, 3e-4).rows == 2**20  # all rows


def test_auto_size_uses_everything_when_the_population_is_small(population):
    choice = checks.choose_rows(6000, population.columns, tolerance=3e-4)
    assert choice.rows == 6000 and "all 6,000 rows" in choice.explanation()
    with pytest.raises(UserError, match="se-tolerance"):
        checks.choose_rows(6000, population.columns, tolerance=0)


def test_columns_without_spread_do_not_block_the_rule(population):
    stats = dict(population.columns)
    stats["year"] = checks.ColumnStats(1, 2015.0, 0.0, 2015, 2015)  # one year only
    choice = checks.choose_rows(50_000_000, stats, tolerance=3e-4)
    assert choice.rows == 2**20 and "year" not in choice.columns


def test_a_column_constant_in_the_population_is_left_out_of_the_family(population, population_table):
    """A one-year data set (the fixture's): ``year`` is the same in every row, so every split
    matches it exactly; testing it would only make Bonferroni's threshold stricter for the
    others. A population whose year varies has it tested."""
    import dataclasses

    splits = uniform_splits(population_table, 8000, seed=1)
    assert population.columns["year"].std == 0.0
    result = checks.check_splits(splits, population)
    assert result.constant_columns == ("year",)
    assert "year" not in {t.column for t in result.tests}
    assert result.family_size == 2 * len(result.tests) == 3 * (len(checks.TESTED_COLUMNS) - 1) * 2
    stats = dict(population.columns)
    stats["year"] = dataclasses.replace(stats["year"], std=0.5, max=stats["year"].min + 1)
    varying = checks.check_splits(splits, dataclasses.replace(population, columns=stats))
    assert varying.constant_columns == ()
    assert {t.split for t in varying.tests if t.column == "year"} == set(core.SPLITS)
    assert varying.family_size == 3 * len(checks.TESTED_COLUMNS) * 2


def test_the_tests_import_starts_on_a_thread_and_the_check_finds_it():
    """scipy.stats is not imported with the step's modules; import_tests_in_background loads it
    on another thread (so it overlaps the draw)."""
    code = (
        "import sys, threading\n"
        "from components.sample import checks, core\n"
        "assert 'scipy.stats' not in sys.modules, 'imported with the step'\n"
        "thread = checks.import_tests_in_background()\n"
        "assert thread is not threading.current_thread() and thread.daemon\n"
        "thread.join(60)\n"
        "assert 'scipy.stats' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
