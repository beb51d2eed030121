"""The model server over real HTTP: ``python -m components.serve`` in a subprocess.

The cluster's inference check (manifests/scripts/check_inference.py) runs against it
unchanged; bad requests get HTTP 400 naming the field; an unknown model name gets 404.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request

import pytest

from components.serve.core import FarePredictor
from tests.conftest import free_port

from .harness import MODEL, REPO, call, get, post, running_server
from .test_core import TRIPS, as_columns


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
    status, v1 = post(f"{server.url}/v1/models/{MODEL}:predict", {"instances": TRIPS})
    assert status == 200 and v1 == {"predictions": expected}
    inputs = [
        {"name": k, "shape": [len(v)], "datatype": "BYTES" if isinstance(v[0], str) else "FP64", "data": v}
        for k, v in as_columns(TRIPS, text=str).items()
    ]
    status, v2 = post(f"{server.url}/v2/models/{MODEL}/infer", {"id": "req-7", "inputs": inputs})
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
    status, v2 = post(
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
    assert get(f"{server.url}/v2/models/{MODEL}/ready") == (200, {"name": MODEL, "ready": True})
    assert get(f"{server.url}/v1/models/{MODEL}") == (200, {"name": MODEL, "ready": True})
    status, meta = get(f"{server.url}/v2/models/{MODEL}")
    assert status == 200
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [
        ("ORIGIN_BLOCK_LATITUDE", "FP64"),
        ("ORIGIN_BLOCK_LONGITUDE", "FP64"),
        ("DESTINATION_BLOCK_LATITUDE", "FP64"),
        ("DESTINATION_BLOCK_LONGITUDE", "FP64"),
        ("ORIGINDATETIME_TR", "BYTES"),
    ]
    assert meta["outputs"] == [{"name": "fare", "datatype": "FP64", "shape": [-1]}]


def test_metadata_names_the_version_served_and_versioned_routes_answer_for_it(server, model_dir):
    version = json.loads((model_dir / "model.json").read_text())["model_version"]
    assert len(version) == 12
    status, meta = get(f"{server.url}/v2/models/{MODEL}")
    assert status == 200 and meta["versions"] == [version] and meta["name"] == MODEL
    assert get(f"{server.url}/v2/models/{MODEL}/versions/{version}") == (200, meta)
    assert get(f"{server.url}/v2/models/{MODEL}/versions/{version}/ready") == (
        200,
        {"name": MODEL, "ready": True},
    )
    inputs = [
        {"name": k, "shape": [len(v)], "datatype": "BYTES" if isinstance(v[0], str) else "FP64", "data": v}
        for k, v in as_columns(TRIPS, text=str).items()
    ]
    status, versioned = post(f"{server.url}/v2/models/{MODEL}/versions/{version}/infer", {"inputs": inputs})
    status_plain, plain = post(f"{server.url}/v2/models/{MODEL}/infer", {"inputs": inputs})
    assert status == status_plain == 200
    assert versioned["outputs"][0]["data"] == plain["outputs"][0]["data"]
    status, err = get(f"{server.url}/v2/models/{MODEL}/versions/000000000000")
    assert status == 404 and err["error"].endswith(f"it serves version {version} (use /v2/models/{MODEL})")


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


def test_unknown_model_name_gets_404(server):
    status, body = post(f"{server.url}/v1/models/other:predict", {"instances": TRIPS})
    assert status == 404 and "other" in body["error"], body
    status, body = post(f"{server.url}/v2/models/other/infer", {"inputs": _v2_inputs()})
    assert status == 404 and "other" in body["error"], body
    assert get(f"{server.url}/v2/models/other/ready")[0] == 404


def test_the_server_still_answers_after_bad_requests(server):
    post(f"{server.url}/v1/models/{MODEL}:predict", {"instances": [{}]})
    status, body = post(f"{server.url}/v1/models/{MODEL}:predict", {"instances": TRIPS[:1]})
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
        f"fareflow serve: error: {tmp_path / 'missing'}: no such model directory"
    ]


def _broken_copy(model_dir, tmp_path, *, meta=None, weights: bytes | None = None, file: str = "model.npz"):
    """A copy of the model directory with model.json changed (``meta``) and/or ``file``'s bytes
    replaced (``weights``; b"" deletes it)."""
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    if meta is not None:
        doc = json.loads((broken / "model.json").read_text())
        (broken / "model.json").write_text(json.dumps(meta(doc)) if callable(meta) else meta)
    if weights == b"":
        (broken / file).unlink()
    elif weights is not None:
        (broken / file).write_bytes(weights)
    return broken


def _other_weights(tmp_path) -> bytes:
    """model.npz of another model of the same architecture."""
    from .conftest import train_model_dir

    return (train_model_dir(tmp_path / "other", seed=5, steps=3) / "model.npz").read_bytes()


def _without(*keys):
    return lambda doc: {k: v for k, v in doc.items() if k not in keys}


@pytest.mark.parametrize(
    ("meta", "weights", "message"),
    [
        (
            '{"format": "sklearn"}',
            None,
            "model.json: expected format 'fareflow' version 1, got 'sklearn' version None",
        ),
        (
            lambda d: d | {"version": 2},
            None,
            "model.json: expected format 'fareflow' version 1, got 'fareflow' version 2",
        ),
        ("{truncated", None, "model.json: not JSON"),
        ("[1, 2]", None, "model.json: expected a JSON object, got list"),
        (
            _without("architecture", "feature_spec"),
            None,
            "model.json: missing key(s) architecture, feature_spec",
        ),
        (lambda d: d | {"architecture": {"layers": 3}}, None, "model.json: architecture: expected"),
        (
            lambda d: d | {"feature_spec": {"version": 1}},
            None,
            "model.json: feature spec: expected version 1",
        ),
        (lambda d: d | {"extent": {"lat": [39, 38]}}, None, "model.json: extent.lat: expected [low, high]"),
        (None, b"PK\x03\x04 not a zip", "model.npz: not a readable .npz of the weights"),
        (
            lambda d: d | {"architecture": {"hidden": [8], "dropout": 0}},
            None,
            "model.npz: not the weights of the architecture model.json describes",
        ),
        (None, "other", "model.npz: these weights are version "),
        # a directory without model.npz (written before it existed) is served with torch
        (
            None,
            ("model.npz", "model.pt"),
            "model.pt: cannot load the weights (corrupt, or not the architecture",
        ),
        (
            lambda d: d | {"architecture": {"hidden": [8], "dropout": 0}},
            ("model.npz",),
            "model.pt: cannot load the weights (corrupt, or not the architecture model.json describes)",
        ),
    ],
)
def test_cli_refuses_an_unusable_model_dir_in_one_line(model_dir, tmp_path, meta, weights, message):
    if weights == "other":
        broken = _broken_copy(model_dir, tmp_path, meta=meta, weights=_other_weights(tmp_path))
    elif isinstance(weights, tuple):  # delete model.npz, and corrupt model.pt too if named
        broken = _broken_copy(model_dir, tmp_path, meta=meta, weights=b"")
        if "model.pt" in weights:
            (broken / "model.pt").write_bytes(b"PK\x03\x04 not a zip")
    else:
        broken = _broken_copy(model_dir, tmp_path, meta=meta, weights=weights)
    result = _serve_cli("--model_name", MODEL, "--model_dir", str(broken), "--enable_grpc=false")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"fareflow serve: error: {broken}/"), lines
    assert message in lines[0], lines[0]


def _held_port() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock


@pytest.mark.parametrize("which", ["--http-port", "--grpc-port"])
def test_a_port_in_use_is_one_line_and_exit_2(model_dir, which):
    with _held_port() as held:
        port = held.getsockname()[1]
        other = "--grpc-port" if which == "--http-port" else "--http-port"
        result = _serve_cli(
            "--model-name", MODEL, "--model-dir", str(model_dir), "--host", "127.0.0.1",
            which, str(port), other, str(free_port()),
        )  # fmt: skip
    assert result.returncode == 2, result.stderr
    flag = {"--http-port": "--http_port", "--grpc-port": "--grpc_port"}[which]
    assert result.stderr.splitlines() == [
        f"fareflow serve: error: {flag} {port}: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]


def test_host_chooses_the_listen_address(model_dir, tmp_path):
    """127.0.0.2 is a loopback address of its own: a server bound there is not on 127.0.0.1."""
    with running_server(model_dir, tmp_path / "log", "--enable-grpc", "false", host="127.0.0.2") as server:
        port = int(server.url.rsplit(":", 1)[1])
        assert get(f"http://127.0.0.2:{port}/v2/health/ready") == (200, {"ready": True})
        with pytest.raises(OSError):
            get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2)


def test_request_logging_can_be_turned_off(model_dir, tmp_path):
    log = tmp_path / "log"
    with running_server(model_dir, log, "--request-logging", "false", "--enable_grpc=false") as server:
        assert post(f"{server.url}/v1/models/{MODEL}:predict", {"instances": TRIPS})[0] == 200
        assert post(f"{server.url}/v1/models/{MODEL}:predict", {"instances": [{}]})[0] == 400
        text = log.read_text()
    assert "Application startup complete" in text  # the server does log, just not per request
    assert "take the fast lane" in text  # nothing in front of the prediction routes but FastAPI's layers
    for per_request in ("POST /v1/models", "predict_ms", "kserve.io.v1", "400 POST"):
        assert per_request not in text, text[-2000:]


@pytest.mark.parametrize(("flags", "loop"), [((), "uvloop.Loop"), (("--event-loop", "asyncio"), "asyncio.")])
def test_the_server_runs_on_the_event_loop_its_flag_names(model_dir, tmp_path, flags, loop):
    """--event-loop auto (the default) is uvloop, installed with kserve's uvicorn[standard];
    KServe's own start() would run the stdlib loop whatever the flag said."""
    log = tmp_path / "log"
    with running_server(model_dir, log, "--enable_grpc=false", *flags) as server:
        assert post(f"{server.url}/v1/models/{MODEL}:predict", {"instances": TRIPS})[0] == 200
        text = log.read_text()
    [line] = [line for line in text.splitlines() if "Event loop: " in line]
    assert line.split("Event loop: ")[1].startswith(loop), line
    assert "take the fast lane" not in text  # request logging on: KServe's timing middleware in front
    # start-up's objects are out of the collector's sight (a full collection stalled the loop)
    [frozen] = [line for line in text.splitlines() if "objects loaded at start-up frozen" in line]
    assert int(frozen.split("gc: ")[1].split()[0]) > 50_000, frozen


def test_workers_above_one_are_refused_in_one_line(model_dir):
    result = _serve_cli("--model_name", MODEL, "--model_dir", str(model_dir), "--workers", "2")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "fareflow serve: error: --workers 2: the fareflow server runs one process; scale with replicas "
        "(the InferenceService's minReplicas/maxReplicas)"
    ]


def test_cli_needs_a_model_dir():
    result = _serve_cli("--model_name", MODEL)
    assert result.returncode == 2 and "--model_dir" in result.stderr


def test_v1_body_without_a_json_content_type_is_still_read(server):
    """curl -d sends form encoding by default; the body is JSON all the same."""
    body = json.dumps({"instances": TRIPS}).encode()
    request = urllib.request.Request(f"{server.url}/v1/models/{MODEL}:predict", data=body, method="POST")
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    status, answer, _ = call(request, 30.0)
    assert status == 200 and len(answer["predictions"]) == len(TRIPS)
    bad = urllib.request.Request(
        f"{server.url}/v1/models/{MODEL}:predict", data=b"fare please", method="POST"
    )
    bad.add_header("Content-Type", "text/plain")
    status, answer, _ = call(bad, 30.0)
    assert status == 400 and answer["error"].startswith("request body: not valid JSON"), answer
