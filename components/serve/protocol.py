"""Request bodies -> trips, strictly, for both protocols; no KServe import (tested on its own).

Every way a body can be wrong is a ``UserError`` naming the key, input or element and what was
expected, so the server answers 400 ``{"error": ...}`` -- never a 5xx, never a 200 for a body it
had to guess at. The rules are the same for v1 and v2:

- JSON is parsed with orjson (nesting deeper than 1024 levels, numbers beyond a double, invalid
  UTF-8 are refused); a key given twice in one object is refused on both protocols;
- keys the protocol does not define are refused (v1: ``instances``; v2: ``id``, ``parameters``,
  ``inputs``, ``outputs``; each input: ``name``, ``shape``, ``datatype``, ``parameters``, ``data``);
- v2 coordinates must be FP64 or FP32 (an integer datatype would truncate 38.9 to 38), the
  pick-up time BYTES; shape ``[n]`` or ``[n, 1]`` with exactly that many elements;
- the binary tensor extension (``Inference-Header-Content-Length`` + ``binary_data_size``) is
  checked byte for byte: the header must be an integer within the body, each size a multiple of
  the element size, and the sizes must add up to the rest of the body.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import orjson

from components.common import features
from components.common.errors import UserError

from .fields import FIELD_NAMES

OUTPUT_NAME = "fare"
OUTPUT_DATATYPE = "FP64"
COORDINATE_DATATYPES = {"FP64": "<f8", "FP32": "<f4"}
TIME_DATATYPE = "BYTES"
_TIME_NAMES = frozenset((features.REQUEST_TIME, FIELD_NAMES[features.REQUEST_TIME]))
V1_KEYS = ("instances",)
V2_KEYS = ("id", "parameters", "inputs", "outputs")
V2_INPUT_KEYS = ("name", "shape", "datatype", "parameters", "data")
V2_OUTPUT_KEYS = ("name", "parameters")
_KEY_END = re.compile(rb'"\s*:')  # where a key ends, outside strings (and rarely inside one)
_SPACED_KEY_END = re.compile(rb'"\s+:')
_FEW_VALUES = 16


# --- JSON ------------------------------------------------------------------------------------


def _key_ends(body: bytes) -> int:
    """How often a quote, optional whitespace and a colon occur in ``body``: at least once per
    key of every object in it."""
    if _SPACED_KEY_END.search(body) is None:  # the usual body: every key ends with `":`
        return body.count(b'":')
    return len(_KEY_END.findall(body))


def _keys_shallow(doc) -> int:
    """Keys of ``doc``, of the objects among its values and of the objects in its list values --
    a v1 body's trips and a v2 body's inputs -- without walking further (so at most all keys)."""
    if not isinstance(doc, dict):
        return 0
    count = len(doc)
    for value in doc.values():
        if isinstance(value, dict):
            count += len(value)
        elif isinstance(value, list):
            count += sum(len(item) for item in value if isinstance(item, dict))
    return count


def _keys_counted(doc) -> int:
    """Keys of every object in ``doc``; lists whose first element is a scalar are not walked (a
    miss only under-counts, which sends the body to the exact duplicate check)."""
    count, stack = 0, [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            count += len(item)
            stack.extend(v for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list) and item and isinstance(item[0], dict | list):
            stack.extend(v for v in item if isinstance(v, dict | list))
    return count


def _refuse_duplicates(pairs: list[tuple[str, object]]) -> dict:
    seen: dict = {}
    for key, value in pairs:
        if key in seen:
            raise UserError(f"request body: key {key!r} given twice in one object; send each key once")
        seen[key] = value
    return seen


def loads(body: bytes):
    """The JSON document in ``body``; a ``UserError`` for invalid JSON or a key given twice."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise UserError(f"request body: not valid JSON ({err})") from None
    # Each key in the text ends with `"\s*:`, so the text has at least as many key ends as the
    # parsed objects have keys, and more only if a key repeated (or `":` occurs inside a string);
    # a count of the objects' keys that misses some only sends the body to the exact check.
    ends = _key_ends(body)
    if ends != _keys_shallow(doc) and ends != _keys_counted(doc):
        try:
            json.loads(body, object_pairs_hook=_refuse_duplicates)
        except RecursionError:
            raise UserError("request body: JSON nested too deeply") from None
    return doc


def _refuse_unknown_keys(obj: Mapping, allowed: tuple[str, ...], where: str, shape: str) -> None:
    unknown = [str(k) for k in obj if k not in allowed]
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; expected {shape}")


# --- v1 --------------------------------------------------------------------------------------


def parse_v1(body: bytes) -> list:
    """The ``instances`` of a v1 body ``{"instances": [trip, ...]}`` (trips checked by the predictor)."""
    doc = loads(body)
    if not isinstance(doc, dict) or "instances" not in doc:
        raise UserError('expected a JSON object {"instances": [trip, ...]}')
    _refuse_unknown_keys(doc, V1_KEYS, "request body", '{"instances": [trip, ...]}')
    return doc["instances"]


# --- v2 --------------------------------------------------------------------------------------


