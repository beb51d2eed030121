"""checkov over the rendered manifests and the builders' objects: no failed check (skips are
listed with their reasons in manifests/.checkov.yaml). checkov pins many packages, so it lives
in its own venv (.venv-checkov): `make manifests-policy` installs it and runs this test with
FAREFLOW_REQUIRE_CHECKOV=1, which turns a missing checkov into a failure."""

import json
import os
import pathlib
import shutil
import subprocess

import pytest
import yaml

from components.common import k8s
from tests.manifests.k8s_schema import MANIFESTS, REPO, render

pytestmark = pytest.mark.checkov


def checkov() -> str:
    found = os.environ.get("CHECKOV") or shutil.which("checkov")
    venv = REPO / ".venv-checkov" / "bin" / "checkov"
    found = found or (str(venv) if venv.exists() else None)
    if not found:
        if os.environ.get("FAREFLOW_REQUIRE_CHECKOV") == "1":
            pytest.fail("checkov not found: run `make checkov-venv` (or set CHECKOV=/path/to/checkov)")
        pytest.skip("checkov not installed: `make manifests-policy` runs this check")
    return found


def test_rendered_manifests_pass_checkov(tmp_path: pathlib.Path):
    exe = checkov()
    for name in ("base", "overlays/kind", "overlays/gpu-cluster"):
        docs = render(MANIFESTS / name)
        (tmp_path / f"{name.replace('/', '-')}.yaml").write_text(yaml.safe_dump_all(docs))
    builders = [
        k8s.pytorch_job("train", "ghcr.io/fareflow/trainer:0.1.0", "components.train", workers=2),
        k8s.mpi_job("hvd", "ghcr.io/fareflow/trainer:0.1.0", "components.train", gpu=k8s.GpuScheduling()),
        k8s.inference_service("taxi-fare", "s3://mlpipeline/models/x"),
    ]
    (tmp_path / "builders.yaml").write_text(k8s.to_yaml(builders))
    proc = subprocess.run(
        [exe, "--config-file", str(MANIFESTS / ".checkov.yaml"), "-d", str(tmp_path), "-o", "json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    reports = json.loads(proc.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [
        f"{c['check_id']} {c['check_name']} ({c['resource']})"
        for r in reports
        for c in r["results"]["failed_checks"]
    ]
    passed = sum(r["summary"]["passed"] for r in reports)
    assert not failed, "\n".join(failed)
    assert passed > 100 and proc.returncode == 0, proc.stderr[-2000:]
