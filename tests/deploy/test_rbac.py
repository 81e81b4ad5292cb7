"""Least privilege, derived: the ClusterRoles of each overlay grant the control plane's service account
exactly the API calls the Kubernetes backend makes (api_calls.py records them against the loopback
API) — the reads in observe-only, reads and writes in acting — cluster-wide where the backend reaches
beyond the job namespace, in the job namespace only for the training jobs. Nothing else is bound to
any service account of the deployment."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.deploy.api_calls import (
    CLUSTER,
    JOBS,
    READS,
    UNSUPPORTED,
    WRITES,
    Call,
    LoopbackApi,
    backend_operations,
    calls_of,
    scoped,
)
from tests.deploy.manifests import CONTROL_PLANE_SA, NAMESPACE, Obj, containers, env, named, render

pytestmark = pytest.mark.slow


def test_every_backend_operation_is_exercised() -> None:
    """A new operation of the backend needs its line in api_calls.py (READS or WRITES) to be granted."""
    assert set(READS) | set(WRITES) | UNSUPPORTED == backend_operations()
    assert not set(READS) & set(WRITES)


async def test_the_reads_only_read() -> None:
    """Observe-only is granted reads only: every operation it uses must be made of GETs."""
    with LoopbackApi() as api:
        for name, operation in READS.items():
            _, seen = await api.record(operation)
            assert seen, f"{name} made no API call"
            assert {s.method for s in seen} == {"GET"}, f"{name} wrote: {[(s.method, s.path) for s in seen]}"


def _rules(docs: list[Obj], kind: str, name: str) -> list[Obj]:
    role = named(docs, kind, name)
    rules: list[Obj] = role.get("rules") or []
    return rules


def granted(docs: list[Obj], job_namespace: str, subject: str = CONTROL_PLANE_SA) -> set[Call]:
    """What ``subject`` (a ServiceAccount of the namespace gpu-aiops) may do: ClusterRoleBindings grant
    cluster-wide; RoleBindings in the job namespace grant there. A binding anywhere else, a wildcard
    or a rule narrowed by resourceNames is an error here (the backend needs none)."""
    calls: set[Call] = set()
    for binding in docs:
        if binding["kind"] not in ("ClusterRoleBinding", "RoleBinding"):
            continue
        if not any(
            s.get("kind") == "ServiceAccount" and s["name"] == subject and s.get("namespace") == NAMESPACE
            for s in binding.get("subjects") or []
        ):
            continue
        if binding["kind"] == "ClusterRoleBinding":
            scope = CLUSTER
        else:
            where = binding["metadata"].get("namespace")
            assert where == job_namespace, (
                f"RoleBinding {binding['metadata']['name']} is in {where}, not the job namespace "
                f"{job_namespace} (AIOPS_KUBE_JOB_NAMESPACE)"
            )
            scope = JOBS
        ref = binding["roleRef"]
        role_ns = binding["metadata"].get("namespace")
        rules = (
            _rules(docs, "ClusterRole", ref["name"])
            if ref["kind"] == "ClusterRole"
            else _rules([d for d in docs if d["metadata"].get("namespace") == role_ns], "Role", ref["name"])
        )
        for rule in rules:
            assert "resourceNames" not in rule and "nonResourceURLs" not in rule, rule
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], f"a wildcard in {ref['name']}: {rule}"
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        calls.add(Call(scope, group, resource, verb))
    return calls


def _control_plane_env(docs: list[Obj]) -> dict[str, str]:
    (container,) = containers(named(docs, "Deployment", "aiops-control-plane"))
    return {k: str(v.get("value")) for k, v in env(container).items() if "value" in v}


def difference(docs: list[Obj], needed: set[Call]) -> tuple[set[Call], set[Call]]:
    """(missing, extra): what the backend calls and the manifests do not grant, and the reverse."""
    settings = _control_plane_env(docs)
    have = granted(docs, settings["AIOPS_KUBE_JOB_NAMESPACE"])
    return needed - have, have - needed


async def _needed(overlay: str, docs: list[Obj]) -> set[Call]:
    kind: Any = _control_plane_env(docs)["AIOPS_KUBE_JOB_KIND"]
    operations = READS if overlay == "observe-only" else READS | WRITES
    calls = await calls_of(operations, kind)
    return scoped(set().union(*calls.values()))


@pytest.mark.parametrize("overlay", ["observe-only", "acting"])
async def test_the_control_plane_is_granted_exactly_the_calls_of_the_backend(overlay: str) -> None:
    docs = render(overlay)
    missing, extra = difference(docs, await _needed(overlay, docs))
    assert not missing, "the backend needs, the manifests do not grant: " + ", ".join(
        map(str, sorted(missing))
    )
    assert not extra, "granted, never used by the backend: " + ", ".join(map(str, sorted(extra)))


async def test_a_missing_or_an_extra_grant_is_caught() -> None:
    docs = render("acting")
    needed = await _needed("acting", docs)
    less = copy.deepcopy(docs)
    role = named(less, "ClusterRole", "gpu-aiops-cluster-act")
    role["rules"] = [r for r in role["rules"] if r["resources"] != ["pods/eviction"]]
    assert difference(less, needed) == ({Call(CLUSTER, "", "pods/eviction", "create")}, set())
    more = copy.deepcopy(docs)
    named(more, "ClusterRole", "gpu-aiops-cluster-read")["rules"].append(
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
    )
    assert difference(more, needed) == (set(), {Call(CLUSTER, "", "secrets", "get")})


@pytest.mark.parametrize("overlay", ["observe-only", "acting"])
def test_no_other_service_account_is_granted_anything(overlay: str) -> None:
    docs = render(overlay)
    accounts = [d for d in docs if d["kind"] == "ServiceAccount"]
    assert {a["metadata"]["name"] for a in accounts} == {
        "aiops-control-plane",
        "aiops-agent",
        "aiops-node-agent",
        "nats",
    }
    for account in accounts:
        if account["metadata"]["name"] == CONTROL_PLANE_SA:
            continue
        name = account["metadata"]["name"]
        assert account.get("automountServiceAccountToken") is False, f"{name} mounts an API token"
        bound = [
            b["metadata"]["name"]
            for b in docs
            if b["kind"] in ("ClusterRoleBinding", "RoleBinding")
            and any(s["name"] == name for s in b.get("subjects") or [])
        ]
        assert not bound, f"{name} is bound to {bound}"
    for workload in docs:
        spec = (workload.get("spec", {}).get("template") or {}).get("spec")
        if spec is not None and spec.get("serviceAccountName") != CONTROL_PLANE_SA:
            assert spec.get("automountServiceAccountToken") is False, workload["metadata"]["name"]
