"""The data contract: what each step reads and writes.

Single source of truth for column names and Arrow schemas. Every component
imports from here; nothing else spells a column name as a literal.

raw   -- ingest output: the 27 DC taxi columns, typed (syntax checked, not meaning),
         plus lineage (source_file, source_line). Hive-partitioned by year=/month=.
quarantine -- ingest rows that could not be parsed: where they came from, the raw
         line and the reason.
clean -- quality output: typed features ready for training.
"""

from __future__ import annotations

import pyarrow as pa

# --- raw files -----------------------------------------------------------------

DELIMITER = "|"
NULL_TOKEN = "NULL"
# Month-first, rounded to the hour in the real files: "01/12/2015 12:42".
TIMESTAMP_FORMAT = "%m/%d/%Y %H:%M"
# Monthly text files and yearly archives as published by DC open data.
MONTH_FILE_PATTERN = r"taxi_(?P<year>\d{4})_(?P<month>\d{2})\.txt"
YEAR_ARCHIVE_PATTERN = r"taxi_(?P<year>\d{4})\.zip"

RAW_COLUMNS: tuple[str, ...] = (
    "OBJECTID",
    "TRIPTYPE",
    "PROVIDERNAME",
    "FAREAMOUNT",
    "GRATUITYAMOUNT",
    "SURCHARGEAMOUNT",
    "EXTRAFAREAMOUNT",
    "TOLLAMOUNT",
    "TOTALAMOUNT",
    "PAYMENTTYPE",
    "ORIGINCITY",
    "ORIGINSTATE",
    "ORIGINZIP",
    "DESTINATIONCITY",
    "DESTINATIONSTATE",
    "DESTINATIONZIP",
    "MILEAGE",
    "DURATION",
    "ORIGIN_BLOCK_LATITUDE",
    "ORIGIN_BLOCK_LONGITUDE",
    "ORIGIN_BLOCKNAME",
    "DESTINATION_BLOCK_LATITUDE",
    "DESTINATION_BLOCK_LONGITUDE",
    "DESTINATION_BLOCKNAME",
    "AIRPORT",
    "ORIGINDATETIME_TR",
    "DESTINATIONDATETIME_TR",
)
HEADER_LINE = DELIMITER.join(RAW_COLUMNS)

MONEY_COLUMNS = (
    "FAREAMOUNT",
    "GRATUITYAMOUNT",
    "SURCHARGEAMOUNT",
    "EXTRAFAREAMOUNT",
    "TOLLAMOUNT",
    "TOTALAMOUNT",
)
COORDINATE_COLUMNS = (
    "ORIGIN_BLOCK_LATITUDE",
    "ORIGIN_BLOCK_LONGITUDE",
    "DESTINATION_BLOCK_LATITUDE",
    "DESTINATION_BLOCK_LONGITUDE",
)
TIMESTAMP_COLUMNS = ("ORIGINDATETIME_TR", "DESTINATIONDATETIME_TR")

# Typed raw schema: the type each field must parse as (ingest checks syntax only).
_RAW_TYPES: dict[str, pa.DataType] = {
    "OBJECTID": pa.int64(),
    "TRIPTYPE": pa.int32(),
    "PROVIDERNAME": pa.string(),
    **{c: pa.float64() for c in MONEY_COLUMNS},
    "PAYMENTTYPE": pa.int32(),
    "ORIGINCITY": pa.string(),
    "ORIGINSTATE": pa.string(),
    "ORIGINZIP": pa.string(),
    "DESTINATIONCITY": pa.string(),
    "DESTINATIONSTATE": pa.string(),
    "DESTINATIONZIP": pa.string(),
    "MILEAGE": pa.float64(),
    "DURATION": pa.float64(),  # minutes
    **{c: pa.float64() for c in COORDINATE_COLUMNS},
    "ORIGIN_BLOCKNAME": pa.string(),
    "DESTINATION_BLOCKNAME": pa.string(),
    "AIRPORT": pa.string(),
    **{c: pa.timestamp("s") for c in TIMESTAMP_COLUMNS},
}

