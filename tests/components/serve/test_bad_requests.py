"""A corpus of bad requests over real HTTP and gRPC: each gets its status and one clear
``{"error": ...}`` (small, no echo of the request), and the server answers a good request after it.

Also: a trip the model cannot price is refused (never clipped to a 200), a 4xx is one log line
at INFO (never a traceback), and the gRPC protocol gives the REST messages.
"""

from __future__ import annotations

import json
import socket
import struct
import urllib.parse

import numpy as np
import pytest

from .conftest import MAX_REQUEST_BYTES
from .harness import MODEL, post, post_raw
from .test_core import TRIPS, as_columns, trip

V1 = f"/v1/models/{MODEL}:predict"
V2 = f"/v2/models/{MODEL}/infer"
FIELDS = list(TRIPS[0])
COORDS = FIELDS[:4]


def v1(*trips, **top) -> dict:
    return {"instances": list(trips) or TRIPS, **top}


def with_time(text: str) -> dict:
    return trip(when=text)


def tensors(records=TRIPS, **changes) -> list[dict]:
    """v2 JSON inputs for ``records``; ``changes[name]`` updates (or, if None, drops) one input."""
    out = []
    for name, values in as_columns(records, text=str).items():
        tensor = {"name": name, "shape": [len(values)], "datatype": "BYTES" if name == FIELDS[4] else "FP64"}
        tensor["data"] = values
        if name in changes:
            if changes[name] is None:
                continue
            tensor.update(changes[name])
        out.append(tensor)
    return out


def v2(inputs=None, **top) -> dict:
    return {"inputs": tensors() if inputs is None else inputs, **top}


def binary_body(records=TRIPS, cut: dict | None = None) -> tuple[bytes, dict]:
    """A v2 body with every input as binary data (the binary tensor extension)."""
    header, chunks = [], []
    for name, values in as_columns(records).items():
        if name == FIELDS[4]:
            raw = b"".join(struct.pack("<I", len(v)) + v for v in values)
            datatype = "BYTES"
        else:
            raw, datatype = np.asarray(values, "<f8").tobytes(), "FP64"
        raw = (cut or {}).get(name, lambda r: r)(raw)
        header.append(
            {
                "name": name,
                "shape": [len(values)],
                "datatype": datatype,
                "parameters": {"binary_data_size": len(raw)},
            }
        )
        chunks.append(raw)
    head = json.dumps({"inputs": header}).encode()
    return head + b"".join(chunks), {"Inference-Header-Content-Length": str(len(head))}


def nested(depth: int) -> bytes:
    return b'{"instances": ' + b"[" * depth + b"]" * depth + b"}"


OUT = {"ORIGIN_BLOCK_LATITUDE": 40.7128, "ORIGIN_BLOCK_LONGITUDE": -74.0060}  # New York
BIN_OK, BIN_HEADERS = binary_body()