@dataclass
class Tensor:
    """One v2 input as received: JSON ``data`` (a list) or binary ``raw`` bytes."""

    name: str
    datatype: str
    shape: list[int]
    data: list | None = None
    raw: bytes | None = None


@dataclass
class V2Request:
    id: str | None
    inputs: list[Tensor]
    binary_output: bool = False


def _int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _binary_size(params, where: str) -> int | None:
    if params is None:
        return None
    if not isinstance(params, dict):
        raise UserError(f"{where}: parameters: expected an object, got {type(params).__name__}")
    if "binary_data_size" not in params:
        return None
    size = params["binary_data_size"]
    if not _int(size) or size < 0:
        raise UserError(f"{where}: parameters.binary_data_size: expected an integer >= 0, got {size!r}")
    return size


def parse_v2(body: bytes, header_length: str | None = None) -> V2Request:
    """A v2 REST body: JSON, or JSON followed by binary tensors when ``header_length`` (the value
    of ``Inference-Header-Content-Length``) is given."""
    binary = b""
    if header_length is not None:
        text = header_length.strip()
        if not text.isdigit():
            raise UserError(
                f"Inference-Header-Content-Length: expected the JSON header's length in bytes, got {header_length!r}"
            )
        length = int(text)
        if length > len(body):
            raise UserError(
                f"Inference-Header-Content-Length: {length} is longer than the {len(body)}-byte body"
            )
        body, binary = body[:length], body[length:]
    doc = loads(body)
    shape = '{"inputs": [{"name", "shape", "datatype", "data"}, ...]}'
    if not isinstance(doc, dict) or "inputs" not in doc:
        raise UserError(f"expected a JSON object {shape}")
    _refuse_unknown_keys(doc, V2_KEYS, "request body", f"id, parameters, inputs, outputs ({shape})")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise UserError(f"id: expected a string, got {request_id!r}")
    params = doc.get("parameters")
    if params is not None and not isinstance(params, dict):
        raise UserError(f"parameters: expected an object, got {type(params).__name__}")
    binary_output = bool(params and params.get("binary_data_output") is True)
    inputs = doc["inputs"]
    if not isinstance(inputs, list) or not inputs:
        raise UserError(f"inputs: expected a non-empty list of input tensors {shape}")
    tensors, offset = [], 0
    for k, item in enumerate(inputs):
        where = f"inputs[{k}]"
        if not isinstance(item, dict):
            raise UserError(f"{where}: expected an object with name, shape, datatype, data")
        _refuse_unknown_keys(item, V2_INPUT_KEYS, where, "name, shape, datatype, parameters, data")
        for key in ("name", "shape", "datatype"):
            if key not in item:
                raise UserError(f"{where}: missing key {key!r}")
        name, datatype, dims = item["name"], item["datatype"], item["shape"]
        if not isinstance(name, str):
            raise UserError(f"{where}: name: expected a string, got {name!r}")
        if not isinstance(datatype, str):
            raise UserError(f"input {name}: datatype: expected a string, got {datatype!r}")
        if not isinstance(dims, list) or not all(_int(d) and d >= 0 for d in dims):
            raise UserError(f"input {name}: shape: expected a list of integers >= 0, got {dims!r}")
        size = _binary_size(item.get("parameters"), f"input {name}")
        if "data" in item:
            if size is not None:
                raise UserError(f"input {name}: both data and parameters.binary_data_size; send one")
            if not isinstance(item["data"], list):
                raise UserError(f"input {name}: data: expected a list, got {type(item['data']).__name__}")
            tensors.append(Tensor(name, datatype, dims, data=item["data"]))
        elif size is not None:
            if offset + size > len(binary):
                raise UserError(
                    f"input {name}: binary_data_size {size} runs past the end of the body "
                    f"({len(binary) - offset} binary bytes left)"
                )
            tensors.append(Tensor(name, datatype, dims, raw=binary[offset : offset + size]))
            offset += size
        else:
            raise UserError(f"input {name}: missing data (or parameters.binary_data_size)")
    if offset != len(binary):
        raise UserError(
            f"binary tensors: the body has {len(binary) - offset} byte(s) after the last input's "
            "binary_data_size; the sizes must add up to the body"
        )
    outputs = doc.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, list):
            raise UserError(f"outputs: expected a list of {{'name': {OUTPUT_NAME!r}}}, got {outputs!r}")
        for k, out in enumerate(outputs):
            if not isinstance(out, dict) or "name" not in out:
                raise UserError(f"outputs[{k}]: expected an object with a name")
            _refuse_unknown_keys(out, V2_OUTPUT_KEYS, f"outputs[{k}]", "name, parameters")
            if out["name"] != OUTPUT_NAME:
                raise UserError(
                    f"outputs[{k}]: unknown output {out['name']!r}; this model answers {OUTPUT_NAME!r}"
                )
            out_params = out.get("parameters")
            if out_params is not None and not isinstance(out_params, dict):
                raise UserError(f"outputs[{k}]: parameters: expected an object")
            if out_params and "binary_data" in out_params:
                binary_output = out_params["binary_data"] is True
    return V2Request(request_id, tensors, binary_output)


