"""Training jobs on Kubernetes: Volcano ``Job``, Kubeflow ``PyTorchJob`` or ``JobSet``, as configured.

Each kind is read through its own custom resource, and restarted through its own API:

- Volcano: a ``bus.volcano.sh/v1alpha1`` ``Command`` with action ``RestartJob`` aimed at the job
  (what Volcano's controller executes: the whole gang is restarted);
- PyTorchJob: ``spec.runPolicy.suspend`` true, then false (the training operator deletes and
  recreates every replica);
- JobSet: ``spec.suspend`` true, then false (the JobSet controller suspends and recreates every
  child Job).

The training loop itself resumes from its newest checkpoint. What the scheduler does not know
(step, step time, checkpoint) the training loop writes as ``gpu-aiops.io/*`` annotations on its job
(``STEP`` and the other keys below); absent ones read as unknown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from contracts.tools import JobState
from mcp_server.backends.kubernetes.api import Json, KubeApi

JobKind = Literal["volcano", "pytorchjob", "jobset"]

PREFIX = "gpu-aiops.io/"
STEP = PREFIX + "step"
STEP_TIME = PREFIX + "step-time-s"
BASELINE_STEP = PREFIX + "baseline-step-s"
CHECKPOINT_STEP = PREFIX + "checkpoint-step"
CHECKPOINT_AT = PREFIX + "checkpoint-at"
CHECKPOINT_INTERVAL = PREFIX + "checkpoint-interval-s"
GPU_HOURS_LOST = PREFIX + "gpu-hours-lost"
RESTARTS = PREFIX + "restarts"
LAST_RESTART = PREFIX + "last-restart"


@dataclass(frozen=True)
class JobApi:
    kind: JobKind
    group: str
    version: str
    plural: str
    pod_label: str
    state_of: Callable[[Json], JobState]
    restarts_of: Callable[[Json], int]

    def path(self, namespace: str, name: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}/namespaces/{namespace}/{self.plural}"
        return f"{base}/{name}" if name else base


def _last_true_condition(obj: Json) -> str | None:
    conditions = [c for c in obj.get("status", {}).get("conditions") or [] if c.get("status") == "True"]
    return conditions[-1].get("type") if conditions else None


def _volcano_state(obj: Json) -> JobState:
    phase = obj.get("status", {}).get("state", {}).get("phase", "")
    return {
        "Running": "running",
        "Restarting": "restarting",
        "Pending": "pending",
        "Inqueue": "pending",
        "Completed": "completed",
        "Completing": "completed",
        "Failed": "failed",
        "Aborted": "failed",
        "Aborting": "failed",
        "Terminated": "failed",
        "Terminating": "failed",
    }.get(phase, "unknown")  # type: ignore[return-value]


def _pytorch_state(obj: Json) -> JobState:
    return {
        "Running": "running",
        "Restarting": "restarting",
        "Created": "pending",
        "Suspended": "pending",
        "Succeeded": "completed",
        "Failed": "failed",
    }.get(_last_true_condition(obj) or "", "unknown")  # type: ignore[return-value]


def _jobset_state(obj: Json) -> JobState:
    condition = _last_true_condition(obj)
    if condition == "Completed":
        return "completed"
    if condition == "Failed":
        return "failed"
    if condition == "Suspended" or obj.get("spec", {}).get("suspend"):
        return "pending"
    active = sum(r.get("active", 0) for r in obj.get("status", {}).get("replicatedJobsStatus") or [])
    return "running" if active else "pending"


def _annotated_restarts(obj: Json) -> int:
    try:
        return int(obj.get("metadata", {}).get("annotations", {}).get(RESTARTS, "0"))
    except ValueError:
        return 0


JOB_APIS: dict[JobKind, JobApi] = {
    "volcano": JobApi(
        kind="volcano",
        group="batch.volcano.sh",
        version="v1alpha1",
        plural="jobs",
        pod_label="volcano.sh/job-name",
        state_of=_volcano_state,
        restarts_of=lambda obj: int(obj.get("status", {}).get("retryCount", 0)),
    ),
    "pytorchjob": JobApi(
        kind="pytorchjob",
        group="kubeflow.org",
        version="v1",
        plural="pytorchjobs",
        pod_label="training.kubeflow.org/job-name",
        state_of=_pytorch_state,
        restarts_of=_annotated_restarts,
    ),
    "jobset": JobApi(
        kind="jobset",
        group="jobset.x-k8s.io",
        version="v1alpha2",
        plural="jobsets",
        pod_label="jobset.sigs.k8s.io/jobset-name",
        state_of=_jobset_state,
        restarts_of=lambda obj: int(obj.get("status", {}).get("restarts", 0)),
    ),
}


def annotation_float(obj: Json, key: str) -> float | None:
    try:
        return float(obj.get("metadata", {}).get("annotations", {})[key])
    except (KeyError, ValueError, TypeError):
        return None


def annotation_time(obj: Json, key: str) -> datetime | None:
    text = obj.get("metadata", {}).get("annotations", {}).get(key)
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


async def restart(api: KubeApi, job_api: JobApi, namespace: str, obj: Json, reason: str, actor: str) -> str:
    """Restart ``obj`` through its own API; returns what was done, in words."""
    meta = obj["metadata"]
    name = meta["name"]
    restarts = _annotated_restarts(obj) + 1
    note = {"metadata": {"annotations": {RESTARTS: str(restarts), LAST_RESTART: f"{actor}: {reason}"[:500]}}}
    if job_api.kind == "volcano":
        await api.post(
            f"/apis/bus.volcano.sh/v1alpha1/namespaces/{namespace}/commands",
            {
                "apiVersion": "bus.volcano.sh/v1alpha1",
                "kind": "Command",
                "metadata": {
                    "generateName": f"{name}-restartjob-",
                    "namespace": namespace,
                    "ownerReferences": [
                        {
                            "apiVersion": f"{job_api.group}/{job_api.version}",
                            "kind": "Job",
                            "name": name,
                            "uid": meta["uid"],
                            "controller": True,
                            "blockOwnerDeletion": True,
                        }
                    ],
                },
                "target": {
                    "apiVersion": f"{job_api.group}/{job_api.version}",
                    "kind": "Job",
                    "name": name,
                    "uid": meta["uid"],
                },
                "action": "RestartJob",
                "reason": "gpu-aiops",
                "message": f"{actor}: {reason}"[:500],
            },
        )
        await api.merge_patch(job_api.path(namespace, name), note)
        return f"Volcano RestartJob command created for {name}"
    suspend = (
        (lambda on: {"spec": {"runPolicy": {"suspend": on}}})
        if job_api.kind == "pytorchjob"
        else (lambda on: {"spec": {"suspend": on}})
    )
    await api.merge_patch(job_api.path(namespace, name), suspend(True) | note)
    await api.merge_patch(job_api.path(namespace, name), suspend(False))
    return f"{job_api.kind} {name} suspended and resumed: every replica is recreated and resumes from its checkpoint"
