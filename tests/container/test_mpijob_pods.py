"""The cluster's Horovod path without a cluster: the MPIJob that ``train_job`` creates
(``train_backend=horovod``), its launcher and two worker pods played by trainer-image containers.

Each container runs exactly the container spec of ``components.cluster.training.train_job_object(...,
backend="horovod")`` (command, args, env, envFrom, security context, scratch volumes) plus what the
Training Operator v1.9.2 adds (``pkg/controller.v1/mpi/mpijob_controller.go``):

- ``newConfigMap``: ``/etc/mpi/kubexec.sh`` (the rsh agent: ``/opt/kube/kubectl exec POD --
  /bin/sh -c "$*"``) and ``/etc/mpi/hostfile`` (``NAME-worker-i slots=S``), plus
  ``discover_hosts.sh`` (``updateDiscoverHostsInConfigMap``);
- ``newLauncher``: the launcher's ``OMPI_MCA_plm_rsh_agent`` / ``OMPI_MCA_orte_default_hostfile``
  (and the NVIDIA/Intel MPI variables), ``/etc/mpi`` and the ``/opt/kube`` kubectl volume;
- ``newWorker``: ``sleep 365d`` when the spec has no command, and ``/etc/mpi/kubexec.sh``.

What is not a pod here: the kubectl the operator's init container delivers is a stand-in
(``kubectl_standin.py``) that plays ``kubectl exec POD`` through the host's exec relay as
``podman exec`` into the worker container named POD (``exec_relay.py``); the launcher's
ServiceAccount token and RBAC are the k8s tier's to check. Containers sit on podman's bridge
network, each with its own address and its pod name as hostname (as pods do; the v1 operator
makes no Service, so no pod resolves another's name): mpirun starts ``orted`` in each worker over
the rsh agent, the daemons and ranks connect back over TCP. The splits and the model live in an
S3 server (moto) reachable from that network, the way they live in KFP's object store; the
model comes back through ``copy_model_dir`` and the server image serves it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import RUN_LABEL, SESSION_ID, check_inference, logs, podman, served_model, wait_for_exit
from .exec_relay import ExecRelay

pytestmark = pytest.mark.container

NETWORK = "podman"  # podman's default bridge: one address per container, like pod IPs
KUBECTL_DIR = "/opt/kube"  # the operator's kubectlMountPath
CONFIG_DIR = "/etc/mpi"  # configMountPath
JOB_TIMEOUT_S = 420


# --- the Training Operator's part ---------------------------------------------------------


def operator_config_map(job: dict, running_workers: int) -> dict[str, str]:
    """``newConfigMap`` (+ ``updateDiscoverHostsInConfigMap``) for a launcher without GPUs."""
    name = job["metadata"]["name"]
    spec = job["spec"]
    slots = spec.get("slotsPerWorker", 1)
    workers = spec["mpiReplicaSpecs"]["Worker"]["replicas"]
    kubexec = f"#!/bin/sh\nset -x\nPOD_NAME=$1\nshift\n{KUBECTL_DIR}/kubectl exec ${{POD_NAME}}"
    if spec.get("mainContainer"):
        kubexec += f" --container {spec['mainContainer']}"
    kubexec += ' -- /bin/sh -c "$*"'
    return {
        "kubexec.sh": kubexec,
        "hostfile": "".join(f"{name}-worker-{i} slots={slots}\n" for i in range(workers)),
        "discover_hosts.sh": "#!/bin/sh"
        + "".join(f"\necho {name}-worker-{i}:{slots}" for i in range(running_workers)),
    }


def operator_launcher_env() -> dict[str, str]:
    """What ``newLauncher`` appends to the launcher container's env (launcher without GPUs)."""
    return {
        "OMPI_MCA_plm_rsh_agent": f"{CONFIG_DIR}/kubexec.sh",
        "OMPI_MCA_orte_default_hostfile": f"{CONFIG_DIR}/hostfile",
        "NVIDIA_VISIBLE_DEVICES": "",
        "NVIDIA_DRIVER_CAPABILITIES": "",
        "I_MPI_HYDRA_BOOTSTRAP": "rsh",
        "I_MPI_HYDRA_BOOTSTRAP_EXEC": f"{CONFIG_DIR}/kubexec.sh",
    }


