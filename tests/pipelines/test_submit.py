"""`fareflow submit` against a local HTTP server that speaks the few KFP v2beta1 REST calls
kfp.Client makes (healthz, experiments list/create, runs create/get), so the real client
code path runs: pipeline spec and parameters are checked as the server received them."""

import json
import sys
import threading
import types
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from pipelines import submit


class FakeKfp:
    """State of the fake API server: experiments, runs, and the states each run goes through."""

    def __init__(self) -> None:
        self.experiments: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []
        self.final_state = "SUCCEEDED"
        self.states_before_final = ["PENDING", "RUNNING"]
        self.polls: dict[str, int] = {}
        self.reject_runs_with: tuple[int, str] | None = None


def _handler(state: FakeKfp):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            pass

        def _send(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict:
            n = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(n) or b"{}")

        def do_GET(self):
            url = urlparse(self.path)
            state.requests.append(("GET", url.path))
            if url.path == "/apis/v2beta1/healthz":
                return self._send(200, {"multi_user": False})
            if url.path == "/apis/v2beta1/experiments":
                filt = json.loads(parse_qs(url.query).get("filter", ["{}"])[0])
                names = [
                    p["string_value"] if "string_value" in p else p.get("stringValue")
                    for p in filt.get("predicates", [])
                ]
                found = [e for e in state.experiments.values() if e["display_name"] in names]
                return self._send(200, {"experiments": found, "total_size": len(found)} if found else {})
            if url.path.startswith("/apis/v2beta1/runs/"):
                run_id = url.path.rsplit("/", 1)[1]
                if run_id not in state.runs:
                    return self._send(404, {"error": "not found"})
                n = state.polls[run_id] = state.polls.get(run_id, 0) + 1
                seq = state.states_before_final
                run_state = seq[n - 1] if n <= len(seq) else state.final_state
                run = {**state.runs[run_id], "state": run_state}
                if run_state == "FAILED":
                    run["error"] = {"code": 9, "message": "train step failed"}
                return self._send(200, run)
            return self._send(404, {"error": f"unexpected GET {url.path}"})

        def do_POST(self):
            url = urlparse(self.path)
            state.requests.append(("POST", url.path))
            body = self._body()
            if url.path == "/apis/v2beta1/experiments":
                exp = {**body, "experiment_id": str(uuid.uuid4())}
                state.experiments[exp["experiment_id"]] = exp
                return self._send(200, exp)
            if url.path == "/apis/v2beta1/runs":
                if state.reject_runs_with:
                    code, msg = state.reject_runs_with
                    return self._send(code, {"error": msg, "message": msg})
                run = {**body, "run_id": str(uuid.uuid4()), "state": "PENDING"}
                state.runs[run["run_id"]] = run
                return self._send(200, run)
            return self._send(404, {"error": f"unexpected POST {url.path}"})

    return Handler


@pytest.fixture
def kfp_server():
    state = FakeKfp()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.host = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def fake_compile(monkeypatch, tmp_path):
    """A stand-in `pipelines.compile` whose compile_pipeline compiles a tiny real pipeline."""
    monkeypatch.setenv("HOME", str(tmp_path))  # kfp reads ~/.config/kfp/context.json
    calls: list[str] = []

    def compile_pipeline(output_path: str) -> str:
        from kfp import compiler, dsl

        @dsl.component(base_image="python:3.11-slim", install_kfp_package=False)
        def echo(n: int, label: str) -> str:
            return f"{label}{n}"

        @dsl.pipeline(name="submit-test-pipeline")
        def tiny(n: int = 1, label: str = "a"):
            echo(n=n, label=label)

        compiler.Compiler().compile(tiny, output_path)
        calls.append(output_path)
        return output_path

    module = types.ModuleType("pipelines.compile")
    module.compile_pipeline = compile_pipeline
    monkeypatch.setitem(sys.modules, "pipelines.compile", module)
    return calls


def _the_run(server: FakeKfp) -> dict:
    assert len(server.runs) == 1, server.requests
    return next(iter(server.runs.values()))


def test_submit_compiles_and_sends_spec_params_and_prints_link(kfp_server, fake_compile, capsys):
    rc = submit.main(
        ["--host", kfp_server.host, "--experiment", "nightly", "--param", "n=3", "--param", "label=x"]
    )
    assert rc == 0
    assert len(fake_compile) == 1
    run = _the_run(kfp_server)
    assert run["pipeline_spec"]["pipelineInfo"]["name"] == "submit-test-pipeline"
    assert run["runtime_config"]["parameters"] == {"n": 3, "label": "x"}
    (exp,) = kfp_server.experiments.values()
    assert exp["display_name"] == "nightly"
    assert run["experiment_id"] == exp["experiment_id"]
    out = capsys.readouterr().out
    assert f"{kfp_server.host}/#/runs/details/{run['run_id']}" in out
    assert ("GET", f"/apis/v2beta1/runs/{run['run_id']}") not in kfp_server.requests  # no --wait


