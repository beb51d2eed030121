"""A PyTorchJob's pods as podman containers, and the Training Operator's part in running them.

:class:`PodmanPyTorchJob` takes the object ``components.cluster.training.train_job_object`` builds
and does for it what Training Operator v1.9.2 does (source read at the release-1.9 branch,
078ec30ff; the paths below are in github.com/kubeflow/training-operator):

* one pod per replica, named ``JOB-<type>-<index>`` (``GenGeneralName``), each running the
  replica template's one container with its command, args and env, plus what the operator
  appends (``pkg/controller.v1/pytorch/envvar.go:43-129``): ``PYTHONUNBUFFERED=1``;
  ``PET_NPROC_PER_NODE`` from ``nprocPerNode``; with a Master replica ``MASTER_ADDR`` /
  ``PET_MASTER_ADDR`` (the master pod's name, ``master.go:42-60``), ``MASTER_PORT`` /
  ``PET_MASTER_PORT``, ``WORLD_SIZE``, ``RANK`` and ``PET_NODE_RANK`` (Master 0, Worker i ->
  i + 1) and ``PET_NNODES`` (the replica count); with an ``elasticPolicy`` instead
  ``PET_RDZV_ENDPOINT=JOB-worker-0:PORT``, ``PET_RDZV_BACKEND``, ``PET_NNODES=MIN:MAX`` and
  ``PET_MAX_RESTARTS`` (``elastic.go:68-160``), and no master variables;
* the ``envFrom`` Secret ``fareflow-s3``: the S3 server's credentials and endpoint;
* ``restartPolicy: ExitCode`` (``pkg/controller.v1/common/pod.go:334-379``): the pod itself
  runs with ``restartPolicy: Never`` (``pkg/core/pod.go:81-88``); when it has failed, an exit
  code >= 128 (``pkg/util/train/train_util.go:24``: ``exitCode >= 128``) gets the pod deleted,
  and the next reconcile, finding no pod for that index, creates it again from the same
  template (``pod.go:316-321``). Only that one pod: the other pods are left as they are. An
  exit code 1-127 fails the job (``pod.go:367-372``). A deleted pod is recreated whatever its
  exit status (it simply is missing, ``pod.go:316``).
* the job's status (``pkg/controller.v1/pytorch/pytorchjob_controller.go:383-426``): with a
  Master, Succeeded once the Master succeeded; without one (elastic), once every worker or --
  with an ``elasticPolicy`` -- any worker succeeded.

Not mirrored: the backoff accounting (``common/job.go:189-210``; it counts container restarts
of running pods, always 0 under ``restartPolicy: Never``, and work-queue requeues) and the
init container that makes static workers wait for the master's DNS name.

Pods as containers: they share the host's network (``images/podman-setup.sh``), so each pod
gets a loopback address of its own (127.X.Y.Z, its "pod IP") and its hostname, and every
container's /etc/hosts lists every pod of the job -- what the job's headless Service gives
pods on a cluster. torchrun's c10d rendezvous then finds, as in a pod, that only worker-0's
hostname is the endpoint's host (``torch.distributed.elastic.rendezvous.utils
._matches_machine_hostname``), and gloo binds to each pod's own address. The operator's fixed
ports (23456 for the master, the elasticPolicy's rdzvPort) are replaced by free ones: on the
host network two jobs would otherwise collide.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass, field

from .conftest import RUN_LABEL, SESSION_ID, podman

SECRET_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL")
SUCCEEDED, FAILED = "Succeeded", "Failed"


def retryable(exit_code: int) -> bool:
    """``IsRetryableExitCode`` (pkg/util/train/train_util.go:24)."""
    return exit_code >= 128


@dataclass
class Pod:
    name: str  # the pod's name and hostname: JOB-master-0, JOB-worker-1
    replica_type: str  # Master or Worker
    index: int
    address: str  # its "pod IP", a loopback address of its own
    env: dict[str, str]
    image: str
    command: list[str]
    args: list[str]
    container: str | None = None  # the running incarnation's container name
    incarnations: int = 0  # how many times the operator has created this pod
    logs: list[str] = field(default_factory=list)  # the logs of every incarnation, oldest first


class PodmanPyTorchJob:
    """``job`` (a PyTorchJob dict) run as podman containers under the operator's rules.

    ``extra_env`` and ``volumes`` (podman ``-v`` specs) are not the operator's: they let a
    candidate fix be tried against the same job before the image is rebuilt (an environment
    variable for torchrun, a patched module mounted over the image's copy)."""

    def __init__(
        self, job: dict, s3_endpoint: str, secret: dict[str, str] | None = None,
        extra_env: dict[str, str] | None = None, volumes: tuple[str, ...] = (),
    ) -> None:  # fmt: skip
        self.volumes = volumes
        self.job = job
        self.name = job["metadata"]["name"]
        spec = job["spec"]
        self.specs = spec["pytorchReplicaSpecs"]
        self.elastic = spec.get("elasticPolicy")
        self.condition: str | None = None
        self.events: list[str] = []  # what the stand-in did, for failure messages and asserts
        self._suffix = uuid.uuid4().hex[:6]
        from tests.conftest import free_port

        net = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}"
        secret = secret or {
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": s3_endpoint,
        }  # fmt: skip
        port = free_port()
        order = [t for t in ("Master", "Worker") if t in self.specs]
        total = sum(int(self.specs[t]["replicas"]) for t in order)
        self.pods: dict[str, Pod] = {}
        host = 10
        for rtype in order:
            rspec = self.specs[rtype]
            assert rspec["restartPolicy"] == "ExitCode", rspec["restartPolicy"]
            (c,) = rspec["template"]["spec"]["containers"]
            assert c["name"] == "pytorch"  # the container whose exit code the operator reads
            assert c["envFrom"] == [{"secretRef": {"name": "fareflow-s3", "optional": True}}]
            for index in range(int(rspec["replicas"])):
                name = f"{self.name}-{rtype.lower()}-{index}"
                env = dict(secret)  # envFrom first; explicit env entries win over it
                env |= {e["name"]: e["value"] for e in c.get("env", [])}
                env["PYTHONUNBUFFERED"] = "1"
                if "Master" in self.specs:
                    master = f"{self.name}-master-0"
                    rank = index + (1 if rtype == "Worker" else 0)
                    env |= {
                        "MASTER_PORT": str(port), "PET_MASTER_PORT": str(port),
                        "MASTER_ADDR": master, "PET_MASTER_ADDR": master,
                        "WORLD_SIZE": str(total * int(spec["nprocPerNode"])),
                        "RANK": str(rank), "PET_NODE_RANK": str(rank),
                    }  # fmt: skip
                env["PET_NPROC_PER_NODE"] = spec["nprocPerNode"]
                if self.elastic:
                    p = self.elastic
                    env |= {
                        "PET_RDZV_ENDPOINT": f"{self.name}-worker-0:{port}",
                        "PET_RDZV_BACKEND": p["rdzvBackend"],
                        "PET_NNODES": f"{p['minReplicas']}:{p['maxReplicas']}",
                    }
                    if "maxRestarts" in p:
                        env["PET_MAX_RESTARTS"] = str(p["maxRestarts"])
                else:
                    env["PET_NNODES"] = str(total)
                env |= extra_env or {}
                self.pods[name] = Pod(
                    name, rtype, index, f"{net}.{host}", env, c["image"], list(c["command"]), list(c["args"])
                )
                host += 1

    # --- pods -------------------------------------------------------------------------------

    def create(self, name: str) -> None:
        """``createNewPod``: the pod from its replica's template (pod.go:383)."""
        pod = self.pods[name]
        pod.incarnations += 1
        pod.container = f"{name}-{self._suffix}-{pod.incarnations}"
        args = [
            "run", "-d", "--name", pod.container, "--label", f"{RUN_LABEL}={SESSION_ID}",
            "--network", "host", "--hostname", name, "--read-only", "--tmpfs", "/tmp",
        ]  # fmt: skip
        for other in self.pods.values():
            args += ["--add-host", f"{other.name}:{other.address}"]
        for key, value in pod.env.items():
            args += ["--env", f"{key}={value}"]
        for v in self.volumes:
            args += ["-v", v]
        args += ["--entrypoint", pod.command[0], pod.image, *pod.command[1:], *pod.args]
        podman(*args)
        self.events.append(f"created {name} (#{pod.incarnations})")

    def state(self, name: str) -> tuple[str, int] | None:
        """(status, exit code) of the pod's container; None when it has been deleted."""
        pod = self.pods[name]
        if pod.container is None:
            return None
        out = podman(
            "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", pod.container
        ).stdout.split()
        return out[0], int(out[1])

    def _save_logs(self, pod: Pod) -> None:
        proc = podman("logs", pod.container, check=False)
        pod.logs.append(proc.stdout + proc.stderr)

    def _remove(self, pod: Pod) -> None:
        self._save_logs(pod)
        podman("rm", "-f", pod.container, check=False)
        pod.container = None

    def kill(self, name: str, signal: str = "KILL") -> None:
        """What the kernel's OOM killer or a lost node does to a pod's process: ``podman kill``."""
        podman("kill", "--signal", signal, self.pods[name].container)
        self.events.append(f"killed {name} with SIG{signal}")

    def delete(self, name: str, grace: int = 30) -> int:
        """Delete the pod as Kubernetes does (SIGTERM, ``grace`` seconds, SIGKILL, gone):
        ``podman stop -t GRACE`` then remove it. Returns the container's exit code."""
        pod = self.pods[name]
        podman("stop", "-t", str(grace), pod.container, timeout=grace + 60)
        code = self.state(name)[1]
        self._remove(pod)
        self.events.append(f"deleted {name} (exit {code})")
        return code

    def delete_all(self) -> None:
        for pod in self.pods.values():
            if pod.container is not None:
                self._remove(pod)

    def logs(self, name: str) -> str:
        """Every incarnation's logs of pod ``name`` (the running one's too)."""
        pod = self.pods[name]
        current = []
        if pod.container is not None:
            proc = podman("logs", pod.container, check=False)
            current = [proc.stdout + proc.stderr]
        return "\n".join(pod.logs + current)

    def all_logs(self) -> str:
        return (
            "\n".join(f"--- {n}\n{self.logs(n)}" for n in self.pods)
            + "\n--- operator\n"
            + "\n".join(self.events)
        )

    # --- the operator -----------------------------------------------------------------------

    def start(self) -> None:
        self.reconcile()

    def reconcile(self) -> str | None:
        """One pass of ``ReconcilePods`` for every replica type, then the job's status; returns
        the job's terminal condition (Succeeded, Failed) or None while it runs."""
        if self.condition:
            return self.condition
        succeeded: dict[str, int] = {t: 0 for t in self.specs}
        for name, pod in self.pods.items():
            st = self.state(name)
            if st is None:
                self.create(name)  # pod.go:316-321: no pod for this index
                continue
            status, code = st
            if status not in ("exited", "stopped"):
                continue
            if code == 0:
                succeeded[pod.replica_type] += 1
            elif retryable(code):  # pod.go:350-366: delete it; the next pass creates it again
                self._remove(pod)
                self.events.append(f"{name} exited {code}: retryable, pod deleted")
            else:  # pod.go:367-372
                self.events.append(f"{name} exited {code}: not retryable, job Failed")
                self.condition = FAILED
                return FAILED
        # pytorchjob_controller.go:383-426
        if "Master" in self.specs:
            if succeeded["Master"] == int(self.specs["Master"]["replicas"]):
                self.condition = SUCCEEDED
        else:
            workers = int(self.specs["Worker"]["replicas"])
            if succeeded["Worker"] == workers or (self.elastic and succeeded["Worker"] > 0):
                self.condition = SUCCEEDED
        if self.condition:
            self.events.append(f"job {self.condition}")
        return self.condition

    def wait(self, timeout: float, poll: float = 1.0) -> str | None:
        """Reconcile until the job is Succeeded or Failed; None if neither within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.reconcile():
                return self.condition
            time.sleep(poll)
        return None
