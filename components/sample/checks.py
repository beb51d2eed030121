"""Statistics of the sample step: the population it is compared to, the sample-size rule,
and the per-column tests of each split against the population.

Tests (for every split x every column in LABEL + FEATURES):

- z-test of the split's mean against the population mean and std from ``stats.json``:
  ``z = (mean - mu) / (sigma / sqrt(n) * fpc)`` with the finite-population correction
  ``fpc = sqrt((N - n) / (N - 1))`` (the split is drawn without replacement from N rows);
  two-sided ``p = 2 * (1 - Phi(|z|))``.
- two-sample Kolmogorov-Smirnov test (``scipy.stats.ks_2samp``) of the split's values
  against the population reservoir.

Multiple testing: Bonferroni. The family is every test run (splits x columns x 2; a column
constant in the population, such as ``year`` in a one-year set, is left out: every split
matches it exactly), and the check passes when every p-value is at least
``alpha / family size``; the chance of
rejecting a truly uniform sample is then at most ``alpha`` per attempt, whatever the
dependence between the tests (the z- and KS tests of one column are strongly dependent,
which only makes Bonferroni more conservative).

Known conservativeness, documented rather than corrected:

- year, month, weekday and hour are discrete (and the coordinates are snapped to city
  blocks). ``ks_2samp`` assumes continuous data; with ties its p-values are too large,
  so the KS test rejects less often than alpha on those columns. The z-test is unaffected.
- the reservoir and the sample are drawn from the same finite population, so they can
  share rows; shared rows make the two empirical distributions more alike than two
  independent samples would be, which also makes KS p-values too large (a small effect
  while the sample is a small fraction of the population).
"""

from __future__ import annotations

import contextlib
import math
import threading
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from components.common import contract
from components.common.errors import UserError
from components.common.staged import require_complete
from components.common.storage import read_json, resolve_filesystem

TESTED_COLUMNS: tuple[str, ...] = (contract.LABEL, *contract.FEATURES)
STAT_KEYS = ("count", "mean", "std", "min", "max")


@dataclass(frozen=True)
class ColumnStats:
    count: int
    mean: float
    std: float
    min: float
    max: float


@dataclass(frozen=True)
class Population:
    rows: int
    columns: dict[str, ColumnStats]
    reservoir: pa.Table


def load_population(uri: str) -> Population:
    """Read ``stats.json`` and ``reservoir.parquet`` from a population-stats directory (only once
    the quality step has marked it complete)."""
    require_complete(uri, contract.QUALITY_STEP)
    fs, root = resolve_filesystem(uri)
    stats_path = f"{root}/{contract.POPULATION_STATS_FILE}"
    reservoir_path = f"{root}/{contract.POPULATION_RESERVOIR_FILE}"
    missing = f"{uri}: no {contract.POPULATION_STATS_FILE} (expected the quality step's population stats)"
    raw = read_json(fs, stats_path, missing)
    if not isinstance(raw, dict) or not isinstance(raw.get("columns"), dict) or "rows" not in raw:
        raise UserError(
            f'{stats_path}: expected {{"rows": N, "columns": {{col: {{count, mean, std, min, max}}}}}}'
        )
    columns: dict[str, ColumnStats] = {}
    for name in TESTED_COLUMNS:
        entry = raw["columns"].get(name)
        if not isinstance(entry, dict) or any(k not in entry for k in STAT_KEYS):
            raise UserError(f"{stats_path}: column {name!r} missing or lacks one of {', '.join(STAT_KEYS)}")
        try:
            columns[name] = ColumnStats(
                count=int(entry["count"]), **{k: float(entry[k]) for k in ("mean", "std", "min", "max")}
            )
        except (TypeError, ValueError):
            raise UserError(f"{stats_path}: column {name!r} has a non-numeric statistic: {entry}") from None
    try:
        reservoir = pq.read_table(reservoir_path, filesystem=fs, columns=list(TESTED_COLUMNS))
    except FileNotFoundError:
        raise UserError(
            f"{uri}: no {contract.POPULATION_RESERVOIR_FILE} (expected the population reservoir)"
        ) from None
    except (pa.ArrowInvalid, KeyError) as err:
        raise UserError(f"{reservoir_path}: unreadable or missing columns ({err})") from None
    if reservoir.num_rows == 0:
        raise UserError(f"{reservoir_path}: the population reservoir is empty")
    return Population(rows=int(raw["rows"]), columns=columns, reservoir=reservoir)


