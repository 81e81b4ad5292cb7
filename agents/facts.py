"""What the agent learns about an incident through read-only MCP tools before it plans."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from contracts.client import ToolClient


class Facts(BaseModel):
    node: str
    gpu: int | None = None
    gpu_health: str | None = None
    gpu_isolated: bool | None = None
    job: str | None = None
    job_state: str | None = None
    job_gpus: int | None = None
    checkpoint_age_s: float | None = None
    spares_above_minimum: int | None = None
    """Warm spares a swap may take without a person's approval (``spare_pool``), when a job is hit."""
    lookups_failed: list[str] = []


async def gather_facts(tools: ToolClient, node: str, gpu: int | None, pci_bus_id: str | None) -> Facts:
    """Resolve the GPU index (from the PCI bus id) and the job that uses it."""
    facts = Facts(node=node, gpu=gpu)
    described = await tools.call("describe_node", {"node": node})
    if not described.ok or not isinstance(described.structured, dict):
        facts.lookups_failed.append(f"describe_node: {described.text}")
        return facts
    gpus: list[dict[str, Any]] = described.structured.get("gpus", [])
    match = next(
        (
            g
            for g in gpus
            if (gpu is not None and g.get("index") == gpu)
            or (pci_bus_id and g.get("pci_bus_id") == pci_bus_id)
        ),
        None,
    )
    if match is not None:
        facts.gpu = int(match["index"])
        facts.gpu_health = match.get("health")
        facts.gpu_isolated = match.get("isolated")
    if facts.gpu is None and pci_bus_id is None:
        # A fault of the whole node: the job whose gang holds it.
        owner = await tools.call("list_jobs", {"node": node, "limit": 10})
        listed = owner.structured.get("jobs") if owner.ok and isinstance(owner.structured, dict) else None
        if not isinstance(listed, list):
            facts.lookups_failed.append(f"list_jobs: {owner.text}")
            return facts
        job = listed[0] if listed else None
    elif facts.gpu is None:
        return facts
    else:
        owner = await tools.call("job_for_gpu", {"node": node, "gpu": facts.gpu})
        if not owner.ok or not isinstance(owner.structured, dict):
            facts.lookups_failed.append(f"job_for_gpu: {owner.text}")
            return facts
        job = owner.structured.get("job")
    if isinstance(job, dict):
        facts.job, facts.job_state, facts.job_gpus = job.get("name"), job.get("state"), job.get("gpus")
        ckpt = await tools.call("checkpoint_status", {"job": facts.job})
        if ckpt.ok and isinstance(ckpt.structured, dict):
            facts.checkpoint_age_s = ckpt.structured.get("checkpoint_age_s")
        pool = await tools.call("spare_pool", {})
        if pool.ok and isinstance(pool.structured, dict):
            facts.spares_above_minimum = pool.structured.get("above_minimum")
    return facts
