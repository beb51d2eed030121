"""Quality step: raw partitions -> clean features + rejected rows + population statistics + gate.

``run(QualityConfig)`` is plan (``partitions``) + process each partition
(``clean_partition``, in a process pool) + ``merge``; the cluster pipeline runs the same three
as separate tasks (the fan-out helpers here), so both paths write identical files and numbers.
Layout and statistics: docs/quality.md. Readers for later steps: ``components.common.datasets``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import ExitStack
from dataclasses import replace
from multiprocessing import get_all_start_methods, get_context

import pyarrow.fs as pafs

from components.common import contract
from components.common.errors import UserError
from components.common.progress import progress_bar
from components.common.staged import StagedOutput
from components.common.storage import resolve_filesystem

from .clean_partition import PartitionJob, keep_database, key_bound, process_partition, raw_file_infos
from .config import WORKER_MEMORY_MB, QualityConfig  # noqa: F401 (the step's API)
from .layout import STEP, join_uri
from .merge import SampleIncomplete, merge
from .partitions import Partition, find_partition, plan_partitions
from .result import QualityResult
from .rules import RuleSet

ROLES = ("output", "rejected", "stats")  # each output's marker names its role


def open_output(uri: str, overwrite: bool) -> StagedOutput:
    """The staged output at ``uri`` (``components.common.staged``): written in a staging place,
    its ``_SUCCESS`` marker of step ``quality`` last. A non-empty directory is refused unless
    ``overwrite`` (then only an earlier quality output is replaced, never anything else)."""
    fs, path = resolve_filesystem(uri)
    info = fs.get_file_info(path)
    if not overwrite and info.type == pafs.FileType.Directory and fs.get_file_info(pafs.FileSelector(path)):
        raise UserError(f"{uri}: output directory is not empty (pass --overwrite to replace it)")
    return StagedOutput(uri, STEP)


def _open_outputs(stack: ExitStack, outputs: dict[str, str], overwrite: bool) -> dict[str, StagedOutput]:
    return {role: stack.enter_context(open_output(uri, overwrite)) for role, uri in outputs.items()}


def _commit(staged: dict[str, StagedOutput]) -> None:
    for role, out in staged.items():
        out.commit({"role": role})


def _location(uri: str) -> tuple[str, str]:
    fs, path = resolve_filesystem(uri)
    if isinstance(fs, pafs.LocalFileSystem):
        return "local", os.path.realpath(path).rstrip("/")
    return type(fs).__name__, path.rstrip("/")


def _within(inner: tuple[str, str], outer: tuple[str, str]) -> bool:
    return inner[0] == outer[0] and (inner[1] == outer[1] or inner[1].startswith(outer[1] + "/"))


def check_locations(input_uri: str, outputs: dict[str, str]) -> None:
    """Refuse an input inside an output (or the reverse) and outputs nested in each other:
    preparing one output (``--overwrite`` empties it) must never touch another or the input."""
    source = _location(input_uri)
    places = {name: _location(uri) for name, uri in outputs.items()}
    for name, place in places.items():
        if _within(source, place):
            raise UserError(
                f"input {input_uri} is inside the {name} location {outputs[name]}; give separate locations"
            )
        if _within(place, source):
            raise UserError(
                f"{name} location {outputs[name]} is inside the input {input_uri}; give separate locations"
            )
    names = list(places)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if _within(places[a], places[b]) or _within(places[b], places[a]):
                raise UserError(
                    f"{a} location {outputs[a]} and {b} location {outputs[b]} overlap (one is inside the other)"
                )


# The reservoir partials keep clean rows under a key bound that about RESERVOIR_MARGIN x
# reservoir_rows of all input rows fall under: the merged bottom-k needs reservoir_rows clean
# rows below it, which holds while more than ~1/RESERVOIR_MARGIN of the rows are clean (the
# default gate fails past 50% rejected); otherwise the partitions run again without it.
RESERVOIR_MARGIN = 4
# The raw profile sample is drawn from all input rows (their number is known): a bound that
# ~1.25 x profile_rows + 2048 of them pass falls short only with a vanishing probability.
PROFILE_MARGIN, PROFILE_EXTRA = 1.25, 2048


def jobs_for(cfg: QualityConfig, partitions: Sequence[Partition], threads: int = 1) -> list[PartitionJob]:
    return [
        PartitionJob(
            raw_uri=cfg.input_uri,
            partition=p,
            ruleset=cfg.ruleset,
            clean_uri=cfg.output_uri,
            rejected_uri=cfg.rejected_uri,
            partials_uri=cfg.partials_uri,
            seed=cfg.seed,
            reservoir_rows=cfg.reservoir_rows,
            threads=threads,
            memory_mb=cfg.worker_memory_mb,
        )
        for p in partitions
    ]


def run_partitions(
    jobs: Sequence[PartitionJob],
    workers: int,
    progress: bool | None = False,
    sizes: Sequence[int] | None = None,
) -> list[dict]:
    """Process partitions, in a pool of ``workers`` processes when there is more than one job;
    results in the order of ``jobs``. ``progress``: a bar advanced by each finished partition's
    input bytes and rows (``None``: when stderr is a terminal); ``sizes``: each job's input
    bytes when already known (:func:`input_sizes`), else listed for the bar (no footer read)."""
    if sizes is None:
        sizes = (
            [sum(entry.size or 0 for entry in raw_file_infos(job)[1]) for job in jobs]
            if progress is not False
            else [0] * len(jobs)
        )
    with progress_bar(sum(sizes) or None, "quality", enabled=progress, rows=True) as advance:
        if workers <= 1 or len(jobs) <= 1:
            results = []
            for job, size in zip(jobs, sizes, strict=True):
                results.append(process_partition(job))
                advance(size, rows=results[-1]["rows_in"])
            return results
        # fork: workers need no re-import of __main__ (which spawn requires, and which fails for
        # stdin scripts and unguarded user scripts); the parent holds no DuckDB threads (the rule
        # check closes its connection) and Arrow resets its thread pools after a fork.
        methods = get_all_start_methods()
        with ProcessPoolExecutor(
            max_workers=min(workers, len(jobs)),
            mp_context=get_context("fork" if "fork" in methods else "spawn"),
            initializer=keep_database,
        ) as pool:
            futures = {
                pool.submit(process_partition, job): size for job, size in zip(jobs, sizes, strict=True)
            }
            # what the merge imports, now, while the workers run (~25 ms less after them)
            import pyarrow.compute  # noqa: F401

            for future in as_completed(futures):
                advance(futures[future], rows=future.result()["rows_in"])
            return [f.result() for f in futures]


def input_sizes(jobs: Sequence[PartitionJob]) -> tuple[int, list[int]]:
    """Rows of all the jobs' raw Parquet files, from their footers (0 when one cannot be read:
    the partition's own check then says why), and each job's bytes (what the progress bar
    counts), from one listing of each partition."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    total, sizes, readable = 0, [], True
    for job in jobs:
        fs, infos = raw_file_infos(job)
        sizes.append(sum(entry.size or 0 for entry in infos))
        for entry in infos if readable else ():
            try:
                with fs.open_input_file(entry.path) as f:
                    total += pq.ParquetFile(f).metadata.num_rows
            except (pa.ArrowInvalid, OSError):
                readable = False
                break
    return (total if readable else 0), sizes


