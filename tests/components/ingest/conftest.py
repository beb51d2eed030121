"""Fixtures and helpers for the ingest tests: hand-made trip files and a generated data set."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from components.common import contract
from components.ingest import core

# One valid row, field by field (values in the real files' style).
GOOD = {
    "OBJECTID": "1",
    "TRIPTYPE": "1",
    "PROVIDERNAME": "Transco",
    "FAREAMOUNT": "13.52",
    "GRATUITYAMOUNT": "0.00",
    "SURCHARGEAMOUNT": "0.25",
    "EXTRAFAREAMOUNT": "0.00",
    "TOLLAMOUNT": "0.00",
    "TOTALAMOUNT": "13.77",
    "PAYMENTTYPE": "1",
    "ORIGINCITY": "WASHINGTON",
    "ORIGINSTATE": "DC",
    "ORIGINZIP": "20036",
    "DESTINATIONCITY": "WASHINGTON",
    "DESTINATIONSTATE": "DC",
    "DESTINATIONZIP": "20009",
    "MILEAGE": "1.68",
    "DURATION": "20",
    "ORIGIN_BLOCK_LATITUDE": "38.9104",
    "ORIGIN_BLOCK_LONGITUDE": "-77.0498",
    "ORIGIN_BLOCKNAME": "1800 - 1899 BLOCK OF 28TH ST NW",
    "DESTINATION_BLOCK_LATITUDE": "38.9258",
    "DESTINATION_BLOCK_LONGITUDE": "-77.0498",
    "DESTINATION_BLOCKNAME": "2800 - 2899 BLOCK OF NEWTON ST NW",
    "AIRPORT": "N",
    "ORIGINDATETIME_TR": "01/13/2015 15:00",
    "DESTINATIONDATETIME_TR": "01/13/2015 16:00",
}
assert tuple(GOOD) == contract.RAW_COLUMNS


def row(objectid: int = 1, **fields: str) -> str:
    """A data line: the GOOD row with OBJECTID and any fields replaced."""
    values = {**GOOD, "OBJECTID": str(objectid), **fields}
    return contract.DELIMITER.join(values[c] for c in contract.RAW_COLUMNS)


def write_file(path: Path, lines: list[str | bytes], *, newline: bytes = b"\n", header: bool = True) -> Path:
    """Write ``lines`` (after the header) each ended by ``newline``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = [contract.HEADER_LINE.encode()] if header else []
    body += [x if isinstance(x, bytes) else x.encode() for x in lines]
    path.write_bytes(b"".join(x + newline for x in body))
    return path


# The summary's row accounting: what two runs of the same input must agree on.
COUNT_KEYS = ("rows_read", "rows_written", "rows_quarantined", "blank_lines", "quarantine_reasons")


def run(source, output, **kwargs) -> dict:
    return core.run(
        core.IngestConfig(source_uri=str(source), output_uri=str(output), progress=False, **kwargs)
    )


def read_raw(output) -> pa.Table:
    """All raw rows with their partition keys, in (source_file, source_line) order."""
    schema = pa.unify_schemas([contract.RAW_SCHEMA, contract.PARTITION_SCHEMA])
    dataset = ds.dataset(
        str(output),
        schema=schema,
        format="parquet",
        partitioning=ds.partitioning(contract.PARTITION_SCHEMA, flavor="hive"),
    )
    table = dataset.to_table()
    return table.sort_by([(contract.SOURCE_FILE, "ascending"), (contract.SOURCE_LINE, "ascending")])


def read_quarantine(path) -> pa.Table:
    return pq.read_table(str(path))


def quarantine_of(output) -> pa.Table:
    return read_quarantine(Path(output) / "_quarantine" / "part-00000.parquet")


def assert_invariant(summary: dict) -> None:
    assert summary["rows_read"] == summary["rows_written"] + summary["rows_quarantined"]
    assert summary["invariant_holds"] is True


@pytest.fixture(scope="session")
def generated(tmp_path_factory) -> Path:
    """20k generated rows over two months as taxi_2015_MM.txt files."""
    from components.generate import core as generate_core

    out = tmp_path_factory.mktemp("generated")
    generate_core.run(
        generate_core.GenerateConfig(output_uri=str(out), rows=20_000, months="2015-01:2015-02", seed=3)
    )
    return out


@pytest.fixture(scope="session")
def generated_zip(tmp_path_factory) -> Path:
    """The same 20k rows as a yearly archive taxi_2015.zip."""
    from components.generate import core as generate_core

    out = tmp_path_factory.mktemp("generated_zip")
    generate_core.run(
        generate_core.GenerateConfig(
            output_uri=str(out), rows=20_000, months="2015-01:2015-02", seed=3, zip=True
        )
    )
    return out


@pytest.fixture(scope="session")
def months(tmp_path_factory) -> Path:
    """Three generated months (defects included) and a hand-made April file holding a March
    trip (its row lands in year=2015/month=3, which the March file's task writes too), an
    unparsable row and a blank line."""
    from components.generate import core as generate_core

    out = tmp_path_factory.mktemp("months")
    generate_core.run(
        generate_core.GenerateConfig(output_uri=str(out), rows=9_000, months="2015-01:2015-03", seed=11)
    )
    write_file(
        out / "taxi_2015_04.txt",
        [
            row(900_001, ORIGINDATETIME_TR="04/02/2015 08:00", DESTINATIONDATETIME_TR="04/02/2015 08:00"),
            row(900_002, ORIGINDATETIME_TR="03/31/2015 23:00", DESTINATIONDATETIME_TR="04/01/2015 00:00"),
            row(900_003, FAREAMOUNT="twelve"),
            "",
            row(900_004, ORIGINDATETIME_TR="NULL"),
        ],
    )
    return out
