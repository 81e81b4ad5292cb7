"""Where the platform keeps its state on a Kubernetes node, and the settings of the backend.

What lives where (prefix ``gpu-aiops.io/``):

- cordon: ``spec.unschedulable``; who set it: annotation ``cordon-owner`` (a cordon without it
  belongs to someone else, and this platform never lifts it);
- GPUs of a node: annotation ``gpus`` (``[{index, uuid, pci_bus_id}]``, from GPU feature
  discovery), else the node agent's NVML inventory (``inventory``, the ``gpu_inventory`` bucket),
  else ``nvidia.com/gpu`` capacity with unknown ids; their health: annotation
  ``gpu-health`` (``{"<index>": "fallen_off_bus" | "error"}``, written by the platform);
- isolation: annotation ``isolated-gpus`` (``{"<index>": {reason, by, at}}``) plus the taint
  ``gpu-isolated:NoSchedule``, so no new gang lands on a node with a GPU out;
- rack, leaf switch, spare pool: node labels (configurable; ``aiops/rack``, ``aiops/leaf``,
  ``aiops/pool=spare`` by default);
- drain: cordon, then the Eviction API for every pod but DaemonSet and mirror pods; a
  PodDisruptionBudget refusing an eviction (HTTP 429) leaves that pod running and is reported;
- GPU reset and node reboot: requests a node agent carries out (annotation ``reset-requested`` /
  ``reboot-requested``); the API has no verb for either.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mcp_server.backends.kubernetes.api import Json
from mcp_server.backends.kubernetes.jobs import PREFIX, JobKind

GPUS = PREFIX + "gpus"
GPU_HEALTH = PREFIX + "gpu-health"
LAST_XID = PREFIX + "last-xid"
ISOLATED = PREFIX + "isolated-gpus"
CORDON_OWNER = PREFIX + "cordon-owner"
CORDON_REASON = PREFIX + "cordon-reason"
RESET_REQUESTED = PREFIX + "reset-requested"
REBOOT_REQUESTED = PREFIX + "reboot-requested"
ISOLATION_TAINT = PREFIX + "gpu-isolated"


@dataclass(frozen=True)
class KubernetesConfig:
    cluster: str = "k8s"
    job_kind: JobKind = "volcano"
    job_namespace: str = "default"
    rack_label: str = "aiops/rack"
    leaf_label: str = "aiops/leaf"
    pool_label: str = "aiops/pool"
    spare_value: str = "spare"
    gpu_resource: str = "nvidia.com/gpu"
    drain_poll_s: float = 2.0
    """How often a drain looks whether the pods it evicted are gone (they terminate first)."""
    drain_timeout_s: float = 300.0
    """How long a drain waits for them; the ones still terminating then are reported."""


def annotations_of(obj: Json) -> dict[str, str]:
    annotations: dict[str, str] = obj.get("metadata", {}).get("annotations") or {}
    return annotations


def json_annotation(obj: Json, key: str) -> dict[str, Any]:
    try:
        value = json.loads(annotations_of(obj).get(key, "{}"))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def now() -> datetime:
    return datetime.now(UTC)


def _taints(obj: Json) -> list[Json]:
    taints: list[Json] = obj.get("spec", {}).get("taints") or []
    return taints


def with_taint(obj: Json, key: str, value: str) -> list[Json]:
    """The node's taints with ``key=value:NoSchedule`` set (a merge patch replaces the whole list)."""
    return [t for t in _taints(obj) if t.get("key") != key] + [
        {"key": key, "value": value, "effect": "NoSchedule"}
    ]


def without_taint(obj: Json, key: str) -> list[Json]:
    return [t for t in _taints(obj) if t.get("key") != key]
