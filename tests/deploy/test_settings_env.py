"""Every environment variable the deployment sets for a gpu-aiops process is a setting the process
reads: a real field of ``aiops/settings.py`` (by its ``AIOPS_`` name or its alias), or one of the
names the node agent / control plane of the "real cluster" issue (13) adds, listed here until they
land in ``Settings``. A typo (``AIOPS_OBSERVE_ONYL``) would otherwise be ignored in silence."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import AliasChoices

from aiops.settings import Settings
from tests.deploy.manifests import KUBERNETES, SYSTEMD, containers, ours, raw_objects

NOT_OURS = {
    "NVIDIA_VISIBLE_DEVICES": "read by the NVIDIA container runtime (GPUs and NVML for the node agent)",
    "NVIDIA_DRIVER_CAPABILITIES": "read by the NVIDIA container runtime",
}


def setting_names() -> set[str]:
    names = set()
    prefix = str(Settings.model_config.get("env_prefix", ""))
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {str(choice).upper() for choice in alias.choices}
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            names.add(f"{prefix}{field_name}".upper())
    return names


def kubernetes_env() -> dict[str, str]:
    """Variable -> where it is set: env of gpu-aiops containers and the shared ConfigMaps' keys."""
    found: dict[str, str] = {}
    for path, obj in raw_objects():
        where = f"{path.relative_to(KUBERNETES)} {obj.get('kind')} {obj.get('metadata', {}).get('name')}"
        if obj.get("kind") == "ConfigMap" and obj["metadata"]["name"] == "aiops-config":
            found |= dict.fromkeys(obj.get("data") or {}, where)
        for container in containers(obj):
            # A patch names no image: it patches a gpu-aiops container of the base.
            if ours(container) or "image" not in container:
                found |= {e["name"]: where for e in container.get("env") or []}
    return found


def systemd_env() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted(SYSTEMD.iterdir()):
        text = path.read_text()
        if path.suffix == ".service":
            for value in re.findall(r"^Environment=(\S+?)=", text, re.M):
                found[value] = path.name
        elif path.name.endswith(".env.example"):
            for value in re.findall(r"^([A-Z][A-Z0-9_]*)=", text, re.M):
                found[value] = path.name
    return found


def test_every_variable_the_deployment_sets_is_a_setting() -> None:
    known = setting_names() | set(NOT_OURS)
    everything = kubernetes_env() | systemd_env()
    assert len(everything) > 15
    unknown = {name: where for name, where in everything.items() if name not in known}
    assert not unknown, f"not settings of aiops/settings.py: {unknown}"


def test_the_names_are_read_case_as_written() -> None:
    assert "AIOPS_OBSERVE_ONLY" in setting_names()
    assert "ANTHROPIC_API_KEY" in setting_names()
    assert "AIOPS_OBSERVE_ONYL" not in setting_names()


def test_the_docs_examples_name_only_settings() -> None:
    """The env lines of docs/deploy.md's examples, too."""
    docs = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"
    names = set(re.findall(r"\b(AIOPS_[A-Z0-9_]+)\b", docs.read_text()))
    assert names, "docs/deploy.md names no setting"
    assert not names - setting_names()
