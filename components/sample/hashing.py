"""Stable, vectorised 64-bit hashing of a trip's identity.

The trip key is (objectid, pickup_datetime, origin_lat, origin_lon, dest_lat, dest_lon,
fare): OBJECTID alone is a row number inside one monthly file, so it is combined with
the fields that identify the trip itself. Each field becomes 64 bits (integers as
int64, the timestamp as int64 seconds since the epoch, floats as their IEEE-754 bits
with -0.0 folded into 0.0 and every NaN into one NaN, nulls as a fixed sentinel), and
the fields are combined with the SplitMix64 finaliser:

    h = mix(seed XOR salt)
    for i, bits in enumerate(fields):
        h = mix(h XOR mix(bits + (i + 1) * 0x9E3779B97F4A7C15))

``mix`` is SplitMix64's output function (Steele, Lea & Flood 2014). Everything is
plain uint64 arithmetic in numpy, so the value of a trip's hash depends only on its
key, the seed and the salt: not on row order, batch boundaries, platform, process
or library version (unlike DuckDB's ``hash()``, whose values are not a stable API).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from components.common import contract

# The fields that identify a trip, in hashing order.
KEY_COLUMNS: tuple[str, ...] = (
    "objectid",
    contract.PICKUP,
    "origin_lat",
    "origin_lon",
    "dest_lat",
    "dest_lon",
    contract.LABEL,
)
_missing = set(KEY_COLUMNS) - set(contract.CLEAN_SCHEMA.names)
assert not _missing, f"trip key columns not in CLEAN_SCHEMA: {_missing}"

# Salts keep the two uses of the key independent: membership in the sample, and split.
SAMPLE_SALT = 0x53414D504C45  # "SAMPLE"
SPLIT_SALT = 0x53504C4954  # "SPLIT"

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_NULL_BITS = np.uint64(0xFFF8DEADBEEF0001)  # sentinel for a missing key field
_NAN = np.float64("nan")


def mix_int(x: int) -> int:
    """SplitMix64 finaliser on a Python int (used for the seed)."""
    x &= _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on a uint64 array (returns a new array; wraps modulo 2^64)."""
    x = x ^ (x >> np.uint64(30))
    x *= _M1
    x ^= x >> np.uint64(27)
    x *= _M2
    x ^= x >> np.uint64(31)
    return x


def column_bits(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The 64 bits hashed for one key field, one uint64 per row."""
    typ = column.type
    valid = None
    if column.null_count:
        valid = np.asarray(pc.is_valid(column).to_numpy(zero_copy_only=False), dtype=bool)
    if pa.types.is_floating(typ):
        values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64, copy=True)
        values += 0.0  # -0.0 -> 0.0
        values[np.isnan(values)] = _NAN  # one NaN bit pattern
        bits = values.view(np.uint64)
    elif pa.types.is_timestamp(typ):
        seconds = pc.cast(pc.cast(column, pa.timestamp("s")), pa.int64())
        bits = pc.fill_null(seconds, 0).to_numpy(zero_copy_only=False).astype(np.int64).view(np.uint64)
    elif pa.types.is_integer(typ):
        ints = pc.fill_null(pc.cast(column, pa.int64()), 0)
        bits = ints.to_numpy(zero_copy_only=False).astype(np.int64).view(np.uint64)
    else:
        raise TypeError(f"cannot hash a key field of type {typ}")
    if valid is not None:
        bits = bits.copy()
        bits[~valid] = _NULL_BITS
    return np.ascontiguousarray(bits, dtype=np.uint64)


def trip_hash(table: pa.Table | pa.RecordBatch, seed: int, salt: int) -> np.ndarray:
    """uint64 hash of every row's trip key under (seed, salt)."""
    h = np.full(table.num_rows, mix_int(seed ^ salt), dtype=np.uint64)
    for i, name in enumerate(KEY_COLUMNS):
        bits = column_bits(table.column(name))
        bits += np.uint64(((i + 1) * _GOLDEN) & _MASK)
        h ^= mix64(bits)
        h = mix64(h)
    return h


def unit_interval(h: np.ndarray) -> np.ndarray:
    """Map uint64 hashes to floats uniform on [0, 1) (top 53 bits)."""
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