def run(config: QualityConfig) -> QualityResult:
    """Plan, process every partition (in parallel), merge. Does not raise on a failed gate:
    call ``result.check_gate()`` after writing reports."""
    cfg = config.resolved()
    outputs = {"output": cfg.output_uri, "rejected": cfg.rejected_uri, "stats": cfg.stats_uri}
    if not _within(_location(cfg.partials_uri), _location(cfg.stats_uri)):
        outputs["partials"] = cfg.partials_uri
    check_locations(cfg.input_uri, outputs)
    partitions = plan_partitions(cfg.input_uri)
    with ExitStack() as stack:
        staged = _open_outputs(stack, {r: outputs[r] for r in ROLES}, cfg.overwrite)
        partials = cfg.partials_uri
        if _within(_location(partials), _location(cfg.stats_uri)):  # inside stats: staged with it
            partials = join_uri(
                staged["stats"].root_uri, _location(partials)[1][len(_location(cfg.stats_uri)[1]) :]
            )
        staging = replace(
            cfg,
            output_uri=staged["output"].root_uri,
            rejected_uri=staged["rejected"].root_uri,
            stats_uri=staged["stats"].root_uri,
            partials_uri=partials,
        )
        workers = min(cfg.workers, len(partitions))
        threads = max(1, (os.cpu_count() or 1) // max(1, workers))
        jobs = jobs_for(staging, partitions, threads)
        rows, sizes = input_sizes(jobs)
        bounds = {
            "reservoir_bound": key_bound(RESERVOIR_MARGIN * cfg.reservoir_rows, rows),
            "profile_bound": key_bound(PROFILE_MARGIN * jobs[0].profile_rows + PROFILE_EXTRA, rows)
            if jobs
            else None,
        }
        run_partitions([replace(job, **bounds) for job in jobs], workers, cfg.progress, sizes)
        try:
            result = merge([partials], cfg.ruleset, staging.stats_uri)
        except SampleIncomplete:  # too few clean rows under the bound: again without it
            run_partitions(jobs, workers, cfg.progress, sizes)
            result = merge([partials], cfg.ruleset, staging.stats_uri)
        _commit(staged)
    return result


# --- fan-out helpers (cluster pipeline tasks) ---------------------------------------


def process_partition_to(
    raw_uri: str,
    partition_key: str,
    ruleset: RuleSet,
    out_uri: str,
    *,
    seed: int = 0,
    reservoir_rows: int = contract.RESERVOIR_ROWS,
    threads: int = 0,
) -> dict:
    """One fan-out task: write ``out/clean``, ``out/rejected`` and ``out/partials`` for one partition."""
    partition = find_partition(raw_uri, partition_key)
    job = PartitionJob(
        raw_uri=raw_uri,
        partition=partition,
        ruleset=ruleset,
        clean_uri=join_uri(out_uri, "clean"),
        rejected_uri=join_uri(out_uri, "rejected"),
        partials_uri=join_uri(out_uri, "partials"),
        seed=seed,
        reservoir_rows=reservoir_rows,
        threads=threads or os.cpu_count() or 1,
        memory_mb=WORKER_MEMORY_MB,
    )
    return process_partition(job)


def merge_partition_outputs(
    part_uris: Sequence[str], ruleset: RuleSet, clean_uri: str, rejected_uri: str, stats_uri: str
) -> QualityResult:
    """The merge task: gather the fan-out outputs into one clean/rejected data set + statistics."""
    outputs = {"output": clean_uri, "rejected": rejected_uri, "stats": stats_uri}
    with ExitStack() as stack:
        staged = _open_outputs(stack, outputs, overwrite=False)
        roots = {role: out.root_uri for role, out in staged.items()}
        _gather(part_uris, roots)
        result = merge([join_uri(roots["stats"], "partitions")], ruleset, roots["stats"])
        _commit(staged)
    return result


def _gather(part_uris: Sequence[str], roots: dict[str, str]) -> None:
    """Copy the fan-out tasks' files into the (staged) outputs; a file made twice is an error."""
    for uri in part_uris:
        for sub, dest in (
            ("clean", roots["output"]),
            ("rejected", roots["rejected"]),
            ("partials", join_uri(roots["stats"], "partitions")),
        ):
            src_fs, src = resolve_filesystem(join_uri(uri, sub))
            dst_fs, dst = resolve_filesystem(dest)
            for entry in src_fs.get_file_info(pafs.FileSelector(src, recursive=True)):
                if entry.type != pafs.FileType.File:
                    continue
                rel = entry.path[len(src) :].strip("/")
                target = join_uri(dst, rel)
                if dst_fs.get_file_info(target).type != pafs.FileType.NotFound:
                    raise UserError(f"{uri}: {sub}/{rel} was produced by more than one partition task")
                dst_fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
                pafs.copy_files(entry.path, target, source_filesystem=src_fs, destination_filesystem=dst_fs)
