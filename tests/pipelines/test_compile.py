"""The pipeline compiles to IR YAML that Kubeflow Pipelines accepts."""

from __future__ import annotations

import yaml

from components.common.images import COMPONENT_IMAGE
from pipelines.compile import compile_pipeline, main
from pipelines.taxi_fare import PIPELINE_NAME


def test_compiled_pipeline_uses_project_image_without_kfp_install(tmp_path):
    path = compile_pipeline(str(tmp_path / "p.yaml"))
    spec = yaml.safe_load(open(path))
    assert spec["pipelineInfo"]["name"] == PIPELINE_NAME
    executors = spec["deploymentSpec"]["executors"]
    assert executors, "no executors compiled"
    for name, executor in executors.items():
        container = executor["container"]
        assert container["image"] == COMPONENT_IMAGE, name
        assert not container["image"].endswith(":latest")
        # install_kfp_package=False: no pip install of kfp at run time (cluster needs no network)
        assert "pip install" not in " ".join(container.get("command", [])), name
    assert "source" in spec["root"]["inputDefinitions"]["parameters"]


def test_compile_cli_writes_file(tmp_path, capsys):
    out = tmp_path / "sub" / "pipeline.yaml"
    assert main(["--output", str(out)]) == 0
    assert out.exists() and "wrote" in capsys.readouterr().out