# --- sample size -------------------------------------------------------------------


def se_ratio(n: int, population: int) -> float:
    """Standard error of the mean of n rows drawn without replacement from ``population``
    rows, in units of sigma (finite-population corrected; used by the z-test)."""
    if n >= population:
        return 0.0
    return math.sqrt((population - n) / (n * max(population - 1, 1)))


@dataclass(frozen=True)
class SizeStep:
    n: int
    next_n: int
    se_ratio: float  # SE(n) / sigma = 1 / sqrt(n), same for every column
    improvement_ratio: float  # (SE(n) - SE(next_n)) / sigma
    stops_improving: bool


@dataclass(frozen=True)
class SizeChoice:
    mode: str  # "fixed" (--rows) or "auto"
    rows: int
    population_rows: int
    tolerance: float | None = None
    steps: tuple[SizeStep, ...] = ()
    columns: tuple[str, ...] = ()

    def explanation(self) -> str:
        if self.mode == "fixed":
            return f"{self.rows:,} rows requested with --rows (population {self.population_rows:,} rows)."
        chosen = [s for s in self.steps if s.n == self.rows and s.stops_improving]
        if not chosen:
            return (
                f"all {self.rows:,} rows: no power of two below the population size meets the rule "
                f"(every doubling up to it still improves the standard error by at least {self.tolerance:g} sigma)."
            )
        s = chosen[0]
        return (
            f"{self.rows:,} = 2^{int(math.log2(self.rows))} rows: the smallest power of two at which doubling "
            f"(to {s.next_n:,}) would reduce the standard error of the mean of every feature column by less than "
            f"{self.tolerance:g} of its population standard deviation (here by {s.improvement_ratio:.3g} sigma, "
            f"SE = {s.se_ratio:.3g} sigma); population {self.population_rows:,} rows."
        )


MIN_AUTO_EXPONENT = 10  # never propose fewer than 1,024 rows


def choose_rows(
    population_rows: int, stats: dict[str, ColumnStats], tolerance: float, columns=contract.FEATURES
) -> SizeChoice:
    """Automatic sample size: where the standard error of the mean stops improving.

    For a column with std sigma the SE of the mean of n rows is ``sigma / sqrt(n)``.
    Doubling n always shrinks the SE by ~29%, so "stops improving" is defined on the
    absolute gain: n* is the smallest power of two n >= 1024 for which going to 2n rows
    reduces the SE of *every* feature column by less than ``tolerance * sigma`` of that
    column. If n* is not below the population size, all rows are used. Columns with
    sigma = 0 have nothing to estimate and are skipped.

    The SE here is the infinite-population one, without the finite-population correction:
    the training sample stands for the trips the model will see, not only for this table,
    and with the correction more data could yield a smaller sample (N = 5M would give
    2^22, N = 6M 2^21). With tolerance 3e-4, n* = 2^20 for any population above 2^20 rows:
    2^19 -> 2^20 gains 4.05e-4 sigma, 2^20 -> 2^21 gains 2.86e-4 sigma.
    """
    if not 0 < tolerance < 1:
        raise UserError(f"--se-tolerance: expected a number in (0, 1), got {tolerance}")
    spread = [c for c in columns if stats[c].std > 0]
    steps: list[SizeStep] = []
    chosen = population_rows
    k = MIN_AUTO_EXPONENT
    while (1 << k) < population_rows:
        n = 1 << k
        ratio, next_ratio = 1 / math.sqrt(n), 1 / math.sqrt(2 * n)
        # Judged per column in that column's own units: gain_c = sigma_c * (ratio - next_ratio).
        stops = all(stats[c].std * (ratio - next_ratio) < tolerance * stats[c].std for c in spread)
        steps.append(SizeStep(n, 2 * n, ratio, ratio - next_ratio, stops))
        if stops:
            chosen = n
            # One more row of context for the report, then stop.
            steps.append(SizeStep(2 * n, 4 * n, next_ratio, next_ratio - 1 / math.sqrt(4 * n), True))
            break
        k += 1
    return SizeChoice("auto", chosen, population_rows, tolerance, tuple(steps), tuple(spread))