def write_config_volume(config: dict[str, str], directory: Path, keys: tuple[str, ...]) -> Path:
    """The ConfigMap volume's items with the operator's modes (scripts 0555, hostfile 0444)."""
    directory.mkdir(parents=True)
    for key in keys:
        path = directory / key
        path.write_text(config[key])
        path.chmod(0o444 if key == "hostfile" else 0o555)
    directory.chmod(0o755)
    return directory


# --- a pod's container as podman run -------------------------------------------------------


@dataclass(frozen=True)
class Secret:
    name: str
    data: dict[str, str]


def podman_run_args(
    container: dict,
    pod_spec: dict,
    name: str,
    *,
    secrets: dict[str, Secret],
    extra_env: dict[str, str] | None = None,
    mounts: list[str] = (),
) -> list[str]:
    """``podman run`` arguments playing one pod container: its env (envFrom Secrets first, env
    over them, as Kubernetes resolves them), security context, emptyDir mounts, command + args.
    The pod's name is the container's name and hostname."""
    args = ["run", "-d", "--name", name, "--hostname", name, "--network", NETWORK]
    args += ["--label", f"{RUN_LABEL}={SESSION_ID}"]
    sc = container.get("securityContext", {})
    if sc.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    if "runAsUser" in sc:
        args += ["--user", str(sc["runAsUser"])]
    if "ALL" in sc.get("capabilities", {}).get("drop", []):
        args.append("--cap-drop=all")
    if sc.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        assert "emptyDir" in volume, f"volume {mount['name']}: only emptyDir is played here"
        size = volume["emptyDir"].get("sizeLimit", "").replace("Gi", "g").replace("Mi", "m")
        args += ["--tmpfs", f"{mount['mountPath']}:rw,exec{f',size={size}' if size else ''}"]
    args += list(mounts)
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref = source["secretRef"]
        if ref["name"] in secrets:
            env |= secrets[ref["name"]].data
        else:
            assert ref.get("optional"), f"Secret {ref['name']} is not optional and not there"
    env |= {e["name"]: e["value"] for e in container.get("env", [])}
    env |= extra_env or {}
    for key, value in env.items():
        args += ["--env", f"{key}={value}"]
    argv = [*container.get("command", []), *container.get("args", [])]
    return [*args, "--entrypoint", argv[0], container["image"], *argv[1:]]


# --- fixtures ------------------------------------------------------------------------------


def _network_gateway() -> str:
    (net,) = json.loads(podman("network", "inspect", NETWORK).stdout)
    subnets = net.get("subnets") or [
        r for p in net.get("plugins", []) for rs in p.get("ipam", {}).get("ranges", []) for r in rs
    ]
    return subnets[0]["gateway"]


