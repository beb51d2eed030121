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
    for name in ("base", "overlays/kind", "overlays/gpu-cluster", "overlays/team-b"):
        docs = render(MANIFESTS / name)
        (tmp_path / f"{name.replace('/', '-')}.yaml").write_text(yaml.safe_dump_all(docs))
    # The optional components ship too: base with each of them.
    for component in sorted(p.name for p in (MANIFESTS / "components").iterdir() if p.is_dir()):
        overlay = tmp_path / "with" / component
        overlay.mkdir(parents=True)
        (overlay / "kustomization.yaml").write_text(
            yaml.safe_dump(
                {
                    "resources": [os.path.relpath(MANIFESTS / "base", overlay)],
                    "components": [os.path.relpath(MANIFESTS / "components" / component, overlay)],
                }
            )  # fmt: skip
        )
        docs = render(overlay, outside_root=True)
        (tmp_path / f"base-with-{component}.yaml").write_text(yaml.safe_dump_all(docs))
    shutil.rmtree(tmp_path / "with")
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
    assert not failed, "\n".join(failed)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # checkov really parsed everything written (no file or object silently skipped) and ran checks.
    written = sum(len([d for d in yaml.safe_load_all(f.read_text()) if d]) for f in tmp_path.glob("*.yaml"))
    assert sum(r["summary"]["resource_count"] for r in reports) >= written
    assert sum(r["summary"]["parsing_errors"] for r in reports) == 0
    assert sum(r["summary"]["passed"] for r in reports) > written