# (id, method, path, body (dict -> JSON, bytes as is), extra headers, status, error text)
CORPUS = [
    # --- v1: the body ---------------------------------------------------------------------
    ("v1-empty", "POST", V1, {"instances": []}, {}, 400, "instances: empty"),
    ("v1-no-instances", "POST", V1, {"trips": TRIPS}, {}, 400, 'expected a JSON object {"instances"'),
    ("v1-top-level-list", "POST", V1, [TRIPS], {}, 400, 'expected a JSON object {"instances"'),
    ("v1-unknown-top-key", "POST", V1, v1(debug=True), {}, 400, "request body: unknown key(s) debug"),
    (
        "v1-instances-text",
        "POST",
        V1,
        {"instances": "trips"},
        {},
        400,
        "instances: expected a list of trip objects",
    ),
    ("v1-not-json", "POST", V1, b"{not json", {}, 400, "request body: not valid JSON"),
    (
        "v1-plain-text",
        "POST",
        V1,
        b"fare please",
        {"Content-Type": "text/plain"},
        400,
        "request body: not valid JSON",
    ),
    ("v1-nan-literal", "POST", V1, b'{"instances": [NaN]}', {}, 400, "request body: not valid JSON"),
    ("v1-invalid-utf8", "POST", V1, b'{"instances": ["\xff"]}', {}, 400, "request body: not valid JSON"),
    (
        "v1-huge-integer",
        "POST",
        V1,
        b'{"instances": [{"ORIGIN_BLOCK_LATITUDE": 1' + b"0" * 400 + b"}]}",
        {},
        400,
        "request body: not valid JSON (number is infinity",
    ),
    (
        "v1-huge-exponent",
        "POST",
        V1,
        b'{"instances": [{"ORIGIN_BLOCK_LATITUDE": 1e400}]}',
        {},
        400,
        "request body: not valid JSON",
    ),
    ("v1-deep-nesting", "POST", V1, nested(100_000), {}, 400, "request body: not valid JSON"),
    (
        "v1-nested-list-trip",
        "POST",
        V1,
        nested(50),
        {},
        400,
        "instance 0: expected an object of trip fields, got list",
    ),
    (
        "v1-duplicate-key",
        "POST",
        V1,
        b'{"instances": [{"ORIGIN_BLOCK_LATITUDE": 38.9, "ORIGIN_BLOCK_LATITUDE": 0, '
        + json.dumps(trip())[1:].encode()
        + b"]}",
        {},
        400,
        "request body: key 'ORIGIN_BLOCK_LATITUDE' given twice in one object",
    ),
    # --- v1: the trips ----------------------------------------------------------------------
    (
        "v1-missing-field",
        "POST",
        V1,
        v1(trip(), {k: v for k, v in trip().items() if k != COORDS[1]}),
        {},
        400,
        "instance 1: missing field ORIGIN_BLOCK_LONGITUDE (or origin_lon)",
    ),
    (
        "v1-unknown-field",
        "POST",
        V1,
        v1(trip() | {"tip": 2}),
        {},
        400,
        "instance 0: unknown field(s) tip; expected",
    ),
    (
        "v1-raw-and-clean",
        "POST",
        V1,
        v1(trip() | {"origin_lat": 38.9}),
        {},
        400,
        "instance 0: fields ORIGIN_BLOCK_LATITUDE and origin_lat name the same field",
    ),
    (
        "v1-day-first",
        "POST",
        V1,
        v1(with_time("14/03/2018 08:00")),
        {},
        400,
        "instance 0: field ORIGINDATETIME_TR: expected MM/DD/YYYY HH:MM (month first), got '14/03/2018 08:00'",
    ),
    (
        "v1-iso-with-offset",
        "POST",
        V1,
        v1(
            {
                "origin_lat": 38.9,
                "origin_lon": -77.03,
                "dest_lat": 38.91,
                "dest_lon": -77.0,
                "pickup_datetime": "2018-03-14T08:00:00+00:00",
            }
        ),
        {},
        400,
        "instance 0: field pickup_datetime: expected DC local time without a UTC offset",
    ),
    (
        "v1-text-coordinate",
        "POST",
        V1,
        v1(trip(lat2="x")),
        {},
        400,
        "instance 0: field DESTINATION_BLOCK_LATITUDE: expected a number, got 'x'",
    ),
    (
        "v1-bool-coordinate",
        "POST",
        V1,
        v1(trip(lat1=True)),
        {},
        400,
        "instance 0: field ORIGIN_BLOCK_LATITUDE: expected a number, got True",
    ),
    (
        "v1-null-coordinate",
        "POST",
        V1,
        v1(trip(lon2=None)),
        {},
        400,
        "instance 0: field DESTINATION_BLOCK_LONGITUDE: expected a number, got None",
    ),
    (
        "v1-outside-area",
        "POST",
        V1,
        v1(trip(), trip() | OUT),
        {},
        400,
        "instance 1: field ORIGIN_BLOCK_LATITUDE: 40.7128 is outside the service area the model was trained on "
        "(latitude ",
    ),
    (
        "v1-sign-flipped",
        "POST",
        V1,
        v1(trip(lon2=77.0091)),
        {},
        400,
        "instance 0: field DESTINATION_BLOCK_LONGITUDE: 77.0091 is outside the service area",
    ),
    (
        "v1-lat-lon-swapped",
        "POST",
        V1,
        v1(trip(lat1=-77.0365, lon1=38.9007)),
        {},
        400,
        "(latitude and longitude swapped?)",
    ),
    (
        "v1-zero-coordinates",
        "POST",
        V1,
        v1(trip(lat2=0.0, lon2=0.0)),
        {},
        400,
        "instance 0: field DESTINATION_BLOCK_LATITUDE: 0.0 is outside the service area",
    ),
    (
        "v1-clean-name-outside",
        "POST",
        V1,
        v1(
            {
                "origin_lat": 38.9,
                "origin_lon": -78.5,
                "dest_lat": 38.91,
                "dest_lon": -77.0,
                "pickup_datetime": "2018-03-14T08:00:00",
            }
        ),
        {},
        400,
        "instance 0: field origin_lon: -78.5 is outside",
    ),
    (
        "v1-year-after",
        "POST",
        V1,
        v1(with_time("03/14/2031 08:00")),
        {},
        400,
        "instance 0: field ORIGINDATETIME_TR: pick-up year 2031 is outside the years the model can price (2014 to 2020)",
    ),
    (
        "v1-year-before",
        "POST",
        V1,
        v1(with_time("03/14/1999 08:00")),
        {},
        400,
        "pick-up year 1999 is outside",
    ),
    # --- v1: method, model, size --------------------------------------------------------------
    ("v1-get-predict", "GET", V1, None, {}, 405, f"GET {V1}: method not allowed; send POST"),
    ("v1-put-predict", "PUT", V1, v1(), {}, 405, f"PUT {V1}: method not allowed"),
    (
        "v1-unknown-model",
        "POST",
        "/v1/models/other:predict",
        v1(),
        {},
        404,
        f"model other does not exist; this server serves {MODEL}",
    ),
    ("v1-explain", "POST", f"/v1/models/{MODEL}:explain", v1(), {}, 404, f"model {MODEL} has no explainer"),
    # --- v2 JSON ------------------------------------------------------------------------------
    ("v2-no-inputs", "POST", V2, {"data": []}, {}, 400, 'expected a JSON object {"inputs"'),
    ("v2-empty-inputs", "POST", V2, v2([]), {}, 400, "inputs: expected a non-empty list"),
    ("v2-unknown-top-key", "POST", V2, v2(model="x"), {}, 400, "request body: unknown key(s) model"),
    (
        "v2-unknown-tensor-key",
        "POST",
        V2,
        v2(tensors(ORIGIN_BLOCK_LATITUDE={"dtype": "f8"})),
        {},
        400,
        "inputs[0]: unknown key(s) dtype",
    ),
    ("v2-id-not-text", "POST", V2, v2(id=7), {}, 400, "id: expected a string, got 7"),
    (
        "v2-unknown-input",
        "POST",
        V2,
        v2(tensors() + [{"name": "tip", "shape": [3], "datatype": "FP64", "data": [1, 2, 3]}]),
        {},
        400,
        "unknown input(s) tip",
    ),
    (
        "v2-missing-input",
        "POST",
        V2,
        v2(tensors(ORIGIN_BLOCK_LATITUDE=None)),
        {},
        400,
        "missing input ORIGIN_BLOCK_LATITUDE (or origin_lat)",
    ),
    (
        "v2-input-twice",
        "POST",
        V2,
        v2(tensors() + tensors()[:1]),
        {},
        400,
        "input(s) ORIGIN_BLOCK_LATITUDE given more than once",
    ),
    (
        "v2-raw-and-clean",
        "POST",
        V2,
        v2(tensors() + [{"name": "origin_lat", "shape": [3], "datatype": "FP64", "data": [38.9] * 3}]),
        {},
        400,
        "inputs ORIGIN_BLOCK_LATITUDE and origin_lat name the same field",
    ),
    (
        "v2-duplicate-key",
        "POST",
        V2,
        b'{"inputs": [{"name": "ORIGIN_BLOCK_LATITUDE", "name": "tip", "shape": [1], "datatype": "FP64", "data": [1]}]}',
        {},
        400,
        "request body: key 'name' given twice in one object",
    ),
    (
        "v2-int32-coordinates",
        "POST",
        V2,
        v2(tensors(ORIGIN_BLOCK_LATITUDE={"datatype": "INT32", "data": [38, 38, 38]})),
        {},
        400,
        "input ORIGIN_BLOCK_LATITUDE: datatype INT32; expected FP64 or FP32 (an integer type would truncate",
    ),
    (
        "v2-bytes-coordinates",
        "POST",
        V2,
        v2(tensors(DESTINATION_BLOCK_LONGITUDE={"datatype": "BYTES", "data": ["-77.0"] * 3})),
        {},
        400,
        "input DESTINATION_BLOCK_LONGITUDE: datatype BYTES; expected FP64 or FP32",
    ),
    (
        "v2-fp64-time",
        "POST",
        V2,
        v2(tensors(ORIGINDATETIME_TR={"datatype": "FP64", "data": [1.0, 2.0, 3.0]})),
        {},
        400,
        "input ORIGINDATETIME_TR: datatype FP64; expected BYTES",
    ),
    (
        "v2-lengths-differ",
        "POST",
        V2,
        v2(tensors(ORIGIN_BLOCK_LATITUDE={"shape": [2], "data": [38.9, 38.9]})),
        {},
        400,
        "inputs differ in length (ORIGIN_BLOCK_LATITUDE has 2,",
    ),
    (
        "v2-shape-too-long",
        "POST",
        V2,
        v2(tensors(ORIGIN_BLOCK_LATITUDE={"shape": [4]})),
        {},
        400,
        "input ORIGIN_BLOCK_LATITUDE: FP64 data does not fit shape [4] (3 element(s))",
    ),
    (
        "v2-shape-2d",
        "POST",
        V2,
        v2(tensors(ORIGIN_BLOCK_LATITUDE={"shape": [3, 2]})),
        {},
        400,
        "input ORIGIN_BLOCK_LATITUDE: expected shape [n] or [n, 1]",
    ),
    (
        "v2-shape-negative",
        "POST",
        V2,
        v2(tensors(ORIGIN_BLOCK_LATITUDE={"shape": [-1]})),
        {},
        400,
        "input ORIGIN_BLOCK_LATITUDE: shape: expected a list of integers >= 0, got [-1]",
    ),
    (
        "v2-text-in-fp64",
        "POST",
        V2,
        v2(tensors(DESTINATION_BLOCK_LONGITUDE={"data": [-77.0, "east", -77.0]})),
        {},
        400,
        "input DESTINATION_BLOCK_LONGITUDE: element 1: expected a finite number (FP64), got 'east'",
    ),
    (
        "v2-number-in-bytes",
        "POST",
        V2,
        v2(tensors(ORIGINDATETIME_TR={"data": ["03/14/2018 08:00", 5, "x"]})),
        {},
        400,
        "input ORIGINDATETIME_TR: element 1: expected a string (BYTES), got 5",
    ),
    (
        "v2-day-first",
        "POST",
        V2,
        v2(tensors(ORIGINDATETIME_TR={"data": ["03/14/2018 08:00", "2017-07-04 22:00", "11/30/2016 13:00"]})),
        {},
        400,
        "instance 1: field ORIGINDATETIME_TR: expected MM/DD/YYYY HH:MM",
    ),
    (
        "v2-outside-area",
        "POST",
        V2,
        v2(tensors(DESTINATION_BLOCK_LATITUDE={"data": [38.9, 1e30, 38.9]})),
        {},
        400,
        "instance 1: field DESTINATION_BLOCK_LATITUDE: 1e+30 is outside the service area",
    ),
    (
        "v2-year-after",
        "POST",
        V2,
        v2(tensors(ORIGINDATETIME_TR={"data": ["03/14/2018 08:00", "07/04/2040 22:00", "11/30/2016 13:00"]})),
        {},
        400,
        "instance 1: field ORIGINDATETIME_TR: pick-up year 2040 is outside",
    ),
    (
        "v2-unknown-output",
        "POST",
        V2,
        v2(outputs=[{"name": "tip"}]),
        {},
        400,
        "outputs[0]: unknown output 'tip'; this model answers 'fare'",
    ),
    ("v2-get-infer", "GET", V2, None, {}, 405, f"GET {V2}: method not allowed"),
    ("v2-unknown-model", "POST", "/v2/models/other/infer", v2(), {}, 404, "model other does not exist"),
    (
        "v2-versions",
        "POST",
        f"/v2/models/{MODEL}/versions/2/infer",
        v2(),
        {},
        404,
        f"model {MODEL} has no version '2'; it serves version ",
    ),
    # --- v2 binary tensor extension ------------------------------------------------------------
    (
        "v2-header-length-text",
        "POST",
        V2,
        BIN_OK,
        {"Inference-Header-Content-Length": "abc"},
        400,
        "Inference-Header-Content-Length: expected the JSON header's length in bytes, got 'abc'",
    ),
    (
        "v2-header-length-past-body",
        "POST",
        V2,
        BIN_OK,
        {"Inference-Header-Content-Length": str(len(BIN_OK) + 1)},
        400,
        f"Inference-Header-Content-Length: {len(BIN_OK) + 1} is longer than the {len(BIN_OK)}-byte body",
    ),
    (
        "v2-binary-not-element-size",
        "POST",
        V2,
        *binary_body(cut={"ORIGIN_BLOCK_LATITUDE": lambda r: r[:-3]}),
        400,
        "input ORIGIN_BLOCK_LATITUDE: 21 bytes of FP64 data is not a multiple of 8",
    ),
    (
        "v2-binary-too-few-elements",
        "POST",
        V2,
        *binary_body(cut={"ORIGIN_BLOCK_LONGITUDE": lambda r: r[:-8]}),
        400,
        "input ORIGIN_BLOCK_LONGITUDE: 2 element(s) of FP64 data for shape [3]",
    ),
    (
        "v2-binary-bytes-overrun",
        "POST",
        V2,
        *binary_body(cut={"ORIGINDATETIME_TR": lambda r: struct.pack("<I", 999) + r[4:]}),
        400,
        "input ORIGINDATETIME_TR: BYTES element of 999 bytes runs past the end of the data",
    ),
    (
        "v2-binary-trailing-bytes",
        "POST",
        V2,
        BIN_OK + b"\0" * 8,
        BIN_HEADERS,
        400,
        "binary tensors: the body has 8 byte(s) after the last input's binary_data_size",
    ),
    ("v2-binary-size-past-end", "POST", V2, BIN_OK[:-8], BIN_HEADERS, 400, "runs past the end of the body"),
    # --- other routes ------------------------------------------------------------------------
    ("no-such-route", "GET", "/v3/models", None, {}, 404, "/v3/models: no such route"),
    (
        "post-on-health",
        "POST",
        "/v2/health/ready",
        b"{}",
        {},
        405,
        "POST /v2/health/ready: method not allowed",
    ),
]