@pytest.fixture
def bridge_s3(image_refs, monkeypatch) -> Iterator:
    """An S3 server (moto) on the bridge's gateway address, reachable from the containers (the
    session's moto listens on 127.0.0.1 only); the host's AWS_* variables point at it too."""
    import boto3
    from moto.server import ThreadedMotoServer

    from tests.conftest import S3Endpoint, free_port

    if "trainer" not in image_refs:
        pytest.skip("trainer image not selected (FAREFLOW_IMAGE_NAMES)")
    # The bridge interface exists once a container has joined the network.
    podman("run", "--rm", "--network", NETWORK, "--entrypoint", "true", image_refs["trainer"])
    gateway = _network_gateway()
    port = free_port()
    server = ThreadedMotoServer(ip_address=gateway, port=port, verbose=False)
    server.start()
    endpoint = f"http://{gateway}:{port}"
    for var in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(var, raising=False)
    creds = {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint,
    }  # fmt: skip
    for key, value in creds.items():
        monkeypatch.setenv(key, value)
    try:
        yield S3Endpoint(endpoint, boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1"))
    finally:
        server.stop()


@dataclass
class MPIJobRun:
    launcher: str
    workers: list[str]
    exit_code: int | None
    launcher_log: str
    relay: ExecRelay


@pytest.fixture
def run_mpijob(tmp_path: Path) -> Iterator:
    """``run(job, secrets) -> MPIJobRun``: the operator's pods for ``job``, the launcher run to
    its end (or JOB_TIMEOUT_S); every container and the relay are removed afterwards."""
    started: list[str] = []
    relays: list[ExecRelay] = []

    def run(job: dict, secrets: dict[str, Secret]) -> MPIJobRun:
        name = job["metadata"]["name"]
        replicas = job["spec"]["mpiReplicaSpecs"]
        worker_tpl, launcher_tpl = replicas["Worker"]["template"], replicas["Launcher"]["template"]
        workers = [f"{name}-worker-{i}" for i in range(replicas["Worker"]["replicas"])]
        config = operator_config_map(job, running_workers=len(workers))
        work = tmp_path / name
        worker_config = write_config_volume(config, work / "worker-config", ("kubexec.sh",))
        launcher_config = write_config_volume(
            config, work / "launcher-config", ("kubexec.sh", "hostfile", "discover_hosts.sh")
        )
        # A short directory of its own: a unix socket's path has at most 107 bytes.
        relay = ExecRelay(Path(tempfile.mkdtemp(prefix="ff-kube-")), {w: w for w in workers}).start()
        relays.append(relay)

        # The launcher first: the operator creates it in the same pass as the workers, so it
        # must wait for them itself (the builder's `kubectl wait`) before mpirun execs into them.
        launcher = f"{name}-launcher"
        (lc,) = launcher_tpl["spec"]["containers"]
        podman(*podman_run_args(
            lc, launcher_tpl["spec"], launcher, secrets=secrets, extra_env=operator_launcher_env(),
            mounts=["-v", f"{launcher_config}:{CONFIG_DIR}:ro", "-v", f"{relay.directory}:{KUBECTL_DIR}:ro"],
        ))  # fmt: skip
        started.append(launcher)
        (wc,) = worker_tpl["spec"]["containers"]
        if not wc.get("command"):
            wc = {**wc, "command": ["sleep"], "args": ["365d"]}
        for worker in workers:
            podman(*podman_run_args(
                wc, worker_tpl["spec"], worker, secrets=secrets,
                mounts=["-v", f"{worker_config}:{CONFIG_DIR}:ro"],
            ))  # fmt: skip
            started.append(worker)
        code = wait_for_exit(launcher, JOB_TIMEOUT_S)
        return MPIJobRun(launcher, workers, code, logs(launcher), relay)

    try:
        yield run
    finally:
        for relay in relays:
            relay.close()
            shutil.rmtree(relay.directory, ignore_errors=True)
        for cname in started:
            subprocess.run(["podman", "rm", "-f", "-t", "0", cname], capture_output=True, check=False)


# --- the tests -----------------------------------------------------------------------------


def _upload(s3, bucket: str, root: Path, prefix: str) -> None:
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        s3.put(bucket, f"{prefix}/{path.relative_to(root).as_posix()}", path)


def _horovod_job(image_refs, splits_s3: str, params, workers: int = 2) -> tuple[dict, str]:
    from components.cluster import core, models, training

    settings = core.ClusterSettings(image_tag=image_refs["trainer"].rsplit(":", 1)[1])
    name = training.train_job_name(splits_s3, params, workers, "horovod")
    output_s3 = models.model_output_uri(splits_s3, name)
    job = training.train_job_object(
        settings, name, splits_s3, output_s3, params, workers=workers, backend="horovod"
    )
    assert job["kind"] == "MPIJob" and job["apiVersion"] == "kubeflow.org/v1"
    launcher_spec = job["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]
    (lc,) = launcher_spec["containers"]
    assert lc["image"] == image_refs["trainer"]
    assert "nvidia.com/gpu" not in json.dumps(lc.get("resources", {}))  # not a GPU launcher
    return job, output_s3


def _s3_secret(s3) -> dict[str, Secret]:
    from components.cluster import core

    return {
        core.S3_SECRET: Secret(core.S3_SECRET, {
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": s3.endpoint,
        })
    }  # fmt: skip


def _orted_execs(run: MPIJobRun) -> dict[str, list]:
    return {
        w: [e for e in run.relay.execs if e.pod == w and "orted" in " ".join(e.argv)] for w in run.workers
    }


def test_mpijob_launcher_and_workers_train_from_s3_and_the_server_serves_the_model(
    image_refs, bridge_s3, run_mpijob, tmp_path
):
    from components.cluster import core, models, training
    from tests.components.train.conftest import trips, write_splits

    bucket = bridge_s3.bucket("mlpipeline")
    splits_uri = f"minio://mlpipeline/v2/artifacts/fareflow-taxi-fare/run-{SESSION_ID}/sample/7/splits"
    splits = write_splits(trips(4000), tmp_path / "splits", shards=2)
    _upload(bridge_s3, bucket, splits, splits_uri.split("/", 3)[3])
    params = training.TrainParams(epochs=3, batch_size=256)
    job, output_s3 = _horovod_job(image_refs, core.s3_uri(splits_uri), params)

    run = run_mpijob(job, _s3_secret(bridge_s3))
    assert run.exit_code == 0, f"launcher exit {run.exit_code}:\n{run.launcher_log}"
    # mpirun started one orted in each worker through kubexec.sh -> kubectl exec, and each stayed
    # attached until the job ended cleanly; nothing else was exec'd and no worker was missed.
    orted = _orted_execs(run)
    assert all(len(execs) == 1 and execs[0].returncode == 0 for execs in orted.values()), run.relay.execs
    assert {e.pod for e in run.relay.execs} == set(run.workers)
    assert [w.returncode for w in run.relay.waits] == [0], run.relay.waits  # waited for its workers
    assert "kubectl exec" in run.launcher_log  # kubexec.sh's `set -x` trace: the agent mpirun used

    # Rank 0 wrote the model directory; the task copies it into its Model artifact.
    model_dir = tmp_path / "model"
    files = models.copy_model_dir(output_s3, str(model_dir))
    assert {"model.json", "model.pt"} <= set(files)
    train_meta = json.loads((model_dir / "model.json").read_text())["training"]
    assert train_meta["world_size"] == 2, train_meta
    metrics = models.read_model_metrics(str(model_dir))
    assert metrics["test_rmse"] < 0.6 * metrics["baseline_rmse"], metrics

    with served_model(image_refs["server"], model_dir) as url:
        check_inference(url)


def test_mpijob_with_missing_splits_fails_with_one_line(image_refs, bridge_s3, run_mpijob):
    from components.cluster import training

    bridge_s3.bucket("mlpipeline")
    missing = f"s3://mlpipeline/v2/artifacts/fareflow-taxi-fare/run-{SESSION_ID}/sample/0/no-splits"
    job, output_s3 = _horovod_job(image_refs, missing, training.TrainParams(epochs=1))

    run = run_mpijob(job, _s3_secret(bridge_s3))
    assert run.exit_code not in (0, None), f"launcher exit {run.exit_code}:\n{run.launcher_log}"
    errors = [line for line in run.launcher_log.splitlines() if "fareflow train: error:" in line]
    assert errors and all("no-splits" in line for line in errors), run.launcher_log
    assert "Traceback" not in run.launcher_log, run.launcher_log
    assert not bridge_s3.keys("mlpipeline", output_s3.split("/", 3)[3]), "a failed job wrote output"
