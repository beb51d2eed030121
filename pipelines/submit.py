"""fareflow submit: compile the pipeline and run it on a Kubeflow Pipelines host.

    fareflow submit --host URL [--experiment NAME] [--param key=value ...] [--wait] [--timeout S]

Compiles with ``pipelines.compile.compile_pipeline`` (or takes ``--package`` as is), submits
through ``kfp.Client`` and prints the run's link in the Kubeflow dashboard. With ``--wait``
it follows the run to the end and exits non-zero unless the run succeeded.

Compile-time settings come from the environment (``FAREFLOW_IMAGE_REGISTRY``,
``FAREFLOW_IMAGE_TAG``, see ``components.common.images``); run-time settings are pipeline
parameters (``--param``). A parameter value is read as JSON when it parses (``3``,
``0.5``, ``true``, ``["a"]``) and as a string otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import sys
import tempfile
import time

from components.common.errors import UserError, cli_entry, one_line

SUCCEEDED = "SUCCEEDED"
FINAL_STATES = {"SUCCEEDED", "FAILED", "SKIPPED", "ERROR", "CANCELED"}


def parse_params(pairs: list[str]) -> dict[str, object]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}``; values are JSON when they parse."""
    params: dict[str, object] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--param {pair!r}: expected key=value")
        if key in params:
            raise UserError(f"--param {key}: given more than once")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params


def check_params(params: dict[str, object]) -> None:
    """The parameters the cluster's deploy step checks only after training (``model_name``,
    ``canary_percent``), checked now with the same builders, so a bad value fails the submit
    instead of an hour-long run's last step."""
    if not {"model_name", "canary_percent"} & set(params):
        return
    from components.cluster.serving import check_deploy_request
    from pipelines.taxi_fare import DEFAULT_MODEL_NAME

    try:
        check_deploy_request(
            str(params.get("model_name", DEFAULT_MODEL_NAME)), params.get("canary_percent", 0)
        )
    except UserError as err:
        raise UserError(
            f"--param model_name/canary_percent: {err} (the deploy step would refuse it)"
        ) from None