def _still_answers(server) -> None:
    status, body = post(f"{server.url}{V1}", {"instances": TRIPS[:1]})
    assert status == 200 and len(body["predictions"]) == 1, body
    assert server.process.poll() is None


def test_the_corpus_is_large_and_distinct():
    ids = [case[0] for case in CORPUS]
    assert len(ids) >= 40 and len(set(ids)) == len(ids)


@pytest.fixture(params=["server", "quiet_server"])
def any_server(request):
    """Each REST case against the server with request logging (FastAPI's routing all the way) and
    without (the prediction routes through the fast lane)."""
    return request.getfixturevalue(request.param)


@pytest.mark.parametrize(("method", "path", "body", "headers", "status", "error"), [c[1:] for c in CORPUS],
                         ids=[c[0] for c in CORPUS])  # fmt: skip
def test_a_bad_request_gets_one_clear_error_and_the_server_goes_on(
    any_server, method, path, body, headers, status, error
):
    server = any_server
    code, answer, raw = post_raw(f"{server.url}{path}", body, headers=headers, method=method)
    assert code == status, answer
    assert list(answer) == ["error"] and isinstance(answer["error"], str), answer
    assert error in answer["error"], answer["error"]
    assert len(raw) < 1000  # one message, never the request echoed back
    for leaked in (
        "Traceback",
        "Error:",
        "detail",
        "OverflowError",
        "RecursionError",
        "ValueError",
        "KeyError",
    ):
        assert leaked not in answer["error"], answer["error"]
    _still_answers(server)