def test_existing_experiment_is_reused(kfp_server, fake_compile):
    assert submit.main(["--host", kfp_server.host, "--experiment", "exp1"]) == 0
    assert submit.main(["--host", kfp_server.host, "--experiment", "exp1"]) == 0
    assert len(kfp_server.experiments) == 1
    assert {r["experiment_id"] for r in kfp_server.runs.values()} == set(kfp_server.experiments)


def test_wait_follows_run_to_success(kfp_server, fake_compile, capsys):
    rc = submit.main(["--host", kfp_server.host, "--wait", "--poll", "0.01", "--timeout", "30"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "PENDING" in out and "RUNNING" in out and "succeeded" in out
    run_id = _the_run(kfp_server)["run_id"]
    assert kfp_server.polls[run_id] == 3


def test_wait_exits_non_zero_when_run_fails(kfp_server, fake_compile, capsys):
    kfp_server.final_state = "FAILED"
    rc = submit.main(["--host", kfp_server.host, "--wait", "--poll", "0.01"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and "train step failed" in err


def test_wait_times_out(kfp_server, fake_compile, capsys):
    kfp_server.states_before_final = ["RUNNING"] * 10_000
    rc = submit.main(["--host", kfp_server.host, "--wait", "--poll", "0.01", "--timeout", "0.2"])
    assert rc == 2
    assert "still RUNNING after --timeout 0.2s" in capsys.readouterr().err


def test_precompiled_package_is_submitted_as_is(kfp_server, fake_compile, tmp_path):
    package = str(tmp_path / "p.yaml")
    sys.modules["pipelines.compile"].compile_pipeline(package)
    fake_compile.clear()
    assert submit.main(["--host", kfp_server.host, "--package", package]) == 0
    assert fake_compile == []
    assert _the_run(kfp_server)["pipeline_spec"]["pipelineInfo"]["name"] == "submit-test-pipeline"


def test_server_rejection_is_a_user_error(kfp_server, fake_compile, capsys):
    kfp_server.reject_runs_with = (400, "unknown parameter: nope")
    rc = submit.main(["--host", kfp_server.host, "--param", "nope=1"])
    assert rc == 2
    assert "unknown parameter: nope" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--param", "novalue"], "expected key=value"),
        (["--param", "a=1", "--param", "a=2"], "given more than once"),
        (["--timeout", "0"], "expected a positive number"),
        # what deploy would refuse after training, refused before anything is sent
        (["--param", "canary_percent=150"], "canary traffic percent 150: expected an integer in [1, 100]"),
        (["--param", "canary_percent=ten"], "canary_percent 'ten': expected an integer"),
        (["--param", "model_name=1fare"], "starts with a letter"),
        (["--param", "model_name=" + "a" * 54], "expected a name of at most 53"),
        (["--param", "model_name=" + "a" * 41, "--param", "canary_percent=20"], "at most 40"),
    ],
)
def test_bad_arguments(argv, message, capsys):
    rc = submit.main(["--host", "http://127.0.0.1:9", *argv])
    assert rc == 2
    assert message in capsys.readouterr().err


def test_host_is_required(monkeypatch, capsys):
    monkeypatch.delenv("KFP_HOST", raising=False)
    assert submit.main([]) == 2
    assert "--host" in capsys.readouterr().err


def test_param_values_are_json_when_they_parse():
    assert submit.parse_params(["a=3", "b=0.5", "c=true", "d=[1,2]", "e=s3://x/y", "f=", "g=a=b"]) == {
        "a": 3,
        "b": 0.5,
        "c": True,
        "d": [1, 2],
        "e": "s3://x/y",
        "f": "",
        "g": "a=b",
    }


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_host_is_one_line_non_zero(fake_compile, capsys):
    host = f"http://127.0.0.1:{_closed_port()}"
    assert submit.main(["--host", host]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"fareflow submit: error: {host}: submitting the run failed: cannot connect (Connection refused)\n"
    )


def test_wrong_host_is_one_line_non_zero(fake_compile, capsys):
    """A web server that is not the KFP API (404 on healthz): the HTTP status, one line."""

    class NotKfp(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(404)
            self.send_header("Content-Length", "9")
            self.end_headers()
            self.wfile.write(b"not found")

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotKfp)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host = f"http://127.0.0.1:{server.server_address[1]}"
        assert submit.main(["--host", host]) == 2
    finally:
        server.shutdown()
        server.server_close()
    assert capsys.readouterr().err == (
        f"fareflow submit: error: {host}: not a Kubeflow Pipelines API (HTTP 404 on /apis/v2beta1/healthz); "
        "check --host\n"
    )


def test_missing_package_is_refused_before_connecting(capsys):
    assert submit.main(["--host", "http://127.0.0.1:9", "--package", "/nope/p.yaml"]) == 2
    assert (
        capsys.readouterr().err
        == "fareflow submit: error: --package /nope/p.yaml: no such file or directory\n"
    )


def test_deploy_parameters_that_deploy_accepts_pass_the_check():
    submit.check_params({"model_name": "taxi-fare", "canary_percent": 20})
    submit.check_params({"model_name": "a" * 40, "canary_percent": 100})
    submit.check_params({"model_name": "a" * 53, "canary_percent": 0})
    submit.check_params({"n": 3})  # neither given: nothing to check
