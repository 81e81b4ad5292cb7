"""Principals, resources and actions shared by the policy tests."""

from __future__ import annotations

from mcp_server.gate.policy import Principal, Resource

OPERATIONAL = (
    "isolate_gpu",
    "restart_from_checkpoint",
    "cordon_node",
    "uncordon_node",
    "drain_node",
    "reset_gpu",
    "reboot_node",
    "swap_spare",
    "restore_gpus",
    "stop_job",
    "run_diagnostics",
    "run_runbook",
    "acknowledge_incident",
    "resolve_incident",
    "open_ticket",
    "page_oncall",
)
PEOPLE_ONLY = ("approve_action", "reject_action", "reset_breaker")
ALL_ACTIONS = OPERATIONAL + PEOPLE_ONLY

GPU = Resource(type="Gpu", id="node-a1/3", attrs={"node": "node-a1", "index": 3})
NODE = Resource(
    type="Node", id="node-a1", attrs={"cluster": "c1", "rack": "r1", "leaf": "leaf-1", "cordoned": False}
)
JOB = Resource(type="Job", id="llm-pretrain", attrs={"gpus": 512})
CLUSTER = Resource(type="Cluster", id="c1")

RESOURCE_OF = {
    "isolate_gpu": GPU,
    "reset_gpu": GPU,
    "cordon_node": NODE,
    "uncordon_node": NODE,
    "drain_node": NODE,
    "reboot_node": NODE,
    "swap_spare": NODE,
    "restart_from_checkpoint": JOB,
    "run_runbook": NODE,
    "acknowledge_incident": CLUSTER,
    "resolve_incident": CLUSTER,
    "approve_action": CLUSTER,
    "reject_action": CLUSTER,
    "reset_breaker": CLUSTER,
    "restore_gpus": NODE,
    "stop_job": JOB,
    "run_diagnostics": NODE,
    "open_ticket": CLUSTER,
    "page_oncall": CLUSTER,
}

# Fleet state well inside every limit, as the guard passes it.
CALM = {
    "isolations_last_hour": 0,
    "max_isolations_per_hour": 5,
    "cluster_nodes": 64,
    "nodes_out_of_service": 1,
    "out_of_service_pct": 3,
    "max_out_of_service_pct": 25,
    "breaker_open": False,
    "taken_out_pct": 2,
    "breaker_threshold_pct": 20,
    "spares_available": 4,
    "min_spares": 1,
    "gpu_hours_at_risk": 3,
    "max_gpu_hours_at_risk": 100,
    "checkpoint_age_s": 600,
    "observe_only": False,
    "change_freeze": False,
    "dry_run": False,
}

VIEWER = Principal(id="vera", role="viewer")
OPERATOR = Principal(id="olga", role="operator")
ADMIN = Principal(id="adam", role="admin")
AGENT = Principal(id="triage-agent", role="agent", kind="agent")