def raw_exchange(server, head: bytes, body: bytes = b"") -> tuple[bytes, dict]:
    """Send a hand-made request over a socket; (status line and headers, JSON body) of the reply."""
    host, port = urllib.parse.urlsplit(server.url).netloc.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head + body)
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    headers, _, payload = reply.partition(b"\r\n\r\n")
    return headers, json.loads(payload)


def _head(content_length: int) -> bytes:
    return (
        f"POST {V1} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {content_length}\r\n\r\n"
    ).encode()


def test_a_body_shorter_than_its_content_length_is_a_400_not_a_hang(any_server):
    server = any_server
    headers, answer = raw_exchange(server, _head(500), b'{"instances": [')
    assert headers.startswith(b"HTTP/1.1 400"), headers
    assert answer == {
        "error": "request body: 15 byte(s) arrived, not the 500 bytes its Content-Length announced, within 1 s"
    }
    _still_answers(server)


def test_a_body_over_the_limit_is_a_413_before_it_is_read(any_server):
    server = any_server
    headers, answer = raw_exchange(server, _head(MAX_REQUEST_BYTES + 1))
    assert headers.startswith(b"HTTP/1.1 413") and b"connection: close" in headers.lower(), headers
    assert answer == {
        "error": f"request of {MAX_REQUEST_BYTES + 1} bytes exceeds the limit of {MAX_REQUEST_BYTES} bytes "
        "(--max-request-bytes); split the batch"
    }
    _still_answers(server)