SOURCE_FILE = "source_file"  # file name (archive member as "taxi_2015.zip!taxi_2015_01.txt")
SOURCE_LINE = "source_line"  # 1-based physical line number in that file (header is line 1)

RAW_SCHEMA = pa.schema(
    [pa.field(c, _RAW_TYPES[c]) for c in RAW_COLUMNS]
    + [pa.field(SOURCE_FILE, pa.string()), pa.field(SOURCE_LINE, pa.int64())]
)
# Partition keys of the raw and clean datasets (hive style: year=2015/month=1/).
# The pick-up month; rows with no pick-up time take the month of their source file
# (taxi_YYYY_MM.txt), so every row has a partition.
PARTITION_COLUMNS = ("year", "month")
PARTITION_SCHEMA = pa.schema([pa.field("year", pa.int16()), pa.field("month", pa.int8())])

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field(SOURCE_FILE, pa.string()),
        pa.field(SOURCE_LINE, pa.int64()),
        pa.field("raw_line", pa.binary()),  # bytes as read (may be invalid UTF-8)
        pa.field("reason", pa.string()),  # e.g. "FAREAMOUNT: not a number: '12,3'"
    ]
)

# --- clean features (quality output) -------------------------------------------

LABEL = "fare"
PICKUP = "pickup_datetime"
CLEAN_SCHEMA = pa.schema(
    [
        pa.field("objectid", pa.int64()),
        pa.field(LABEL, pa.float64()),
        pa.field(PICKUP, pa.timestamp("s")),
        pa.field("year", pa.int16()),
        pa.field("month", pa.int8()),
        pa.field("weekday", pa.int8()),  # Monday = 0
        pa.field("hour", pa.int8()),
        pa.field("origin_lat", pa.float64()),
        pa.field("origin_lon", pa.float64()),
        pa.field("dest_lat", pa.float64()),
        pa.field("dest_lon", pa.float64()),
        pa.field("distance_km", pa.float64()),  # great-circle origin -> destination
        # Analysis only: not known at prediction time, never a model input.
        pa.field("mileage", pa.float64()),
        pa.field("duration", pa.float64()),
    ]
)

# The files the quality step writes: clean files hold CLEAN_SCHEMA minus the partition keys
# (which the path carries); rejected files hold the raw row and the rule that rejected it.
RULE_COLUMN = "rule"
CLEAN_FILE_SCHEMA = pa.schema([f for f in CLEAN_SCHEMA if f.name not in PARTITION_COLUMNS])
REJECTED_SCHEMA = RAW_SCHEMA.append(pa.field(RULE_COLUMN, pa.string()))
# What a rider knows before the trip (plus derived distance): the model inputs.
FEATURES: tuple[str, ...] = (
    "origin_lat",
    "origin_lon",
    "dest_lat",
    "dest_lon",
    "distance_km",
    "year",
    "month",
    "weekday",
    "hour",
)

# The step names in the _SUCCESS markers of the outputs (components.common.staged) that one
# step hands the next: ingest's raw Parquet, quality's clean/rejected/stats ({"role": ...}).
INGEST_STEP = "ingest"
QUALITY_STEP = "quality"

# --- population statistics (quality -> sample) --------------------------------
# An artifact directory holding:
#   stats.json        {"rows": N, "columns": {col: {"count","mean","std","min","max"}}}
#                     for LABEL and every FEATURES column, computed over all clean rows.
#   reservoir.parquet a uniform random sample (at most RESERVOIR_ROWS rows) of the clean
#                     rows, CLEAN_SCHEMA columns, for distribution tests.
POPULATION_STATS_FILE = "stats.json"
POPULATION_RESERVOIR_FILE = "reservoir.parquet"
RESERVOIR_ROWS = 100_000

# --- DC facts (see DESIGN.md "Data contract") ------------------------------------
DC_LAT_RANGE = (38.8114, 38.9949)
DC_LON_RANGE = (-77.1136, -76.9100)
FLAG_DROP = 3.25
PER_MILE = 2.16
FARE_RANGE = (3.25, 180.0)