# --- tensors -> columns ----------------------------------------------------------------------


def _bytes_elements(raw: bytes, name: str) -> list[bytes]:
    out, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise UserError(f"input {name}: BYTES data ends inside an element's 4-byte length")
        (n,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + n > len(raw):
            raise UserError(f"input {name}: BYTES element of {n} bytes runs past the end of the data")
        out.append(raw[offset : offset + n])
        offset += n
    return out


def _flat(data: list, rows: int) -> list:
    """``[v, ...]`` or, for shape ``[n, 1]``, ``[[v], ...]``."""
    if data and isinstance(data[0], list):
        if not all(isinstance(v, list) and len(v) == 1 for v in data):
            raise ValueError
        return [v[0] for v in data]
    return data


def _finite_numbers(values: list) -> bool:
    """Whether every value is a finite ``float`` or ``int`` (not bool), checked as one array."""
    if not all(type(v) is float or type(v) is int for v in values):
        return False
    try:
        if len(values) <= _FEW_VALUES:  # math.isfinite costs less than numpy's calls for a few
            return all(map(math.isfinite, values))
        return bool(np.isfinite(np.array(values, dtype=np.float64)).all())
    except OverflowError:  # an int beyond a double
        return False


def tensor_values(tensor: Tensor):
    """The values of one input as a 1-D list or array, checked against its datatype and shape."""
    name, datatype, shape = tensor.name, tensor.datatype, list(tensor.shape)
    if name in FIELD_NAMES.values() or name in FIELD_NAMES:
        expected = (TIME_DATATYPE,) if name in _TIME_NAMES else tuple(COORDINATE_DATATYPES)
        if datatype not in expected:
            why = (
                " (an integer type would truncate 38.9 to 38)" if datatype.startswith(("INT", "UINT")) else ""
            )
            raise UserError(f"input {name}: datatype {datatype}; expected {' or '.join(expected)}{why}")
    if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
        raise UserError(f"input {name}: expected shape [n] or [n, 1] (one value per trip), got {shape}")
    rows = shape[0]
    if tensor.raw is not None:
        raw = tensor.raw
        if datatype == TIME_DATATYPE:
            values = _bytes_elements(raw, name)
        else:
            itemsize = 8 if datatype == "FP64" else 4
            if len(raw) % itemsize:
                raise UserError(
                    f"input {name}: {len(raw)} bytes of {datatype} data is not a multiple of {itemsize} "
                    f"(the size of one {datatype} element)"
                )
            values = np.frombuffer(raw, dtype=COORDINATE_DATATYPES[datatype]).astype(np.float64)
        if len(values) != rows:
            raise UserError(f"input {name}: {len(values)} element(s) of {datatype} data for shape {shape}")
        return values
    try:
        values = _flat(tensor.data, rows)
    except ValueError:
        raise UserError(f"input {name}: data does not fit shape {shape}") from None
    if len(values) != rows:
        raise UserError(
            f"input {name}: {datatype} data does not fit shape {shape} ({len(values)} element(s))"
        )
    if datatype == TIME_DATATYPE:
        if all(isinstance(v, str | bytes) for v in values):
            return values
        for i, v in enumerate(values):
            if not isinstance(v, str | bytes):
                raise UserError(f"input {name}: element {i}: expected a string (BYTES), got {v!r}")
    else:
        if _finite_numbers(values):
            return values
        for i, v in enumerate(values):
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(float(v)):
                raise UserError(
                    f"input {name}: element {i}: expected a finite number ({datatype}), got {v!r}"
                )
    return values


def columns_from_tensors(tensors: list[Tensor]) -> dict[str, list]:
    """Input name -> values; names given twice are refused before any data is read."""
    names = [t.name for t in tensors]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UserError(f"input(s) {', '.join(repeated)} given more than once")
    unknown = sorted(n for n in names if n not in FIELD_NAMES and n not in FIELD_NAMES.values())
    if unknown:  # before decoding, so an odd tensor's data cannot mask the real problem
        raise UserError(
            f"unknown input(s) {', '.join(unknown)}; expected one per field: {', '.join(FIELD_NAMES)} "
            f"(or the clean names {', '.join(FIELD_NAMES.values())})"
        )
    return {t.name: tensor_values(t) for t in tensors}


def v2_response(model_name: str, request_id: str, fares: list[float], binary: bool) -> tuple[bytes, dict]:
    """(body, extra headers) of a v2 response with the one FP64 output ``fare``."""
    output = {"name": OUTPUT_NAME, "shape": [len(fares)], "datatype": OUTPUT_DATATYPE}
    if not binary:
        output["data"] = fares
        return orjson.dumps({"model_name": model_name, "id": request_id, "outputs": [output]}), {}
    raw = np.asarray(fares, dtype="<f8").tobytes()
    output["parameters"] = {"binary_data_size": len(raw)}
    header = orjson.dumps({"model_name": model_name, "id": request_id, "outputs": [output]})
    return header + raw, {"inference-header-content-length": str(len(header))}