def test_a_trip_outside_the_domain_is_never_clipped_to_a_fare(any_server):
    server = any_server
    """What the server refuses, the model would have answered: a number, clipped to the fare range."""
    far = trip() | OUT
    status, body = post(f"{server.url}{V1}", {"instances": [far]})
    assert status == 400 and "outside the service area" in body["error"]
    status, body = post(f"{server.url}{V1}", {"instances": [trip()]})
    assert status == 200 and 3.25 < body["predictions"][0] < 30


def test_refused_requests_are_one_info_line_each_not_tracebacks(server):
    marker = "instance 0: unknown field(s) log_marker_field"
    status, _ = post(f"{server.url}{V1}", {"instances": [trip() | {"log_marker_field": 1}]})
    assert status == 400
    log = server.log.read_text()
    [line] = [ln for ln in log.splitlines() if marker in ln]
    assert " INFO " in line and f"400 POST {V1}: {marker}" in line
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]


# --- gRPC --------------------------------------------------------------------------------------


def _grpc_infer(server, inputs):
    """(response, error) of one gRPC ModelInfer with ``inputs`` (kserve InferInput objects)."""
    import asyncio

    from kserve import InferenceGRPCClient, InferRequest

    async def ask():
        client = InferenceGRPCClient(server.grpc, timeout=30)
        try:
            return await client.infer(InferRequest(model_name=MODEL, infer_inputs=inputs)), None
        except Exception as err:  # noqa: BLE001 - grpc.aio.AioRpcError
            return None, err
        finally:
            await client.close()

    return asyncio.run(ask())


