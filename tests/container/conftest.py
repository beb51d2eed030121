"""Fixtures for the container tier (``make container-test``).

These tests need podman and the images built by ``make images``; they are marked
``container`` (deselected by ``make test``) and, as a second guard, skipped unless
``FAREFLOW_CONTAINER_TESTS=1`` (which ``make container-test`` sets). Inside that tier a
missing image or a podman failure is an error, never a skip.

kfp.local.DockerRunner (kfp 2.17) starts containers with ``auto_remove=True`` and then
waits on them: under podman the wait on an already removed container answers HTTP 500,
and under Docker a removed container counts as success (kfp issue 13332).
``docker_runner`` therefore replaces ``kfp.local.docker_task_handler.run_docker_container``
with :func:`run_container_without_auto_remove` for the test's duration.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ENABLED = os.environ.get("FAREFLOW_CONTAINER_TESTS") == "1"
IMAGE_NAMES = tuple(os.environ.get("FAREFLOW_IMAGE_NAMES", "component trainer server mlflow").split())
# Label put on every container the harness starts, to check that none is left behind.
RUN_LABEL = "fareflow.container-test"
SESSION_ID = uuid.uuid4().hex[:12]
# The images run as this user; DockerRunner's bind-mounted pipeline_root must be writable by it.
IMAGE_UID = 10001


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if ENABLED:
        return
    skip = pytest.mark.skip(
        reason="container tier: run `make container-test` (sets FAREFLOW_CONTAINER_TESTS=1)"
    )
    for item in items:
        if "container" in item.keywords:
            item.add_marker(skip)


def podman(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run podman, returning its completed process (stdout/stderr as text)."""
    proc = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"podman {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def wait_for_exit(name: str, timeout: float) -> int | None:
    """The exit code of container ``name`` once it has exited; None if still running at ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        state = podman("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name).stdout.split()
        if state[0] in ("exited", "stopped"):
            return int(state[1])
        if time.monotonic() > deadline:
            return None
        time.sleep(1)


def logs(name: str) -> str:
    proc = podman("logs", name, check=False)
    return proc.stdout + proc.stderr


@contextlib.contextmanager
def served_model(server_image: str, model_dir: Path, model_name: str = "taxi-fare") -> Iterator[str]:
    """The server image as KServe runs it (read-only root, the model mounted read-only at
    /mnt/models, the fareflow-server runtime's flags), until ready; yields its base URL.

    Containers here share the host's network (images/podman-setup.sh): the server listens on
    free host ports instead of KServe's 8080/8081."""
    from tests.conftest import free_ports

    model_dir.chmod(0o755)  # the image runs as uid 10001
    for f in model_dir.rglob("*"):
        f.chmod(0o755 if f.is_dir() else 0o644)
    port, grpc_port = free_ports(2)  # two different ports
    name = f"fareflow-server-test-{port}"
    podman(
        "run", "-d", "--rm", "--name", name, "--label", f"{RUN_LABEL}={SESSION_ID}", "--network", "host",
        "--read-only", "--tmpfs", "/tmp", "--env", "HOME=/tmp", "-v", f"{model_dir}:/mnt/models:ro", server_image,
        f"--model_name={model_name}", "--model_dir=/mnt/models", f"--http_port={port}", f"--grpc_port={grpc_port}",
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"server not ready in 90s:\n{logs(name)}")
            time.sleep(1)
        yield url
    finally:
        podman("rm", "-f", name, check=False)


def check_inference(url: str, model_name: str = "taxi-fare") -> str:
    """The cluster test's own checker (v1 and v2 protocols) against ``url``; returns its output."""
    checker = Path(__file__).resolve().parents[2] / "manifests" / "scripts" / "check_inference.py"
    proc = subprocess.run(
        [sys.executable, str(checker), "--url", url, "--model", model_name, "--min-fare", "3.25", "--max-fare", "180"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "v1 ok" in proc.stdout and "v2 ok" in proc.stdout, proc.stdout
    return proc.stdout


@pytest.fixture(scope="session")
def image_refs() -> dict[str, str]:
    """name -> full reference of each project image; fails if one has not been built."""
    from components.common.images import image

    refs = {name: image(name) for name in IMAGE_NAMES}
    missing = [ref for ref in refs.values() if podman("image", "exists", ref, check=False).returncode != 0]
    if missing:
        pytest.fail(f"images not built: {', '.join(missing)} (run `make images`)")
    return refs


@pytest.fixture(scope="session")
def podman_socket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Docker-compatible API socket served by ``podman system service``; yields DOCKER_HOST."""
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed (run `make podman-setup`)")
    workdir = tmp_path_factory.mktemp("podman")
    sock, log = workdir / "podman.sock", workdir / "service.log"
    url = f"unix://{sock}"
    with log.open("w") as log_file:  # a file, not a pipe: a full pipe would block the service
        proc = subprocess.Popen(
            ["podman", "system", "service", "--time=0", url], stdout=log_file, stderr=subprocess.STDOUT
        )
    previous = os.environ.get("DOCKER_HOST")
    try:
        import docker

        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"podman system service exited {proc.returncode}: {log.read_text()}")
            if sock.exists():
                try:
                    client = docker.DockerClient(base_url=url)
                    client.ping()
                    client.close()
                    break
                except Exception:  # noqa: BLE001 - socket not answering yet
                    pass
            if time.monotonic() > deadline:
                pytest.fail(f"podman system service did not answer on {url} within 60s")
            time.sleep(0.2)
        os.environ["DOCKER_HOST"] = url
        yield url
    finally:
        if previous is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = previous
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_container_without_auto_remove(
    client, image: str, command: list[str], volumes: dict, **run_args
) -> int:
    """Replacement for kfp.local.docker_task_handler.run_docker_container (kfp issue 13332).

    Runs the task's container without auto-remove, waits for its exit code, prints its
    logs (kfp shows them as the task's output), then removes it. Like Kubernetes (and
    KFP on a cluster), the task's command replaces the image's ENTRYPOINT. Images are
    never pulled: a missing image is an error naming ``make images``.
    """
    import docker

    if ":" not in image.rsplit("/", 1)[-1]:
        raise ValueError(f"image {image!r} has no tag; the project never uses latest")
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        raise RuntimeError(f"image {image!r} is not built here (run `make images`); not pulling it") from None
    run_args.pop("auto_remove", None)
    labels = {**run_args.pop("labels", {}), RUN_LABEL: SESSION_ID}
    if "entrypoint" not in run_args:
        run_args["entrypoint"], command = command[:1], command[1:]
    container = client.containers.run(
        image=image,
        command=command,
        volumes=volumes,
        detach=True,
        labels=labels,
        **run_args,
    )
    try:
        status = container.wait()
        print(container.logs(stdout=True, stderr=True).decode(errors="replace"), end="")
        return int(status["StatusCode"])
    finally:
        container.remove(force=True)


@pytest.fixture
def leftover_containers(podman_socket: str):
    """Function returning the containers this session started that still exist."""
    import docker

    def _list() -> list[str]:
        client = docker.DockerClient(base_url=podman_socket)
        try:
            return [
                c.name
                for c in client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={SESSION_ID}"})
            ]
        finally:
            client.close()

    return _list


@pytest.fixture
def pipeline_root(tmp_path: Path) -> Path:
    """DockerRunner's pipeline_root: bind-mounted at the same path, writable by the image user."""
    root = tmp_path / "pipeline_root"
    root.mkdir()
    root.chmod(0o777)  # the images run as uid 10001, the host side may be anyone
    return root


@pytest.fixture
def docker_runner(podman_socket: str, pipeline_root: Path, image_refs: dict[str, str], monkeypatch):
    """kfp.local initialised with DockerRunner on podman's socket, with the auto-remove fix."""
    from kfp import local
    from kfp.local import docker_task_handler

    monkeypatch.setattr(docker_task_handler, "run_docker_container", run_container_without_auto_remove)
    local.init(runner=local.DockerRunner(), pipeline_root=str(pipeline_root), raise_on_error=True)
    yield local