def run_link(dashboard: str, run_id: str) -> str:
    return f"{dashboard.rstrip('/')}/#/runs/details/{run_id}"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fareflow submit", description=__doc__.splitlines()[0])
    p.add_argument(
        "--host",
        default=os.environ.get("KFP_HOST"),
        help="Kubeflow Pipelines API URL, e.g. http://127.0.0.1:8888 (default: $KFP_HOST)",
    )
    p.add_argument("--experiment", default="fareflow", help="experiment name (created if missing)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="pipeline parameter")
    p.add_argument("--run-name", default=None, help="default: pipeline name and time")
    p.add_argument("--package", default=None, help="submit this compiled pipeline YAML instead of compiling")
    p.add_argument("--namespace", default=None, help="KFP user namespace (multi-user installs only)")
    p.add_argument("--dashboard", default=None, help="dashboard URL for the printed link (default: --host)")
    p.add_argument("--no-cache", action="store_true", help="disable step caching for this run")
    p.add_argument("--wait", action="store_true", help="follow the run; exit non-zero unless it succeeds")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds --wait waits (default 3600)")
    p.add_argument("--poll", type=float, default=10.0, help=argparse.SUPPRESS)
    return p


def compile_package(output_dir: str) -> str:
    from pipelines.compile import compile_pipeline  # lazy: imports the pipeline and kfp

    return compile_pipeline(os.path.join(output_dir, "taxi_fare_pipeline.yaml"))


def wait_for_run(client, run_id: str, timeout: float, poll: float) -> str:
    """Follow a run until it reaches a final state; print each state change. Returns the state."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        run = client.get_run(run_id)
        state = str(run.state or "PENDING").upper()
        if state != last:
            print(f"run {run_id}: {state}", flush=True)
            last = state
        if state in FINAL_STATES:
            if state != SUCCEEDED and getattr(run, "error", None):
                err = run.error
                print(f"run {run_id} error: {getattr(err, 'message', err)}", file=sys.stderr)
            return state
        if time.monotonic() >= deadline:
            raise UserError(f"run {run_id} still {state} after --timeout {timeout:g}s")
        time.sleep(poll)


def _reason(err: Exception) -> str:
    """One line for a failed API call: the HTTP status and the server's message, or the
    innermost connection error (urllib3's MaxRetryError wraps the refused connection)."""
    status = getattr(err, "status", None)
    if status:
        body = getattr(err, "body", None) or getattr(err, "reason", None) or err
        with contextlib.suppress(TypeError, ValueError, AttributeError):
            body = json.loads(body).get("message") or body
        return f"HTTP {status}: {one_line(body)}"
    reason = getattr(err, "reason", None) or err
    text = one_line(reason)
    cause = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    return f"cannot connect ({cause.group(1).strip()})" if cause else f"{type(err).__name__}: {text}"


HEALTHZ = "/apis/v2beta1/healthz"


def probe_host(host: str, timeout: float = 10.0) -> None:
    """One plain GET of the API's healthz before ``kfp.Client`` (which retries a failing
    healthz 5 times, 5 s apart, logging a traceback each time): a host that cannot be reached
    or answers 404 there (not a KFP API) is one line now. Other answers (401/403/302 of an
    authenticating proxy) are left to kfp.Client and its credentials."""
    import urllib.error
    import urllib.request

    url = host.rstrip("/") + HEALTHZ
    try:
        with urllib.request.urlopen(url, timeout=timeout):  # noqa: S310 (the user's --host)
            return
    except urllib.error.HTTPError as err:
        if err.code == 404:
            raise UserError(
                f"{host}: not a Kubeflow Pipelines API (HTTP 404 on {HEALTHZ}); check --host"
            ) from None
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        reason = getattr(reason, "strerror", None) or reason
        raise UserError(f"{host}: submitting the run failed: cannot connect ({one_line(reason)})") from None


def _main(argv: list[str] | None = None) -> int:
    ns = _parser().parse_args(argv)
    if not ns.host:
        raise UserError("--host: the Kubeflow Pipelines API URL is required (or set KFP_HOST)")
    if ns.timeout <= 0:
        raise UserError(f"--timeout {ns.timeout:g}: expected a positive number of seconds")
    params = parse_params(ns.param)
    check_params(params)
    if ns.package:
        from components.common import cli

        cli.input_path("--package", ns.package, kind="file")

    import warnings

    import kfp  # lazy: keeps `fareflow --help` fast

    # kfp.Client warns on every construction that it needs KFP >= 2.0.0-beta.2 (what we pin).
    warnings.filterwarnings(
        "ignore", message="This client only works with Kubeflow Pipeline", category=FutureWarning
    )

    probe_host(ns.host)
    with tempfile.TemporaryDirectory(prefix="fareflow-submit-") as tmp:
        package = ns.package or compile_package(tmp)
        if not os.path.isfile(package):
            raise UserError(f"{package}: compiled pipeline not found")
        try:
            # kfp.Client() calls the API's healthz: an unreachable or wrong host fails here.
            logging.disable(logging.ERROR)  # its healthz retries log a traceback each
            try:
                client = kfp.Client(host=ns.host, namespace=ns.namespace or "kubeflow")
            finally:
                logging.disable(logging.NOTSET)
            result = client.create_run_from_pipeline_package(
                package,
                arguments=params,
                run_name=ns.run_name,
                experiment_name=ns.experiment,
                namespace=ns.namespace,
                enable_caching=False if ns.no_cache else None,
            )
        except Exception as err:  # kfp_server_api.ApiException, connection errors
            raise UserError(f"{ns.host}: submitting the run failed: {_reason(err)}") from None
    run_id = result.run_id
    print(f"submitted run {run_id} in experiment {ns.experiment!r}")
    print(f"dashboard: {run_link(ns.dashboard or ns.host, run_id)}", flush=True)
    if not ns.wait:
        return 0
    state = wait_for_run(client, run_id, ns.timeout, ns.poll)
    if state != SUCCEEDED:
        print(f"run {run_id} ended {state}", file=sys.stderr)
        return 1
    print(f"run {run_id} succeeded")
    return 0


main = cli_entry(_main, prog="fareflow submit")

if __name__ == "__main__":
    sys.exit(main())