# --- tests ------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnTest:
    split: str
    column: str
    n: int
    population_mean: float
    sample_mean: float
    z: float
    z_p: float
    ks_stat: float
    ks_p: float

    @property
    def min_p(self) -> float:
        return min(self.z_p, self.ks_p)

    def worst_test(self) -> tuple[str, float, float]:
        """(test name, statistic, p) of the smaller of the two p-values."""
        if self.z_p <= self.ks_p:
            return "z", self.z, self.z_p
        return "KS", self.ks_stat, self.ks_p


@dataclass(frozen=True)
class CheckResult:
    tests: tuple[ColumnTest, ...]
    alpha: float
    family_size: int
    threshold: float = field(init=False)
    # columns constant in the population (e.g. year in a one-year set): any split matches them
    # exactly, so they are left out of the family instead of diluting its threshold
    constant_columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "threshold", self.alpha / max(self.family_size, 1))

    @property
    def min_p(self) -> float:
        return min((t.min_p for t in self.tests), default=1.0)

    @property
    def passed(self) -> bool:
        return self.min_p >= self.threshold

    @property
    def worst(self) -> ColumnTest | None:
        if not self.tests:
            return None
        # Smallest p; among p-values that underflow to 0, the largest statistic.
        return min(self.tests, key=lambda t: (t.min_p, -abs(t.worst_test()[1])))

    def describe_worst(self) -> str:
        w = self.worst
        if w is None:
            return "no tests"
        name, stat, p = w.worst_test()
        label = "z" if name == "z" else "KS D"
        return f"{w.column} in {w.split}: {label}={stat:.4g}, p={p:.3g}"


def import_tests_in_background() -> threading.Thread:
    """Import ``scipy.stats`` (~0.5 s, most of it parsing docstrings) on a thread, so the
    import overlaps the draw instead of following it; :func:`check_splits` imports it again,
    which waits for this import if it is still running (Python's per-module import lock) and
    raises there if it failed."""

    def load() -> None:
        with contextlib.suppress(Exception):  # check_splits' own import reports a failure
            import scipy.stats  # noqa: F401

    thread = threading.Thread(target=load, name="import-scipy-stats", daemon=True)
    thread.start()
    return thread


def z_test(values: np.ndarray, stats: ColumnStats, population_rows: int) -> tuple[float, float]:
    from scipy.stats import norm

    n = len(values)
    mean = float(np.mean(values))
    se = stats.std * se_ratio(n, population_rows)
    diff = mean - stats.mean
    if se == 0.0:
        # sigma == 0 or the split is the whole population: the mean is known exactly.
        same = math.isclose(mean, stats.mean, rel_tol=1e-9, abs_tol=1e-12)
        return (0.0, 1.0) if same else (math.copysign(math.inf, diff), 0.0)
    z = diff / se
    return z, float(2.0 * norm.sf(abs(z)))


def check_splits(splits: dict[str, pa.Table], population: Population, alpha: float = 0.05) -> CheckResult:
    """Test every non-empty split x tested column against the population (see module doc)."""
    from scipy.stats import ks_2samp

    if not 0 < alpha < 1:
        raise UserError(f"--alpha: expected a number in (0, 1), got {alpha}")
    reservoir = {
        c: population.reservoir.column(c).to_numpy(zero_copy_only=False).astype(np.float64)
        for c in TESTED_COLUMNS
    }
    constant = tuple(c for c in TESTED_COLUMNS if population.columns[c].std == 0.0)
    tested = [c for c in TESTED_COLUMNS if c not in constant]
    tests: list[ColumnTest] = []
    for split, table in splits.items():
        if table.num_rows == 0:
            continue
        for column in tested:
            values = table.column(column).to_numpy(zero_copy_only=False).astype(np.float64)
            stats = population.columns[column]
            z, z_p = z_test(values, stats, population.rows)
            ks = ks_2samp(values, reservoir[column])
            tests.append(
                ColumnTest(
                    split=split,
                    column=column,
                    n=len(values),
                    population_mean=stats.mean,
                    sample_mean=float(np.mean(values)),
                    z=float(z),
                    z_p=float(z_p),
                    ks_stat=float(ks.statistic),
                    ks_p=float(ks.pvalue),
                )
            )
    return CheckResult(tuple(tests), alpha, family_size=2 * len(tests), constant_columns=constant)
