"""The model server over real HTTP: ``python -m components.serve`` in a subprocess.

The cluster's inference check (manifests/scripts/check_inference.py) runs against it
unchanged; bad requests get HTTP 400 naming the field; an unknown model name gets 404.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from components.serve.core import FarePredictor
from tests.conftest import free_port

from .test_core import REPO, TRIPS, as_columns, trip

MODEL = "taxi-fare"
STARTUP_S = 90.0


@dataclass
class Server:
    url: str
    grpc: str  # host:port of the gRPC (v2) endpoint
    process: subprocess.Popen
    log: Path


def _get(url: str, timeout: float = 5.0) -> tuple[int, dict]:
    return _call(urllib.request.Request(url), timeout)


def _post(url: str, payload, timeout: float = 30.0) -> tuple[int, dict]:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method="POST")
    request.add_header("Content-Type", "application/json")
    return _call(request, timeout)


def _call(request: urllib.request.Request, timeout: float) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as err:
        body = err.read()
        return err.code, json.loads(body) if body else {}


def _wait_ready(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if _get(f"{url}/v2/health/ready", timeout=1.0) == (200, {"ready": True}):
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"server not ready after {STARTUP_S}s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory) -> Iterator[Server]:
    port, grpc_port = free_port(), free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    command = [
        sys.executable, "-m", "components.serve",
        f"--model_name={MODEL}", f"--model_dir={model_dir}", f"--http_port={port}",
        f"--grpc_port={grpc_port}",  # a free port too, so parallel test workers cannot clash
    ]  # fmt: skip
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, log)
        yield Server(url, f"127.0.0.1:{grpc_port}", process, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_the_cluster_inference_check_passes(server):
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "manifests/scripts/check_inference.py"),
            "--url",
            server.url,
            "--model",
            MODEL,
            "--min-fare",
            "3.25",
            "--max-fare",
            "180",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "v1 ok" in result.stdout and "v2 ok" in result.stdout


def test_v1_and_v2_answer_what_the_model_predicts(server, model_dir):
    expected = FarePredictor.load(model_dir).predict_records(TRIPS)
    status, v1 = _post(f"{server.url}/v1/models/{MODEL}:predict", {"instances": TRIPS})
    assert status == 200 and v1 == {"predictions": expected}
    inputs = [
        {"name": k, "shape": [len(v)], "datatype": "BYTES" if isinstance(v[0], str) else "FP64", "data": v}
        for k, v in as_columns(TRIPS, text=str).items()
    ]
    status, v2 = _post(f"{server.url}/v2/models/{MODEL}/infer", {"id": "req-7", "inputs": inputs})
    assert status == 200, v2
    assert v2["id"] == "req-7" and v2["model_name"] == MODEL
    [output] = v2["outputs"]
    assert {k: output[k] for k in ("name", "datatype", "shape", "data")} == {
        "name": "fare",
        "datatype": "FP64",
        "shape": [3],
        "data": expected,
    }


def test_v2_takes_n_by_1_tensors_and_answers_a_requested_output(server, model_dir):
    expected = FarePredictor.load(model_dir).predict_records(TRIPS)
    inputs = [
        {"name": k, "shape": [len(v), 1], "datatype": "BYTES" if isinstance(v[0], str) else "FP64", "data": v}
        for k, v in as_columns(TRIPS, text=str).items()
    ]
    status, v2 = _post(
        f"{server.url}/v2/models/{MODEL}/infer", {"inputs": inputs, "outputs": [{"name": "fare"}]}
    )
    assert status == 200, v2
    assert v2["id"] and v2["outputs"][0]["data"] == expected


def test_grpc_v2_with_binary_tensors(server, model_dir):
    import asyncio

    import numpy as np
    from kserve import InferenceGRPCClient, InferInput, InferRequest

    expected = FarePredictor.load(model_dir).predict_records(TRIPS)

    def tensors(columns: dict) -> list:
        out = []
        for name, values in columns.items():
            array = np.asarray(values, dtype=np.object_ if isinstance(values[0], bytes) else np.float64)
            tensor = InferInput(name, [len(values)], "BYTES" if array.dtype == np.object_ else "FP64")
            tensor.set_data_from_numpy(array)  # binary: raw_input_contents
            out.append(tensor)
        return out

    async def ask():
        client = InferenceGRPCClient(server.grpc, timeout=30)
        try:
            good = await client.infer(InferRequest(model_name=MODEL, infer_inputs=tensors(as_columns(TRIPS))))
            bad_columns = as_columns(TRIPS)
            bad_columns["ORIGINDATETIME_TR"] = [b"03/14/2018 08:00", b"14/03/2018 08:00", b"03/14/2018 08:00"]
            try:
                await client.infer(InferRequest(model_name=MODEL, infer_inputs=tensors(bad_columns)))
            except Exception as err:  # noqa: BLE001 - grpc.aio.AioRpcError
                return good, err
            return good, None
        finally:
            await client.close()

    good, err = asyncio.run(ask())
    assert good.outputs[0].name == "fare"
    assert good.outputs[0].as_numpy().tolist() == expected
    assert err is not None and err.code().name == "INVALID_ARGUMENT"
    assert err.details().startswith("instance 1: field ORIGINDATETIME_TR: expected MM/DD/YYYY HH:MM")


def test_readiness_and_metadata(server):
    assert _get(f"{server.url}/v2/models/{MODEL}/ready") == (200, {"name": MODEL, "ready": True})
    assert _get(f"{server.url}/v1/models/{MODEL}") == (200, {"name": MODEL, "ready": True})
    status, meta = _get(f"{server.url}/v2/models/{MODEL}")
    assert status == 200
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [
        ("ORIGIN_BLOCK_LATITUDE", "FP64"),
        ("ORIGIN_BLOCK_LONGITUDE", "FP64"),
        ("DESTINATION_BLOCK_LATITUDE", "FP64"),
        ("DESTINATION_BLOCK_LONGITUDE", "FP64"),
        ("ORIGINDATETIME_TR", "BYTES"),
    ]
    assert meta["outputs"] == [{"name": "fare", "datatype": "FP64", "shape": [-1]}]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"instances": []}, "instances: empty"),
        ({"trips": TRIPS}, 'expected a JSON object {"instances": [trip, ...]}'),
        (
            {"instances": [trip(), {k: v for k, v in trip().items() if k != "ORIGIN_BLOCK_LONGITUDE"}]},
            "instance 1: missing field ORIGIN_BLOCK_LONGITUDE",
        ),
        (
            {"instances": [trip(when="14/03/2018 08:00")]},
            "instance 0: field ORIGINDATETIME_TR: expected MM/DD/YYYY",
        ),
        ({"instances": [trip(lat2="x")]}, "instance 0: field DESTINATION_BLOCK_LATITUDE: expected a number"),
        (b"{not json", "Unrecognized request format"),
    ],
)
def test_v1_bad_requests_get_400_naming_the_field(server, payload, message):
    status, body = _post(f"{server.url}/v1/models/{MODEL}:predict", payload)
    assert status == 400, body
    assert body["error"].startswith(message), body


def _v2_inputs(**changes) -> list[dict]:
    inputs = []
    for name, values in as_columns(TRIPS, text=str).items():
        tensor = {
            "name": name,
            "shape": [len(values)],
            "datatype": "BYTES" if isinstance(values[0], str) else "FP64",
            "data": values,
        }
        tensor.update(changes.get(name, {}))
        inputs.append(tensor)
    return inputs


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (
            _v2_inputs() + [{"name": "tip", "shape": [3], "datatype": "FP64", "data": [1, 2, 3]}],
            "unknown input(s) tip",
        ),
        (_v2_inputs()[1:], "missing input ORIGIN_BLOCK_LATITUDE"),
        (
            _v2_inputs(ORIGIN_BLOCK_LATITUDE={"shape": [2], "data": [38.9, 38.9]}),
            "inputs differ in length (ORIGIN_BLOCK_LATITUDE has 2,",
        ),
        (
            _v2_inputs(ORIGIN_BLOCK_LATITUDE={"shape": [4]}),
            "input ORIGIN_BLOCK_LATITUDE: FP64 data does not fit shape [4]",
        ),
        (
            _v2_inputs(ORIGIN_BLOCK_LATITUDE={"shape": [3, 2]}),
            "input ORIGIN_BLOCK_LATITUDE: expected shape [n]",
        ),
        (
            _v2_inputs(
                ORIGINDATETIME_TR={"data": ["03/14/2018 08:00", "2017-07-04 22:00", "11/30/2016 13:00"]}
            ),
            "instance 1: field ORIGINDATETIME_TR: expected MM/DD/YYYY HH:MM",
        ),
        (
            _v2_inputs(DESTINATION_BLOCK_LONGITUDE={"data": [-77.0, "east", -77.0]}),
            "input DESTINATION_BLOCK_LONGITUDE: FP64 data does not fit",
        ),
        (_v2_inputs() + _v2_inputs()[:1], "input(s) ORIGIN_BLOCK_LATITUDE given more than once"),
    ],
)
def test_v2_bad_requests_get_400_naming_the_input(server, inputs, message):
    status, body = _post(f"{server.url}/v2/models/{MODEL}/infer", {"inputs": inputs})
    assert status == 400, body
    assert body["error"].startswith(message), body


def test_v2_unknown_requested_output_gets_400(server):
    status, body = _post(
        f"{server.url}/v2/models/{MODEL}/infer", {"inputs": _v2_inputs(), "outputs": [{"name": "tip"}]}
    )
    assert status == 400 and "tip" in body["error"], body


def test_unknown_model_name_gets_404(server):
    status, body = _post(f"{server.url}/v1/models/other:predict", {"instances": TRIPS})
    assert status == 404 and "other" in body["error"], body
    status, body = _post(f"{server.url}/v2/models/other/infer", {"inputs": _v2_inputs()})
    assert status == 404 and "other" in body["error"], body
    assert _get(f"{server.url}/v2/models/other/ready")[0] == 404


def test_the_server_still_answers_after_bad_requests(server):
    _post(f"{server.url}/v1/models/{MODEL}:predict", {"instances": [{}]})
    status, body = _post(f"{server.url}/v1/models/{MODEL}:predict", {"instances": TRIPS[:1]})
    assert status == 200 and len(body["predictions"]) == 1
    assert server.process.poll() is None


# --- the CLI -------------------------------------------------------------------------------


def _serve_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOME": "/tmp"}
    return subprocess.run(
        [sys.executable, "-m", "components.serve", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_cli_refuses_a_missing_model_dir_in_one_line(tmp_path):
    port = free_port()
    result = _serve_cli(
        "--model_name", MODEL, "--model_dir", str(tmp_path / "missing"), "--http_port", str(port)
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"components.serve: error: {tmp_path / 'missing'}: no such model directory"
    ]


def test_cli_refuses_a_directory_that_is_not_a_model_in_one_line(tmp_path):
    (tmp_path / "model.json").write_text('{"format": "sklearn"}')
    (tmp_path / "model.pt").write_bytes(b"")
    result = _serve_cli("--model_name", MODEL, "--model_dir", str(tmp_path), "--enable_grpc=false")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"components.serve: error: {tmp_path / 'model.json'}: expected format 'fareflow'"
    )


def test_cli_needs_a_model_dir():
    result = _serve_cli("--model_name", MODEL)
    assert result.returncode == 2 and "--model_dir" in result.stderr


def test_v1_body_without_a_json_content_type_is_still_read(server):
    """curl -d sends form encoding by default; the body is JSON all the same."""
    body = json.dumps({"instances": TRIPS}).encode()
    request = urllib.request.Request(f"{server.url}/v1/models/{MODEL}:predict", data=body, method="POST")
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    status, answer = _call(request, 30.0)
    assert status == 200 and len(answer["predictions"]) == len(TRIPS)
    bad = urllib.request.Request(
        f"{server.url}/v1/models/{MODEL}:predict", data=b"fare please", method="POST"
    )
    bad.add_header("Content-Type", "text/plain")
    status, answer = _call(bad, 30.0)
    assert status == 400 and "expected a JSON body" in answer["error"]
