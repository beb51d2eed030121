"""The request fields a trip is given by, and the shape checks every request passes first.

A trip names each of the six fields once, by its raw column name (``ORIGIN_BLOCK_LATITUDE`` ...)
or its clean name (``origin_lat`` ...), and nothing else; the same rule for v1 records and v2
inputs. A request holds at most :data:`MAX_ROWS` trips. Every refusal is a ``UserError`` naming
the instance and field. See docs/serve.md ("v1 protocol", "v2 (open inference) protocol").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from components.common import contract, features
from components.common.errors import UserError

# Input names a v2 request may use: the raw column names (what check_inference.py sends)
# and, like the records, the clean column names. Each field may be named only once.
FIELD_NAMES: dict[str, str] = {**features.REQUEST_FIELDS, features.REQUEST_TIME: contract.PICKUP}
CLEAN_TO_RAW: dict[str, str] = {clean: raw for raw, clean in FIELD_NAMES.items()}
ACCEPTED_NAMES: frozenset[str] = frozenset(FIELD_NAMES) | frozenset(FIELD_NAMES.values())
_RAW_NAMES: frozenset[str] = frozenset(FIELD_NAMES)
MAX_ROWS = 100_000  # trips per request: a bigger batch is a scoring job, not a request (HTTP 400)


def check_size(n: int) -> None:
    if n > MAX_ROWS:
        raise UserError(f"{n} trips in one request; at most {MAX_ROWS} (split the batch)")


def decoded_text(value, index: int, name: str):
    """BYTES tensor elements arrive as ``bytes``; the encoder reads ``str``."""
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise UserError(f"instance {index}: field {name}: expected UTF-8 text, got {value!r}") from None
    return value


def texts_decoded(lists: dict[str, list]) -> dict[str, list]:
    """``lists`` with a pick-up time given as UTF-8 ``bytes`` (v2 BYTES) as ``str``; as given
    where that fails (the trip-by-trip reading then names the element)."""
    texts = lists.get(features.REQUEST_TIME)
    if texts is None or not any(type(t) is bytes for t in texts):
        return lists
    try:
        decoded = [t.decode("utf-8") if type(t) is bytes else t for t in texts]
    except UnicodeDecodeError:
        return lists
    return {**lists, features.REQUEST_TIME: decoded}


def as_list(values, name: str) -> list:
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise UserError(
                f"input {name}: expected a 1-D tensor (one value per trip), got shape {list(values.shape)}"
            )
        return values.tolist()  # numpy scalars -> Python int/float/bytes/str
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise UserError(f"input {name}: expected a list with one value per trip, got {type(values).__name__}")
    return list(values)


def record_field(record: Mapping, clean: str) -> str:
    """The name a record used for a field (raw or clean), for messages."""
    raw = CLEAN_TO_RAW[clean]
    return raw if raw in record or clean not in record else clean


def _refuse_unknown(names, what: str, expected: str) -> None:
    """One line naming every name that is neither a raw nor a clean field name (v1 and v2)."""
    unknown = sorted(str(k) for k in names if k not in ACCEPTED_NAMES)
    if unknown:
        raise UserError(
            f"{what} {', '.join(unknown)}; expected {expected} "
            f"(or the clean names {', '.join(FIELD_NAMES.values())})"
        )


def _refuse_both(names, raw: str, clean: str, what: str) -> None:
    """A field named twice, by its raw and its clean name (v1 and v2)."""
    if raw in names and clean in names:
        raise UserError(f"{what} {raw} and {clean} name the same field; send one of them")


def check_record_keys(records: Sequence) -> None:
    """Each record names each field once and nothing else (the v2 inputs' rule, for v1)."""
    if all(type(r) is dict and r.keys() == _RAW_NAMES for r in records):
        return  # the common case: every record holds exactly the raw names
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise UserError(f"instance {i}: expected an object of trip fields, got {type(record).__name__}")
        if len(record) == len(FIELD_NAMES) and all(k in FIELD_NAMES for k in record):
            continue  # the common case: exactly the raw names
        _refuse_unknown(record, f"instance {i}: unknown field(s)", ", ".join(FIELD_NAMES))
        for raw, clean in FIELD_NAMES.items():
            _refuse_both(record, raw, clean, f"instance {i}: fields")


def check_column_names(columns: Mapping) -> None:
    """v2 inputs name each field once (raw or clean name) and nothing else."""
    if not columns:
        raise UserError(f"no inputs; expected one per field: {', '.join(FIELD_NAMES)}")
    _refuse_unknown(columns, "unknown input(s)", f"one per field: {', '.join(FIELD_NAMES)}")
    for raw, clean in FIELD_NAMES.items():
        _refuse_both(columns, raw, clean, "inputs")
        if raw not in columns and clean not in columns:
            raise UserError(
                f"missing input {raw} (or {clean}); expected one per field: {', '.join(FIELD_NAMES)}"
            )
