"""Planning: the ingest output's ``year=/month=`` partitions, one unit of work each."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow.fs as pafs

from components.common import contract
from components.common.errors import UserError
from components.common.staged import require_complete
from components.common.storage import resolve_filesystem

from .layout import PARTITION_DIR, join_uri


@dataclass(frozen=True, order=True)
class Partition:
    year: int
    month: int
    path: str = field(default="", compare=False)  # directory relative to the data set root

    @property
    def key(self) -> str:
        """Canonical partition directory: ``year=2015/month=1``."""
        return f"year={self.year}/month={self.month}"

    @classmethod
    def parse(cls, key: str) -> Partition:
        match = PARTITION_DIR.match(key.strip("/"))
        if not match:
            raise UserError(f"{key!r}: expected a partition like 'year=2015/month=1'")
        year, month = int(match["year"]), int(match["month"])
        if not 1 <= month <= 12:
            raise UserError(f"{key!r}: month must be 1-12")
        return cls(year, month, key.strip("/"))


def plan_partitions(raw_uri: str) -> list[Partition]:
    """The ``year=/month=`` partitions holding Parquet files under ``raw_uri``, in order."""
    fs, root = resolve_filesystem(raw_uri)
    info = fs.get_file_info(root)
    if info.type != pafs.FileType.Directory:
        raise UserError(
            f"{raw_uri}: input is not a directory (expected the ingest output, year=/month= Parquet)"
        )
    require_complete(
        raw_uri, contract.INGEST_STEP
    )  # ingest writes _SUCCESS last: never clean a half-written input
    found: dict[tuple[int, int], Partition] = {}
    for entry in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
        if entry.type != pafs.FileType.File or not entry.base_name.endswith(".parquet"):
            continue
        rel = entry.path[len(root) :].strip("/")
        if any(part.startswith((".", "_")) for part in rel.split("/")):
            continue
        parent = rel.rsplit("/", 1)[0] if "/" in rel else ""
        if not PARTITION_DIR.match(parent):
            raise UserError(f"{raw_uri}: {rel}: Parquet file outside a year=YYYY/month=M partition directory")
        part = Partition.parse(parent)
        if (part.year, part.month) in found and found[(part.year, part.month)].path != part.path:
            raise UserError(
                f"{raw_uri}: partition {part.key} appears twice ({found[(part.year, part.month)].path}, {part.path})"
            )
        found[(part.year, part.month)] = part
    if not found:
        raise UserError(
            f"{raw_uri}: no Parquet files under year=YYYY/month=M directories (is this the ingest output?)"
        )
    return sorted(found.values())


def find_partition(raw_uri: str, partition_key: str) -> Partition:
    """One partition of ``raw_uri`` by key, listing only its own directory (a fan-out task
    must not list the whole raw tree: on S3 that is one full listing per partition)."""
    wanted = Partition.parse(partition_key)
    fs, root = resolve_filesystem(raw_uri)
    found: list[Partition] = []
    for rel in dict.fromkeys((wanted.path, wanted.key, f"year={wanted.year}/month={wanted.month:02d}")):
        where = join_uri(root, rel)
        if fs.get_file_info(where).type != pafs.FileType.Directory:
            continue
        for entry in fs.get_file_info(pafs.FileSelector(where, recursive=True)):
            sub = entry.path[len(where) :].strip("/")
            if (
                entry.type == pafs.FileType.File
                and entry.base_name.endswith(".parquet")
                and not any(part.startswith((".", "_")) for part in sub.split("/"))
            ):
                if "/" in sub:
                    raise UserError(
                        f"{raw_uri}: {rel}/{sub}: Parquet file outside a year=YYYY/month=M partition directory"
                    )
                found.append(Partition(wanted.year, wanted.month, rel))
                break
    if not found:
        raise UserError(f"{raw_uri}: no partition {partition_key}")
    if len(found) > 1:
        raise UserError(f"{raw_uri}: partition {wanted.key} appears twice ({found[0].path}, {found[1].path})")
    return found[0]
