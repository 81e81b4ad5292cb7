"""The Kubernetes manifests: every overlay renders with ``kubectl kustomize`` and every object it
renders validates offline against the Kubernetes OpenAPI schemas of a pinned version (the one CRD
kind, ServiceMonitor, against a schema shipped here); then what each workload must be."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.manifests import (
    KUBECTL_INSTALL,
    KUBERNETES,
    NAMESPACE,
    OVERLAYS,
    ROOT,
    SECRET,
    Obj,
    containers,
    env,
    named,
    ours,
    pod_spec,
    render,
    tool,
)

pytestmark = pytest.mark.slow

KUBERNETES_VERSION = "1.33.0"
"""The API the manifests are validated against: kubernetes-validate ships its schemas offline."""
SCHEMAS = Path(__file__).with_name("schemas")
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SCHEMAS / "servicemonitor-monitoring.coreos.com-v1.json"
}
"""Custom resources the manifests use, each with the schema it is validated against."""


def validate(obj: Obj) -> None:
    """Raise when ``obj`` is not valid: strict (unknown fields refused) against the pinned API."""
    crd = CRD_SCHEMAS.get((obj.get("apiVersion", ""), obj.get("kind", "")))
    if crd is not None:
        jsonschema.validate(obj, json.loads(crd.read_text()))
    else:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_of_every_overlay_validates_offline(overlay: str) -> None:
    docs = render(overlay)
    assert len(docs) > 20
    errors = []
    for obj in docs:
        try:
            validate(obj)
        except (
            kubernetes_validate.ValidationError,
            kubernetes_validate.SchemaNotFoundError,
            kubernetes_validate.InvalidSchemaError,
            jsonschema.ValidationError,
        ) as exc:
            errors.append(f"{obj.get('kind')} {obj.get('metadata', {}).get('name')}: {exc}")
    assert not errors, "\n".join(errors)


def test_the_validation_refuses_what_the_api_server_would() -> None:
    docs = render("acting")
    deployment = named(docs, "Deployment", "aiops-control-plane")
    wrong_type = json.loads(json.dumps(deployment))
    wrong_type["spec"]["replicas"] = "two"
    unknown_field = json.loads(json.dumps(deployment))
    unknown_field["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    for broken in (wrong_type, unknown_field):
        with pytest.raises(kubernetes_validate.ValidationError):
            validate(broken)
    monitor = json.loads(json.dumps(named(docs, "ServiceMonitor", "aiops-control-plane")))
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    with pytest.raises(jsonschema.ValidationError):
        validate(monitor)
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):  # a new CRD kind needs its schema here
        validate({"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor", "metadata": {"name": "x"}})


def _env_value(container: Obj, name: str) -> str | None:
    found = env(container).get(name)
    return None if found is None else found.get("value")


def test_observe_only_is_the_default_and_acting_differs_only_in_the_writes() -> None:
    observe, acting = render("observe-only"), render("acting")
    (cp_observe,) = containers(named(observe, "Deployment", "aiops-control-plane"))
    (cp_acting,) = containers(named(acting, "Deployment", "aiops-control-plane"))
    assert _env_value(cp_observe, "AIOPS_OBSERVE_ONLY") == "true"
    assert _env_value(cp_acting, "AIOPS_OBSERVE_ONLY") == "false"

    def key(obj: Obj) -> tuple[str, str, str]:
        return obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"]

    only_acting = {key(o) for o in acting} - {key(o) for o in observe}
    assert only_acting == {
        ("ClusterRole", "", "gpu-aiops-cluster-act"),
        ("ClusterRoleBinding", "", "gpu-aiops-cluster-act"),
        ("ClusterRole", "", "gpu-aiops-jobs-act"),
        ("RoleBinding", "default", "gpu-aiops-jobs-act"),
    }
    assert {key(o) for o in observe} <= {key(o) for o in acting}
    changed = [key(o) for o in observe if o != next(a for a in acting if key(a) == key(o))]
    assert changed == [("Deployment", NAMESPACE, "aiops-control-plane")]


def _selects(selector: Obj, labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions In/NotIn/Exists/DoesNotExist)."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        value, op = labels.get(expr["key"]), expr["operator"]
        if (
            (op == "In" and value not in expr["values"])
            or (op == "NotIn" and value in expr["values"])
            or (op == "Exists" and value is None)
            or (op == "DoesNotExist" and value is not None)
        ):
            return False
    return True


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_has_resources_and_a_hardened_security_context(overlay: str) -> None:
    for obj in render(overlay):
        spec = pod_spec(obj)
        if spec is None:
            continue
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", obj["metadata"]["name"]
        labels = obj["spec"]["template"]["metadata"]["labels"]
        assert _selects(obj["spec"]["selector"], labels)
        for container in containers(obj):
            where = f"{obj['metadata']['name']}/{container['name']}"
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), where
            assert "memory" in resources["limits"], where
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            assert not security.get("privileged"), where
            if obj["metadata"]["name"] != "aiops-node-agent":
                assert spec["securityContext"]["runAsNonRoot"] is True, where
                assert "add" not in security["capabilities"], where


def test_the_control_plane_is_probed_on_its_health_endpoints_and_has_a_disruption_budget() -> None:
    docs = render("observe-only")
    deployment = named(docs, "Deployment", "aiops-control-plane")
    (container,) = containers(deployment)
    assert container["args"] == ["up", "--backend", "kubernetes", "--no-agent"]
    port = next(p for p in container["ports"] if p["name"] == "http")["containerPort"]
    assert str(port) == _env_value(container, "AIOPS_HTTP_PORT")
    assert _env_value(container, "AIOPS_HTTP_HOST") == "0.0.0.0"
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    budget = named(docs, "PodDisruptionBudget", "aiops-control-plane")
    assert _selects(budget["spec"]["selector"], deployment["spec"]["template"]["metadata"]["labels"])
    # Never a budget a single replica could not satisfy: a drain would wait on it forever.
    assert (
        budget["spec"].get("maxUnavailable", 0) >= 1
        or budget["spec"]["minAvailable"] < deployment["spec"]["replicas"]
    )
    service = named(docs, "Service", "aiops-control-plane")
    assert _selects(
        {"matchLabels": service["spec"]["selector"]}, deployment["spec"]["template"]["metadata"]["labels"]
    )
    monitor = named(docs, "ServiceMonitor", "aiops-control-plane")
    assert _selects(monitor["spec"]["selector"], service["metadata"]["labels"])
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}


def test_the_control_plane_names_the_dcgm_source_it_starts_with() -> None:
    from aiops.detection import dcgm_choice
    from aiops.settings import Settings

    (container,) = containers(named(render("observe-only"), "Deployment", "aiops-control-plane"))
    settings = Settings(
        backend="kubernetes",
        prometheus_url=_env_value(container, "AIOPS_PROMETHEUS_URL"),
        dcgm_exporters=_env_value(container, "AIOPS_DCGM_EXPORTERS"),
        dcgm_source=_env_value(container, "AIOPS_DCGM_SOURCE"),  # type: ignore[arg-type]
    )
    assert dcgm_choice(settings) == "prometheus"  # neither set would stop it at start


def test_two_agents_act_through_the_control_planes_mcp_endpoint() -> None:
    docs = render("observe-only")
    agents = named(docs, "Deployment", "aiops-agent")
    assert agents["spec"]["replicas"] == 2
    (container,) = containers(agents)
    assert container["args"] == ["agent"]
    service = named(docs, "Service", "aiops-control-plane")
    assert _env_value(container, "AIOPS_MCP_URL") == (
        f"http://{service['metadata']['name']}.{NAMESPACE}.svc:{service['spec']['ports'][0]['port']}/mcp"
    )
    assert env(container)["AIOPS_AGENT_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == SECRET


def test_the_node_agent_reads_kmsg_on_gpu_nodes_with_syslog_alone() -> None:
    daemonset = named(render("observe-only"), "DaemonSet", "aiops-node-agent")
    spec = daemonset["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    (container,) = containers(daemonset)
    assert container["args"] == ["node"]
    security = container["securityContext"]
    assert security["privileged"] is False
    assert security["capabilities"] == {"drop": ["ALL"], "add": ["SYSLOG"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    kmsg = mounts["/dev/kmsg"]
    assert kmsg["readOnly"] is True
    assert volumes[kmsg["name"]]["hostPath"] == {"path": "/dev/kmsg", "type": "CharDevice"}
    state_dir = _env_value(container, "AIOPS_NODE_STATE_DIR")
    assert state_dir is not None
    assert volumes[mounts[state_dir]["name"]]["hostPath"]["path"] == state_dir
    assert env(container)["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")} == {state_dir, "/tmp"}


def _nats_conf(docs: list[Obj]) -> str:
    conf: str = named(docs, "ConfigMap", "nats-config")["data"]["nats.conf"]
    return conf


def test_nats_is_a_three_node_jetstream_cluster_the_platform_uses_with_three_replicas() -> None:
    docs = render("observe-only")
    nats = named(docs, "StatefulSet", "nats")
    assert nats["spec"]["replicas"] == 3
    headless = named(docs, "Service", nats["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    conf = _nats_conf(docs)
    routes = re.findall(r"nats://([\w.-]+):6222", conf)
    assert routes == [f"nats-{i}.{headless['metadata']['name']}.{NAMESPACE}.svc" for i in range(3)]
    store = re.search(r"store_dir:\s*(\S+)", conf)
    assert store is not None
    (container,) = containers(nats)
    (claim,) = nats["spec"]["volumeClaimTemplates"]
    assert {m["mountPath"]: m["name"] for m in container["volumeMounts"]}[store.group(1)] == claim[
        "metadata"
    ]["name"]
    budget = named(docs, "PodDisruptionBudget", "nats")
    assert budget["spec"]["maxUnavailable"] == 1  # two of three keep the quorum
    config = named(docs, "ConfigMap", "aiops-config")["data"]
    assert config["AIOPS_NATS_URL"] == f"nats://nats.{NAMESPACE}.svc:4222"
    assert named(docs, "Service", "nats")["spec"]["ports"][0]["port"] == 4222
    assert int(config["AIOPS_JS_REPLICAS"]) == nats["spec"]["replicas"]


def _namespace_labels(docs: list[Obj], name: str) -> dict[str, str]:
    labels = {"kubernetes.io/metadata.name": name}  # set by the API server on every namespace
    for ns in docs:
        if ns["kind"] == "Namespace" and ns["metadata"]["name"] == name:
            labels |= ns["metadata"].get("labels") or {}
    return labels


def _admitted(docs: list[Obj], policy: Obj, pod_ns: str, pod_labels: dict[str, str], port: int) -> bool:
    """Whether ``policy`` lets a pod (namespace, labels) in on ``port`` (Kubernetes' peer semantics)."""
    policy_ns = policy["metadata"]["namespace"]
    for rule in policy["spec"].get("ingress") or []:
        if rule.get("ports") and port not in {p["port"] for p in rule["ports"]}:
            continue
        peers = rule.get("from")
        if not peers:
            return True
        for peer in peers:
            if "namespaceSelector" in peer:
                ns_ok = _selects(peer["namespaceSelector"], _namespace_labels(docs, pod_ns))
            else:
                ns_ok = pod_ns == policy_ns
            if ns_ok and _selects(peer.get("podSelector") or {}, pod_labels):
                return True
    return False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_control_plane_the_agents_and_the_node_agents_reach_nats(overlay: str) -> None:
    docs = render(overlay)
    nats_labels = named(docs, "StatefulSet", "nats")["spec"]["template"]["metadata"]["labels"]
    policies = [
        p
        for p in docs
        if p["kind"] == "NetworkPolicy"
        and p["metadata"]["namespace"] == NAMESPACE
        and _selects(p["spec"]["podSelector"], nats_labels)
    ]
    assert policies, "no NetworkPolicy selects the NATS pods"
    pods: dict[str, tuple[str, dict[str, str]]] = {
        o["metadata"]["name"]: (o["metadata"]["namespace"], o["spec"]["template"]["metadata"]["labels"])
        for o in docs
        if pod_spec(o) is not None
    }
    pods["a notebook in gpu-aiops"] = (NAMESPACE, {"app": "notebook"})
    pods["a pod labelled node-agent elsewhere"] = (
        "research",
        {"app.kubernetes.io/name": "gpu-aiops", "app.kubernetes.io/component": "node-agent"},
    )
    reach = {
        name
        for name, (ns, labels) in pods.items()
        if any(_admitted(docs, p, ns, labels, 4222) for p in policies)
    }
    assert reach == {"aiops-control-plane", "aiops-agent", "aiops-node-agent", "nats"}
    routes = {
        name
        for name, (ns, labels) in pods.items()
        if any(_admitted(docs, p, ns, labels, 6222) for p in policies)
    }
    assert routes == {"nats"}


def _secret_refs(docs: list[Obj]) -> dict[str, bool]:
    """Secret key -> optional, for every key of the Secret the workloads read."""
    keys: dict[str, bool] = {}
    for obj in docs:
        spec = pod_spec(obj)
        if spec is None:
            continue
        for container in containers(obj):
            for var in container.get("env") or []:
                ref = (var.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == SECRET
                    keys[ref["key"]] = bool(ref.get("optional"))
            assert not container.get("envFrom") or all("secretRef" not in e for e in container["envFrom"])
        for volume in spec.get("volumes") or []:
            if "secret" in volume:
                assert volume["secret"]["secretName"] == SECRET
                for item in volume["secret"]["items"]:
                    keys[item["key"]] = bool(volume["secret"].get("optional"))
    return keys


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_referenced_never_shipped(overlay: str) -> None:
    docs = render(overlay)
    assert not [o for o in docs if o["kind"] == "Secret"], "an overlay renders a Secret"
    refs = _secret_refs(docs)
    assert {"tokens.json", "agent-token", "slack-signing-secret", "anthropic-api-key"} <= set(refs)
    example_path = KUBERNETES / "secret.example.yaml"
    example = yaml.safe_load(example_path.read_text())
    assert example["metadata"]["name"] == SECRET
    required = {k for k, optional in refs.items() if not optional}
    assert required <= set(example["stringData"]), "the example lacks a required key"
    for key in set(refs) - set(example["stringData"]):
        assert re.search(rf"^\s*# {re.escape(key)}:", example_path.read_text(), re.M), f"{key} undocumented"
    assert all("REPLACE" in v for v in example["stringData"].values()), "a real-looking value in the example"
    tokens = json.loads(example["stringData"]["tokens.json"])
    assert tokens[example["stringData"]["agent-token"]].endswith(":agent")
    for path in KUBERNETES.rglob("kustomization.yaml"):
        kustomization = yaml.safe_load(path.read_text())
        used = list(kustomization.get("resources") or []) + [
            p["path"] for p in kustomization.get("patches") or []
        ]
        assert not [u for u in used if "secret" in u], f"{path} applies a secret file"


def _settings_of(docs: list[Obj], container: Obj, namespace: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for source in container.get("envFrom") or []:
        ref = source.get("configMapRef")
        if ref:
            cm = next(
                d
                for d in docs
                if d["kind"] == "ConfigMap"
                and d["metadata"]["name"] == ref["name"]
                and d["metadata"]["namespace"] == namespace
            )
            values |= cm["data"]
    values |= {k: v.get("value") for k, v in env(container).items() if "value" in v}
    return values


def test_every_gpu_aiops_process_agrees_on_the_cluster_nats_and_replicas() -> None:
    docs = render("acting")
    seen: dict[str, set[str]] = {"AIOPS_CLUSTER": set(), "AIOPS_NATS_URL": set(), "AIOPS_JS_REPLICAS": set()}
    for obj in docs:
        for container in containers(obj):
            if not ours(container):
                continue
            settings = _settings_of(docs, container, obj["metadata"]["namespace"])
            for name, values in seen.items():
                assert name in settings, f"{obj['metadata']['name']} has no {name}"
                values.add(settings[name])
    assert all(len(v) == 1 for v in seen.values()), seen


def _docs_block(pattern: str) -> str:
    text = (ROOT / "docs" / "deploy.md").read_text()
    found = re.search(pattern, text, re.S)
    assert found, f"docs/deploy.md lost its example {pattern!r}"
    return found.group(1)


def _kustomize(directory: Path) -> list[Obj]:
    done = subprocess.run(
        [tool("kubectl", KUBECTL_INSTALL), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def test_the_overlays_docs_deploy_md_shows_render_as_it_says(tmp_path: Path) -> None:
    shutil.copytree(KUBERNETES, tmp_path / "gpu-aiops" / "deploy" / "kubernetes")
    mine = tmp_path / "my-cluster"
    mine.mkdir()
    block = _docs_block(r"```yaml\n   # my-cluster/kustomization.yaml\n(.*?)   ```")
    (mine / "kustomization.yaml").write_text(textwrap.dedent(block))
    docs = _kustomize(mine)
    clusters = set()
    for obj in docs:
        for container in containers(obj):
            if ours(container):
                assert container["image"] == "registry.example.com/gpu-aiops:0.1.0"
                clusters.add(_settings_of(docs, container, obj["metadata"]["namespace"])["AIOPS_CLUSTER"])
    assert clusters == {"prod-a"}

    helm = tmp_path / "helm-nats"
    helm.mkdir()
    deletes = _docs_block(r"Remove the base's NATS objects in your overlay:\n\n```yaml\n(.*?)```")
    (helm / "kustomization.yaml").write_text(
        "resources:\n  - ../gpu-aiops/deploy/kubernetes/overlays/observe-only\n" + deletes
    )
    names = {(o["kind"], o["metadata"]["name"]) for o in _kustomize(helm)}
    assert not {("StatefulSet", "nats"), ("Service", "nats"), ("Service", "nats-headless")} & names
    assert ("NetworkPolicy", "nats") in names  # it selects the chart's pods by the same labels