def _grpc_inputs(columns: dict, datatypes: dict | None = None, binary: bool = True) -> list:
    from kserve import InferInput

    out = []
    for name, values in columns.items():
        datatype = (datatypes or {}).get(name) or ("BYTES" if isinstance(values[0], bytes) else "FP64")
        dtype = {"BYTES": np.object_, "FP64": np.float64, "INT32": np.int32, "FP32": np.float32}[datatype]
        tensor = InferInput(name, [len(values)], datatype)
        tensor.set_data_from_numpy(np.asarray(values, dtype=dtype), binary_data=binary)
        out.append(tensor)
    return out


GRPC_CORPUS = [
    (
        "int32-coordinates",
        {"ORIGIN_BLOCK_LATITUDE": [38, 38, 38]},
        {"ORIGIN_BLOCK_LATITUDE": "INT32"},
        False,
        "INVALID_ARGUMENT",
        "input ORIGIN_BLOCK_LATITUDE: datatype INT32; expected FP64 or FP32",
    ),
    (
        "outside-area",
        {"DESTINATION_BLOCK_LONGITUDE": [-77.0, 77.0, -77.0]},
        {},
        True,
        "INVALID_ARGUMENT",
        "instance 1: field DESTINATION_BLOCK_LONGITUDE: 77.0 is outside the service area",
    ),
    (
        "day-first",
        {"ORIGINDATETIME_TR": [b"03/14/2018 08:00", b"14/03/2018 08:00", b"03/14/2018 08:00"]},
        {},
        True,
        "INVALID_ARGUMENT",
        "instance 1: field ORIGINDATETIME_TR: expected MM/DD/YYYY HH:MM",
    ),
    (
        "year-after",
        {"ORIGINDATETIME_TR": [b"03/14/2033 08:00"] * 3},
        {},
        False,
        "INVALID_ARGUMENT",
        "instance 0: field ORIGINDATETIME_TR: pick-up year 2033 is outside",
    ),
    ("unknown-input", {"tip": [1.0, 2.0, 3.0]}, {}, True, "INVALID_ARGUMENT", "unknown input(s) tip"),
]


