"""NATS subject names, streams and buckets: the wire contract of ARCHITECTURE.md in one place."""

from __future__ import annotations

import re
from typing import Literal

EventKind = Literal["xid", "ecc", "hang", "throughput", "numerics"]

# Streams and buckets.
STREAM_EVENTS = "GPU_EVENTS"
STREAM_DLQ = "GPU_DLQ"
STREAM_AUDIT = "GPU_AUDIT"
STREAM_KMSG = "GPU_KMSG"
STREAM_INCIDENTS = "GPU_INCIDENTS"
STREAM_DCGM = "GPU_DCGM"
BUCKET_INCIDENTS = "incidents"
BUCKET_RUNBOOK_RUNS = "runbook_runs"
BUCKET_LEASES = "leases"
BUCKET_CORRELATION = "correlation"
BUCKET_IDEMPOTENCY = "idempotency"
BUCKET_NOTIFICATIONS = "notifications"
BUCKET_APPROVALS = "approvals"
BUCKET_BREAKER = "breaker"
BUCKET_GPU_INVENTORY = "gpu_inventory"
BUCKET_SLACK_REQUESTS = "slack_requests"
BUCKET_REPAIRS = "repairs"
BUCKET_CONSOLE_SESSIONS = "console_sessions"
BUCKET_CHECKPOINT_TIMES = "checkpoint_times"
BUCKET_PREEMPTIONS = "preemptions"
STREAM_ESCALATIONS = "GPU_ESCALATIONS"

_UNSAFE = re.compile(r"[.*>\s]")


def token(name: str) -> str:
    """Encode a name (node, job, cluster) into one subject token.

    Dots, wildcards and whitespace become ``_``; the payload always carries the true name.
    """
    encoded = _UNSAFE.sub("_", name.strip())
    return encoded or "_"


def kmsg(cluster: str, node: str) -> str:
    return f"gpu.kmsg.{token(cluster)}.{token(node)}"


def kmsg_all(cluster: str | None = None) -> str:
    return f"gpu.kmsg.{token(cluster)}.>" if cluster else "gpu.kmsg.>"


def event(kind: EventKind, cluster: str, key: str) -> str:
    return f"gpu.events.{kind}.{token(cluster)}.{token(key)}"


def dcgm(cluster: str, node: str) -> str:
    """A node agent's relay of its dcgm-exporter (fleets without Prometheus)."""
    return f"gpu.dcgm.{token(cluster)}.{token(node)}"


def dcgm_all(cluster: str | None = None) -> str:
    return f"gpu.dcgm.{token(cluster)}.>" if cluster else "gpu.dcgm.>"


def events_all() -> str:
    return "gpu.events.>"


def heartbeat(cluster: str, job: str) -> str:
    return f"gpu.heartbeat.{token(cluster)}.{token(job)}"


def dlq(source: str) -> str:
    return f"gpu.dlq.{token(source)}"


def incidents_all(cluster: str | None = None) -> str:
    """Every incident change (of one cluster, or of all)."""
    return f"gpu.incidents.{token(cluster)}.*" if cluster else "gpu.incidents.>"


def incident(cluster: str, incident_id: str) -> str:
    return f"gpu.incidents.{token(cluster)}.{token(incident_id)}"


def audit(cluster: str) -> str:
    return f"gpu.audit.{token(cluster)}"


def tickets(cluster: str) -> str:
    """Hardware tickets the platform opens (there is no ticketing system here: the record is it)."""
    return f"gpu.tickets.{token(cluster)}"


def pages(cluster: str) -> str:
    """Pages to the people on call."""
    return f"gpu.pages.{token(cluster)}"
