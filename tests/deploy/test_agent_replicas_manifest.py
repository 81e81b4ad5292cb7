"""The Kubernetes agents Deployment runs replicas the way docs/replicas.md describes: several pods,
one agent id each (the pod's name), one shared agent token, NATS and JetStream replicas from the
shared ConfigMap; and docs/replicas.md names only real settings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.deploy.manifests import containers, raw_objects
from tests.deploy.test_settings_env import setting_names

DOCS = Path(__file__).resolve().parents[2] / "docs" / "replicas.md"


def named(kind: str, name: str) -> dict[str, Any]:
    """The base's object (overlays patch it)."""
    [found] = [
        o
        for path, o in raw_objects()
        if path.parent.name == "base" and o.get("kind") == kind and o["metadata"]["name"] == name
    ]
    return found


def test_the_agents_deployment_runs_several_replicas_each_with_its_own_id_and_the_shared_token() -> None:
    deployment = named("Deployment", "aiops-agent")
    assert deployment["spec"]["replicas"] >= 2
    [agent] = containers(deployment)
    assert agent["args"] == ["agent"]
    env = {e["name"]: e for e in agent["env"]}
    assert env["AIOPS_AGENT_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["AIOPS_AGENT_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "agent-token"
    assert "AIOPS_AGENTS" not in env  # the Deployment's replicas is the count here
    assert {"configMapRef": {"name": "aiops-config"}} in agent["envFrom"]
    config = named("ConfigMap", "aiops-config")["data"]
    assert config["AIOPS_JS_REPLICAS"] == "3" and config["AIOPS_NATS_URL"]


def test_the_control_plane_leaves_the_agents_to_the_deployment() -> None:
    [plane] = containers(named("Deployment", "aiops-control-plane"))
    assert "--no-agent" in plane["args"] and "--agents" not in plane["args"]


def test_docs_replicas_names_only_settings() -> None:
    names = set(re.findall(r"\b(AIOPS_[A-Z0-9_]+)\b", DOCS.read_text()))
    assert {"AIOPS_AGENTS", "AIOPS_FLEET_NODES", "AIOPS_JS_REPLICAS", "AIOPS_NATS_URL"} <= names
    assert not names - setting_names()
