"""Sample step: reproducible train / validation / test splits with a statistical check.

How rows are chosen (see ``hashing`` for the trip key and hash):

1. Sample membership: every clean row gets ``h_sample = trip_hash(key, seed_attempt, SAMPLE)``;
   the sample of N rows is the N rows with the smallest ``h_sample`` (bottom-k, i.e. the
   rows whose hash falls under a threshold). The data are streamed in record batches of
   only the CLEAN_SCHEMA columns while a running bottom-k and its threshold are kept, so
   memory is O(N + one batch), never the whole data set.
2. Split: ``u = trip_hash(key, seed, SPLIT)`` mapped to [0, 1); train if u < f_train,
   validation if u < f_train + f_validation, else test. The split hash uses the *base*
   seed, not the attempt's seed, so a trip has one split whatever attempt is drawn and
   however many months are added; only membership in the sample changes between
   attempts. Split sizes are therefore binomial around the fractions (for 2^20 rows the
   10% splits vary by about +-300 rows), the price of a trip's split depending on that
   trip alone.
3. Check: every split against the population (``checks``); if any p-value is under the
   Bonferroni threshold, draw again with seed + 1, up to ``max_attempts`` (just once when
   the sample is every row: another seed would draw the same rows into the same splits).
4. Output: per split, rows in ``h_sample`` order (a deterministic shuffle, not month
   order) cut into ``shards`` contiguous, equally sized files (sizes differ by at most one
   row): ``train/part-00000.parquet`` ... so worker i of K reads ``part-{i:05d}``.

Guarantees: same input + seed -> same rows in each split; a trip is never in two
splits (its split is a function of its key); adding months never moves a trip to
another split, and with a fixed ``rows`` a trip of the old months that is in the new
sample was already in the old one (the bottom-k threshold can only fall as rows are added).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from components.common import contract
from components.common.datasets import open_clean
from components.common.errors import UserError
from components.common.staged import StagedOutput, check_destination

from . import checks, hashing
from .config import DEFAULT_FRACTIONS, SampleConfig, parse_fractions  # noqa: F401 (the step's API)

SPLITS: tuple[str, ...] = ("train", "validation", "test")
BATCH_ROWS = 1 << 18
STEP = "sample"  # the name its output's _SUCCESS marker carries (the summary beside it)


class SampleCheckFailed(UserError):
    """The sample did not pass the statistical check within the allowed attempts."""

    exit_code = 1


# --- reading ----------------------------------------------------------------------


def draw(dataset: ds.Dataset, rows: int, seed: int) -> tuple[pa.Table, np.ndarray]:
    """The ``rows`` rows with the smallest sample hash, sorted by it; and those hashes."""
    if rows < 1:
        raise ValueError("rows must be positive")
    kept_tables: list[pa.Table] = []
    kept_hashes: list[np.ndarray] = []
    count = 0
    threshold: np.uint64 | None = None

    def compact() -> None:
        nonlocal kept_tables, kept_hashes, count, threshold
        table = pa.concat_tables(kept_tables).combine_chunks()
        h = np.concatenate(kept_hashes)
        if len(h) > rows:
            idx = np.argpartition(h, rows - 1)[:rows]
            table, h = table.take(pa.array(idx)), h[idx]
        kept_tables, kept_hashes, count = [table], [h], len(h)
        if len(h) >= rows:
            threshold = h.max()

    def consume(table: pa.Table) -> None:
        nonlocal count
        h = hashing.trip_hash(table, seed, hashing.SAMPLE_SALT)
        if threshold is not None:
            mask = h <= threshold
            if not mask.any():
                return
            table, h = table.filter(pa.array(mask)), h[mask]
        kept_tables.append(table)
        kept_hashes.append(h)
        count += len(h)
        if (threshold is None and count >= rows) or count > 2 * rows:
            compact()

    try:
        # Files can hold many small row groups: gather batches into ~BATCH_ROWS-row tables
        # so the per-call overhead of hashing and filtering stays small.
        pending: list[pa.RecordBatch] = []
        pending_rows = 0
        # One scan thread: the threaded scanner reads ahead of a consumer this slow (hashing in
        # numpy) without bound -- 1.3 GB of Arrow buffers on the full DC set (54 files of ~730k
        # rows) against 0.4 GB without threads, for the same CPU time; the batches are the same.
        scan = dataset.to_batches(
            columns=contract.CLEAN_SCHEMA.names,
            batch_size=BATCH_ROWS,
            use_threads=False,
        )
        for batch in scan:
            if batch.num_rows:
                pending.append(batch)
                pending_rows += batch.num_rows
            if pending_rows >= BATCH_ROWS:
                consume(pa.Table.from_batches(pending).combine_chunks())
                pending, pending_rows = [], 0
        if pending:
            consume(pa.Table.from_batches(pending).combine_chunks())
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as err:
        raise UserError(f"cannot read the clean data set: {err}") from None
    if not kept_tables:
        return contract.CLEAN_SCHEMA.empty_table(), np.empty(0, np.uint64)
    compact()
    table, h = kept_tables[0], kept_hashes[0]
    order = np.argsort(h, kind="stable")
    return table.take(pa.array(order)).cast(contract.CLEAN_SCHEMA), h[order]


def split_codes(table: pa.Table, seed: int, fractions: tuple[float, float, float]) -> np.ndarray:
    """0 = train, 1 = validation, 2 = test for every row, from the split hash of its key."""
    u = hashing.unit_interval(hashing.trip_hash(table, seed, hashing.SPLIT_SALT))
    edges = np.array([fractions[0], fractions[0] + fractions[1]])
    return np.searchsorted(edges, u, side="right").astype(np.int8)


def split_table(table: pa.Table, seed: int, fractions: tuple[float, float, float]) -> dict[str, pa.Table]:
    codes = split_codes(table, seed, fractions)
    return {name: table.filter(pa.array(codes == i)) for i, name in enumerate(SPLITS)}


# --- writing ----------------------------------------------------------------------


def shard_bounds(rows: int, shards: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) ranges, sizes differing by at most one row."""
    cuts = [(i * rows) // shards for i in range(shards + 1)]
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def check_output(output_uri: str) -> None:
    """The output must be new, empty or an earlier output of this step (its ``_SUCCESS`` or
    ``_INCOMPLETE`` marker names the sample step): writing the splits replaces the whole
    location, which must never hit unrelated data."""
    check_destination(output_uri, STEP)


def write_splits(
    splits: dict[str, pa.Table],
    output_uri: str,
    shards: int,
    marker: Callable[[dict[str, list[int]]], dict] = lambda rows: {"shard_rows": rows},
) -> dict[str, list[int]]:
    """Write ``<output>/<split>/part-00000.parquet`` ... staged (``components.common.staged``),
    then ``_SUCCESS`` (``marker(rows per shard per split)`` with ``"step": "sample"``) last;
    return the rows per shard per split."""
    written: dict[str, list[int]] = {}
    with StagedOutput(output_uri, STEP) as out:
        for name, table in splits.items():
            written[name] = []
            for i, (start, stop) in enumerate(shard_bounds(table.num_rows, shards)):
                pq.write_table(
                    table.slice(start, stop - start),
                    out.path(f"{name}/part-{i:05d}.parquet"),
                    filesystem=out.fs,
                )
                written[name].append(stop - start)
        out.commit(marker(written))
    return written


# --- the step ---------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    seed: int
    rows: dict[str, int]
    check: checks.CheckResult

    @property
    def passed(self) -> bool:
        return self.check.passed


@dataclass
class SampleResult:
    config: SampleConfig
    size: checks.SizeChoice
    population: checks.Population
    attempts: list[Attempt]
    splits: dict[str, pa.Table]  # of the last attempt
    shard_rows: dict[str, list[int]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def last(self) -> Attempt:
        return self.attempts[-1]

    @property
    def passed(self) -> bool:
        return self.last.passed

    def failure_message(self) -> str:
        a, first = self.last, self.attempts[0].seed
        seeds = f"seed {first}" if len(self.attempts) == 1 else f"seeds {first}-{a.seed}"
        whole = ""
        if self.size.rows == self.size.population_rows:
            whole = "; the sample is every row, so retries cannot help: a different --seed re-splits"
        return (
            f"sample failed the statistical check in {len(self.attempts)} attempt(s) ({seeds}); worst: "
            f"{a.check.describe_worst()} < {a.check.threshold:.3g} (alpha {a.check.alpha:g} Bonferroni over "
            f"{a.check.family_size} tests){whole}"
        )

    def summary(self) -> dict:
        a = self.last
        worst = a.check.worst
        worst_info = None
        if worst is not None:
            test, stat, p = worst.worst_test()
            worst_info = {
                "split": worst.split,
                "column": worst.column,
                "test": test,
                "statistic": stat,
                "p_value": p,
            }
        return {
            "passed": self.passed,
            "rows": dict(a.rows),
            "sample_rows": sum(a.rows.values()),
            "population_rows": self.size.population_rows,
            "size_mode": self.size.mode,
            "seed": a.seed,
            "base_seed": self.config.seed,
            "attempts": len(self.attempts),
            "min_p_value": a.check.min_p,
            "alpha": a.check.alpha,
            "p_threshold": a.check.threshold,
            "tests": a.check.family_size,
            "untested_constant_columns": list(a.check.constant_columns),
            "worst": worst_info,
            "fractions": list(self.config.fractions),
            "shards": self.config.shards,
            "shard_rows": self.shard_rows,
            "output": self.config.output_uri if self.passed else None,
        }

    def metrics(self) -> dict[str, float]:
        """rows_<split>, min_p_value, seed, attempts and passed (1/0): the kfp Metrics."""
        s = self.summary()
        values = {f"rows_{name}": n for name, n in s["rows"].items()}
        values.update(min_p_value=s["min_p_value"], seed=s["seed"], attempts=s["attempts"])
        values["passed"] = 1 if s["passed"] else 0
        return values


def _log(message: str) -> None:
    print(f"sample: {message}", file=sys.stderr, flush=True)


def run(config: SampleConfig, *, log=_log) -> SampleResult:
    """Size, draw, split and check (retrying with the next seed); write the splits if the
    check passes. A failed check is returned (``passed`` False, nothing written), not raised:
    callers write the report first, then raise ``SampleCheckFailed(result.failure_message())``."""
    config.validate()
    checks.import_tests_in_background()
    population = checks.load_population(config.population_stats_uri)
    check_output(config.output_uri)  # fail before the work, not after it
    dataset = open_clean(config.input_uri)
    try:
        population_rows = dataset.count_rows()
    except (pa.ArrowInvalid, OSError) as err:
        raise UserError(f"{config.input_uri}: cannot read the clean data set ({err})") from None
    if population_rows == 0:
        raise UserError(f"{config.input_uri}: the clean data set has no rows")
    warnings: list[str] = []
    if population.rows != population_rows:
        warnings.append(
            f"population stats count {population.rows:,} rows but the clean data set has {population_rows:,}; "
            "are they from the same quality run?"
        )
        log(warnings[-1])
    if config.rows:
        if config.rows > population_rows:
            raise UserError(f"--rows {config.rows:,}: the clean data set has only {population_rows:,} rows")
        size = checks.SizeChoice("fixed", config.rows, population_rows)
    else:
        size = checks.choose_rows(population_rows, population.columns, config.se_tolerance)
    log(f"size: {size.explanation()}")

    attempts: list[Attempt] = []
    splits: dict[str, pa.Table] = {}
    for i in range(config.max_attempts):
        seed = config.seed + i
        sample, _ = draw(dataset, size.rows, seed)
        splits = split_table(sample, config.seed, config.fractions)
        result = checks.check_splits(splits, population, config.alpha)
        attempts.append(Attempt(seed, {k: v.num_rows for k, v in splits.items()}, result))
        verdict = "passed" if result.passed else "failed"
        log(
            f"attempt {i + 1} (seed {seed}): {verdict}; min p {result.min_p:.3g} vs {result.threshold:.3g}; "
            f"worst {result.describe_worst()}"
        )
        if result.passed:
            break
        if size.rows == population_rows:
            log("the sample is every row, so another seed would draw the same rows: not retrying")
            break
    out = SampleResult(config, size, population, attempts, splits, warnings=warnings)
    if out.passed:

        def marker(shard_rows: dict[str, list[int]]) -> dict:
            out.shard_rows = shard_rows
            return out.summary()

        write_splits(splits, config.output_uri, config.shards, marker)
    return out
