"""Build small raw (ingest-output) data sets with controllable defects for quality tests.

``raw_table`` returns contract.RAW_SCHEMA rows for one source month; ``defects`` maps a
defect name to how many rows get it (each defect hits distinct rows, chosen from the
start so expected counts are exact). ``write_raw`` writes hive partitions like ingest
does: by pick-up month, or the source file's month when the pick-up time is missing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from components.common import contract

DEFECTS = (
    "missing_pickup_time",
    "missing_fare",
    "missing_origin_coordinates",
    "missing_destination_coordinates",
    "fare_out_of_range",
    "coordinates_outside_dc",
    "pickup_outside_file_month",
    "dropoff_before_pickup",
    "duplicate_trip",
)


def raw_table(
    rows: int, year: int, month: int, *, seed: int = 0, defects: dict[str, int] | None = None
) -> pa.Table:
    rng = np.random.default_rng(seed + 1000 * year + month)
    defects = dict(defects or {})
    assert sum(defects.values()) <= rows, "more defects than rows"
    start = datetime(year, month, 1)
    days = (datetime(year + month // 12, month % 12 + 1, 1) - start).days
    pickup = [
        start + timedelta(days=int(d), hours=int(h))
        for d, h in zip(rng.integers(0, days, rows), rng.integers(0, 24, rows), strict=True)
    ]
    duration = rng.uniform(3, 60, rows).round(0)
    dropoff = [p + timedelta(minutes=float(m)) for p, m in zip(pickup, duration, strict=True)]
    lat0, lat1 = contract.DC_LAT_RANGE
    lon0, lon1 = contract.DC_LON_RANGE
    cols: dict[str, list] = {
        "OBJECTID": list(range(year * 10**7 + month * 10**5, year * 10**7 + month * 10**5 + rows)),
        "TRIPTYPE": [1] * rows,
        "PROVIDERNAME": rng.choice(["Transco", "Yellow", "Lyft"], rows).tolist(),
        "FAREAMOUNT": rng.uniform(3.25, 60, rows).round(2).tolist(),
        "GRATUITYAMOUNT": [0.0] * rows,
        "SURCHARGEAMOUNT": [0.25] * rows,
        "EXTRAFAREAMOUNT": [0.0] * rows,
        "TOLLAMOUNT": [0.0] * rows,
        "TOTALAMOUNT": [None] * rows,
        "PAYMENTTYPE": [1] * rows,
        "ORIGINCITY": ["WASHINGTON"] * rows,
        "ORIGINSTATE": ["DC"] * rows,
        "ORIGINZIP": ["20001"] * rows,
        "DESTINATIONCITY": ["WASHINGTON"] * rows,
        "DESTINATIONSTATE": ["DC"] * rows,
        "DESTINATIONZIP": [None] * rows,
        "MILEAGE": rng.uniform(0.1, 15, rows).round(2).tolist(),
        "DURATION": duration.tolist(),
        "ORIGIN_BLOCK_LATITUDE": rng.uniform(lat0, lat1, rows).round(4).tolist(),
        "ORIGIN_BLOCK_LONGITUDE": rng.uniform(lon0, lon1, rows).round(4).tolist(),
        "ORIGIN_BLOCKNAME": ["1ST ST NW"] * rows,
        "DESTINATION_BLOCK_LATITUDE": rng.uniform(lat0, lat1, rows).round(4).tolist(),
        "DESTINATION_BLOCK_LONGITUDE": rng.uniform(lon0, lon1, rows).round(4).tolist(),
        "DESTINATION_BLOCKNAME": ["K ST NW"] * rows,
        "AIRPORT": ["N"] * rows,
        "ORIGINDATETIME_TR": pickup,
        "DESTINATIONDATETIME_TR": dropoff,
        contract.SOURCE_FILE: [f"taxi_{year}.zip!taxi_{year}_{month:02d}.txt"] * rows,
        contract.SOURCE_LINE: list(range(2, rows + 2)),
    }
    cols["TOTALAMOUNT"] = [round(f + 0.25, 2) for f in cols["FAREAMOUNT"]]
    i = 0
    for name in DEFECTS:
        for _ in range(defects.pop(name, 0)):
            if name == "missing_pickup_time":
                cols["ORIGINDATETIME_TR"][i] = None
            elif name == "missing_fare":
                cols["FAREAMOUNT"][i] = None
            elif name == "missing_origin_coordinates":
                cols["ORIGIN_BLOCK_LONGITUDE"][i] = None
            elif name == "missing_destination_coordinates":
                cols["DESTINATION_BLOCK_LATITUDE"][i] = None
            elif name == "fare_out_of_range":
                cols["FAREAMOUNT"][i] = -12.5 if i % 2 else 745557.28
            elif name == "coordinates_outside_dc":
                cols["DESTINATION_BLOCK_LATITUDE"][i] = 0.0
            elif name == "pickup_outside_file_month":
                # what a day-first parse of "MM/DD" with DD <= 12 does to a timestamp: it stays in
                # the same partition directory only if mis-filed; here it moves to another month
                p = cols["ORIGINDATETIME_TR"][i]
                cols["ORIGINDATETIME_TR"][i] = p.replace(month=month % 12 + 1, day=min(p.day, 28))
                cols["DESTINATIONDATETIME_TR"][i] = cols["ORIGINDATETIME_TR"][i] + timedelta(minutes=10)
            elif name == "dropoff_before_pickup":
                cols["DESTINATIONDATETIME_TR"][i] = cols["ORIGINDATETIME_TR"][i] - timedelta(hours=2)
            elif name == "duplicate_trip":
                # a copy of the last row (a clean one), under a new OBJECTID and line
                for col in cols:
                    if col not in ("OBJECTID", contract.SOURCE_LINE):
                        cols[col][i] = cols[col][rows - 1]
            i += 1
    assert not defects, f"unknown defects {sorted(defects)}"
    return pa.table(cols, schema=contract.RAW_SCHEMA)


def partition_of(table: pa.Table) -> list[tuple[int, int]]:
    """(year, month) per row: pick-up month, else the source file's month (as ingest does)."""
    out = []
    for ts, src in zip(
        table.column("ORIGINDATETIME_TR").to_pylist(),
        table.column(contract.SOURCE_FILE).to_pylist(),
        strict=True,
    ):
        if ts is not None:
            out.append((ts.year, ts.month))
        else:
            stem = src.rsplit("taxi_", 1)[1]
            out.append((int(stem[:4]), int(stem[5:7])))
    return out


def write_raw(root: Path, tables: list[pa.Table], *, files_per_partition: int = 1) -> Path:
    """Write hive partitions ``root/year=Y/month=M/part-N.parquet`` (RAW_SCHEMA, no key columns)."""
    table = pa.concat_tables(tables)
    keys = partition_of(table)
    for key in sorted(set(keys)):
        mask = pa.array([k == key for k in keys])
        part = table.filter(mask)
        d = root / f"year={key[0]}" / f"month={key[1]}"
        d.mkdir(parents=True, exist_ok=True)
        for n, chunk in enumerate(np.array_split(np.arange(part.num_rows), files_per_partition)):
            if len(chunk):
                pq.write_table(part.take(pa.array(chunk)), d / f"part-{n}.parquet")
    (root / "_SUCCESS").write_text('{"step": "ingest"}')  # complete, as ingest marks its output last
    return root
