"""Each image's entrypoint runs inside its container, as the non-root user, with the
pinned stack it promises (``make container-test``)."""

from __future__ import annotations

import json

import pytest

from .conftest import IMAGE_NAMES, IMAGE_UID, check_inference, podman, served_model

pytestmark = pytest.mark.container


# What each image's ENTRYPOINT runs: the fareflow CLI, one training process, the model server.
ENTRYPOINT_USAGE = {
    "component": ("usage: fareflow COMMAND", "ingest"),
    "trainer": ("usage: fareflow train", "--splits"),
    "server": ("usage: fareflow serve", "--model_dir"),
}
# The images holding the fareflow package (images/mlflow holds MLflow's server alone:
# tests/container/test_mlflow_image.py).
FAREFLOW_IMAGES = [name for name in IMAGE_NAMES if name in ENTRYPOINT_USAGE]


@pytest.mark.parametrize("name", FAREFLOW_IMAGES)
def test_entrypoint_help_runs_the_images_program(image_refs: dict[str, str], name: str) -> None:
    proc = podman("run", "--rm", image_refs[name], "--help")
    usage, option = ENTRYPOINT_USAGE[name]
    assert proc.stdout.startswith(usage), proc.stdout
    assert option in proc.stdout


@pytest.mark.parametrize("name", FAREFLOW_IMAGES)
def test_default_command_prints_help_and_version_matches_label(image_refs: dict[str, str], name: str) -> None:
    ref = image_refs[name]
    assert ENTRYPOINT_USAGE[name][0] in podman("run", "--rm", ref).stdout  # CMD ["--help"]
    version = podman("run", "--rm", "--entrypoint", "fareflow", ref, "--version").stdout.split()
    (config,) = json.loads(podman("image", "inspect", ref).stdout)
    assert version == ["fareflow", config["Config"]["Labels"]["org.opencontainers.image.version"]]


@pytest.mark.parametrize("name", IMAGE_NAMES)
def test_image_config_non_root_python_entrypoint_not_latest(image_refs: dict[str, str], name: str) -> None:
    ref = image_refs[name]
    assert not ref.endswith(":latest")
    (config,) = json.loads(podman("image", "inspect", ref).stdout)
    cfg = config["Config"]
    assert cfg["User"] == f"{IMAGE_UID}:{IMAGE_UID}"
    assert cfg["Entrypoint"][:2] == ["python", "-m"], cfg["Entrypoint"]
    uid = podman("run", "--rm", "--entrypoint", "id", ref, "-u").stdout.strip()
    assert uid == str(IMAGE_UID)


@pytest.mark.parametrize("name", FAREFLOW_IMAGES)
def test_pinned_runtime_dependencies_installed(image_refs: dict[str, str], name: str) -> None:
    """The image holds exactly the pyproject pins (kfp, pyarrow, ...) and the project."""
    code = (
        "import importlib.metadata as m, json;"
        "print(json.dumps({d: m.version(d) for d in ['kfp', 'pyarrow', 'pandas', 'fareflow']}))"
    )
    got = json.loads(podman("run", "--rm", "--entrypoint", "python", image_refs[name], "-c", code).stdout)
    import importlib.metadata as host

    for dist in ("kfp", "pyarrow", "pandas"):
        assert got[dist] == host.version(dist), (dist, got[dist])
    assert got["fareflow"] == host.version("fareflow")


def test_trainer_has_torch_and_horovod_with_mpi_and_gloo(image_refs: dict[str, str]) -> None:
    if "trainer" not in image_refs:
        pytest.skip("trainer image not selected (FAREFLOW_IMAGE_NAMES)")
    ref = image_refs["trainer"]
    out = podman("run", "--rm", "--entrypoint", "horovodrun", ref, "--check-build").stdout
    # horovodrun marks available frameworks/controllers with [X]
    assert "[X] PyTorch" in out, out
    assert "[X] Gloo" in out, out
    assert "[X] MPI" in out, out
    for tool in ("mpirun", "orted", "sh"):  # what an MPIJob's launcher and workers run
        podman("run", "--rm", "--entrypoint", "/bin/sh", ref, "-c", f"command -v {tool}")


def test_trainer_horovod_allreduce_over_gloo(image_refs: dict[str, str]) -> None:
    """Two Horovod ranks (gloo) in one container sum their ranks: 0 + 1 == 1 on both."""
    if "trainer" not in image_refs:
        pytest.skip("trainer image not selected (FAREFLOW_IMAGE_NAMES)")
    script = (
        "import torch, horovod.torch as hvd;"
        "hvd.init();"
        "t = hvd.allreduce(torch.tensor([float(hvd.rank())]), op=hvd.Sum);"
        "print(f'rank {hvd.rank()}/{hvd.size()} sum {t.item()}')"
    )
    proc = podman(
        "run",
        "--rm",
        "--entrypoint",
        "horovodrun",
        image_refs["trainer"],
        "-np",
        "2",
        "-H",
        "localhost:2",
        "--gloo",
        "python",
        "-c",
        script,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert "rank 0/2 sum 1.0" in out, out
    assert "rank 1/2 sum 1.0" in out, out


def test_trainer_horovod_allreduce_over_mpi(image_refs: dict[str, str]) -> None:
    """Two Horovod ranks under Open MPI's mpirun in one container (the MPI controller, as uid
    10001 on a read-only root like the MPIJob's pods): 0 + 1 == 1 on both."""
    if "trainer" not in image_refs:
        pytest.skip("trainer image not selected (FAREFLOW_IMAGE_NAMES)")
    script = (
        "import torch, horovod.torch as hvd;"
        "hvd.init();"
        "t = hvd.allreduce(torch.tensor([float(hvd.rank())]), op=hvd.Sum);"
        "print(f'rank {hvd.rank()}/{hvd.size()} sum {t.item()} mpi {hvd.mpi_enabled()}')"
    )
    proc = podman(
        "run", "--rm", "--read-only", "--tmpfs", "/tmp", "--entrypoint", "mpirun", image_refs["trainer"],
        "-np", "2", "python", "-c", script, timeout=300,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert "rank 0/2 sum 1.0 mpi True" in out, out
    assert "rank 1/2 sum 1.0 mpi True" in out, out


def test_server_has_no_torch_and_serves_with_numpy(image_refs: dict[str, str]) -> None:
    """The server image carries no torch (it runs model.npz with numpy): a fifth of the size."""
    if "server" not in image_refs:
        pytest.skip("server image not selected (FAREFLOW_IMAGE_NAMES)")
    code = (
        "import importlib.util, components.serve.server, sys; "
        "print(importlib.util.find_spec('torch') is None, 'torch' in sys.modules)"
    )
    out = podman("run", "--rm", "--entrypoint", "python", image_refs["server"], "-c", code).stdout.split()
    assert out == ["True", "False"], out


def test_server_container_answers_both_protocols(image_refs: dict[str, str], tmp_path) -> None:
    """The server image as KServe runs it (read-only root, /mnt/models, the runtime's flags),
    queried over HTTP by the cluster test's own checker."""
    if "server" not in image_refs:
        pytest.skip("server image not selected (FAREFLOW_IMAGE_NAMES)")
    from tests.components.serve.conftest import train_model_dir

    model = train_model_dir(tmp_path / "model", rows=2000, steps=150)
    with served_model(image_refs["server"], model) as url:
        check_inference(url)