@pytest.mark.parametrize(("columns", "datatypes", "binary", "code", "error"), [c[1:] for c in GRPC_CORPUS],
                         ids=[c[0] for c in GRPC_CORPUS])  # fmt: skip
def test_grpc_gives_the_rest_messages(server, columns, datatypes, binary, code, error):
    merged = {**as_columns(TRIPS), **columns}
    response, err = _grpc_infer(server, _grpc_inputs(merged, datatypes, binary))
    assert response is None and err.code().name == code, err
    assert err.details().startswith(error), err.details()
    good, err = _grpc_infer(server, _grpc_inputs(as_columns(TRIPS)))
    assert err is None and len(good.outputs[0].as_numpy()) == len(TRIPS)


def test_grpc_refuses_an_oversized_message_with_the_rest_limit_message(server):
    n = MAX_REQUEST_BYTES // 8 // 4  # FP64 x 4 coordinates: just over the limit with the times
    columns = {name: [trip()[name]] * n for name in COORDS}
    columns[FIELDS[4]] = [b"03/14/2018 08:00"] * n
    response, err = _grpc_infer(server, _grpc_inputs(columns))
    assert response is None and err.code().name == "RESOURCE_EXHAUSTED", err
    assert err.details().startswith("request of ") and err.details().endswith(
        f"bytes exceeds the limit of {MAX_REQUEST_BYTES} bytes (--max-request-bytes); split the batch"
    ), err.details()
    _, rest = raw_exchange(server, _head(MAX_REQUEST_BYTES + 1))
    assert rest["error"].split(" bytes exceeds")[1] == err.details().split(" bytes exceeds")[1]
    good, err = _grpc_infer(server, _grpc_inputs(as_columns(TRIPS)))
    assert err is None
