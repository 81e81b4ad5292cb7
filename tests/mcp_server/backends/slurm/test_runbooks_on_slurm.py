"""The bundled runbooks through the real MCP client, the server's policy gate and the Slurm backend
on a real loopback Slurm: an Xid 79 mitigated (isolate-gpu, restart-from-checkpoint) and the node
returned after repair (return-to-service); a spare swapped in (swap-spare); another owner's drain,
a viewer and observe-only hold; and ``aiops mcp``'s server built from ``AIOPS_BACKEND=slurm``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from mcp import Client

from aiops.settings import Settings
from aiops.standalone import build_standalone_server
from contracts.client import McpToolClient
from mcp_server.backends.slurm import SlurmBackend
from mcp_server.deps import PolicyLimits, ServerDeps
from mcp_server.gate.guard import DENIED
from mcp_server.gate.policy import PolicyGate, Principal
from mcp_server.server import build_server
from runbooks.engine import RunbookEngine
from runbooks.library import RunbookLibrary
from runbooks.state import MemoryRunStore, RunState
from tests.mcp_server.backends.slurm.cluster import INSTALL, SLURMCTLD, SlurmCluster
from tests.mcp_server.backends.slurm.conftest import report_gpu, submit
from tests.mcp_server.backends.slurm.test_backend_on_slurm import running
from tests.mcp_server.support import AGENT, VIEWER, SwitchableIdentity, error, held, ok
from tests.system_packages import require

require(SLURMCTLD, "Slurm (slurmctld, slurmd) with munge", INSTALL)

pytestmark = pytest.mark.slow
# Four nodes: one drained is 25% of the cluster; the default blast-radius and breaker limits are
# set for large fleets.
# This loopback cluster keeps no spare pool, so there is no reserve for a restart to dip into.
LIMITS = {"max_out_of_service_pct": 50, "breaker_threshold_pct": 60, "min_spares": 0}


@dataclass
class Bench:
    client: Client
    engine: RunbookEngine
    identity: SwitchableIdentity

    async def run(self, runbook: str, run_id: str, **params: object) -> RunState:
        return await self.engine.run(
            runbook, dict(params), run_id=run_id, context={"incident": {"id": run_id}}
        )

    async def call(self, tool: str, **arguments: Any) -> Any:
        return await self.client.call_tool(tool, arguments)


@asynccontextmanager
async def bench(backend: SlurmBackend, principal: Principal = AGENT, **limits: Any) -> AsyncIterator[Bench]:
    identity = SwitchableIdentity(principal)
    deps = ServerDeps(
        backend=backend,
        gate=PolicyGate.from_directory(),
        identity=identity,
        limits=PolicyLimits(**(LIMITS | limits)),
    )
    async with held(Client(build_server(deps))) as client:
        engine = RunbookEngine(
            McpToolClient(client), MemoryRunStore(), RunbookLibrary.load(), inline_wait_s=60
        )
        yield Bench(client, engine, identity)


def mutations(state: RunState) -> list[tuple[str, str]]:
    return [(s.tool, s.status) for s in state.steps if s.mutating]


async def test_an_xid_79_runs_the_runbooks_end_to_end_and_the_node_returns(
    slurm: SlurmCluster, backend: SlurmBackend
) -> None:
    job = submit(slurm)
    bad, good = await running(backend, job)
    report_gpu(slurm, bad, {"3": "fallen_off_bus"}, {"3": 79})

    async with bench(backend) as b:
        isolated = await b.run("isolate-gpu", "inc-1/isolate-gpu", node=bad, gpu=3, reason="Xid 79 on GPU 3")
        restarted = await b.run(
            "restart-from-checkpoint", "inc-1/restart", job=job, reason="Xid 79 on its node"
        )
        after = await running(backend, job)
        too_early = await b.run("return-to-service", "inc-1/return-early", node=bad)
        report_gpu(slurm, bad, {})  # repaired
        back = await b.run("return-to-service", "inc-1/return", node=bad)
        node = ok(await b.call("describe_node", node=bad))

    assert isolated.status == "succeeded", isolated.error
    assert restarted.status == "succeeded", restarted.error
    assert bad not in after and good in after
    assert too_early.status == "precondition_failed" and "GPU 3 not healthy" in (too_early.error or "")
    assert back.status == "succeeded", back.error
    assert mutations(back) == [("restore_gpus", "done"), ("uncordon_node", "done")]
    assert (node["cordoned"], node["gpus_isolated"], node["state"]) == (False, 0, "ready")


async def test_the_swap_spare_runbook_requeues_the_job_onto_the_spare(
    slurm: SlurmCluster, backend: SlurmBackend
) -> None:
    job = submit(slurm)
    bad, good = await running(backend, job)

    async with bench(backend, min_spares=0) as b:
        swapped = await b.run("swap-spare", "inc-3/swap", job=job, node=bad, reason="Xid 79 on GPU 3")
        after = await running(backend, job)
        pool = ok(await b.call("spare_pool"))

    assert swapped.status == "succeeded", swapped.error
    assert mutations(swapped) == [("swap_spare", "done"), ("restart_from_checkpoint", "done")]
    assert sorted(after) == sorted([good, "gpu-node-004"])
    assert pool["spares"] == []


async def test_return_to_service_leaves_a_drain_by_someone_else_alone(
    slurm: SlurmCluster, backend: SlurmBackend
) -> None:
    slurm.run("scontrol", "update", "nodename=gpu-node-003", "state=drain", "reason=hw-team: DIMM swap")

    async with bench(backend) as b:
        state = await b.run("return-to-service", "inc-2/return", node="gpu-node-003")
        refused = error(await b.call("uncordon_node", node="gpu-node-003", reason="looks fine"))

    assert state.status == "precondition_failed" and mutations(state) == []
    assert "drained by 'root' (hw-team: DIMM swap), not by this platform: left to its owner" in (
        state.error or ""
    )
    assert "not by this platform" in refused
    assert slurm.run("sinfo", "-h", "-n", "gpu-node-003", "-o", "%T %E").split() == [
        "drained",
        "hw-team:",
        "DIMM",
        "swap",
    ]


def _what_an_action_changes(node_line: str) -> dict[str, str]:
    """The fields of ``scontrol show node -o`` a mutation would change (not the load or free memory,
    which move on their own)."""
    fields = dict(part.split("=", 1) for part in node_line.split() if "=" in part)
    return {
        k: fields.get(k, "")
        for k in ("State", "Reason", "Gres", "Comment", "Partitions", "AvailableFeatures")
    }


async def test_a_viewer_and_observe_only_change_nothing_in_slurm(
    slurm: SlurmCluster, backend: SlurmBackend
) -> None:
    job = submit(slurm)
    bad, _ = await running(backend, job)
    before = _what_an_action_changes(slurm.run("scontrol", "show", "node", bad, "-o"))

    async with bench(backend, VIEWER) as b:
        by_viewer = error(await b.call("isolate_gpu", node=bad, gpu=3, reason="Xid 79 on GPU 3"))
    async with bench(backend, observe_only=True) as b:
        planned = ok(await b.call("isolate_gpu", node=bad, gpu=3, reason="Xid 79 on GPU 3", dry_run=True))
        observed = error(await b.call("restart_from_checkpoint", job=job, reason="Xid 79 on its node"))
        drained = error(await b.call("drain_node", node=bad, reason="Xid 79 on GPU 3"))

    assert DENIED in by_viewer and "no policy permits role 'viewer' to call isolate_gpu" in by_viewer
    assert planned["dry_run"] and not planned["changed"] and planned["policy"]["decision"] == "allow"
    assert "observe-only mode" in observed and "observe-only mode" in drained
    assert _what_an_action_changes(slurm.run("scontrol", "show", "node", bad, "-o")) == before
    view = await backend.get_job(job)
    assert (view.state, view.restarts) == ("running", 0)


async def test_aiops_mcp_with_the_slurm_backend_reads_slurm_and_starts_observe_only(
    slurm: SlurmCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "AIOPS_BACKEND": "slurm",
        "AIOPS_SLURM_CONF": str(slurm.conf),
        "AIOPS_SLURM_SPARE_PARTITION": "spares",
        "AIOPS_CLUSTER": "loopback",
    }.items():
        monkeypatch.setenv(name, value)
    server = build_standalone_server(Settings(_env_file=None))  # type: ignore[call-arg]

    async with held(Client(server)) as client:
        nodes = ok(await client.call_tool("list_nodes", {}))
        refused = error(await client.call_tool("cordon_node", {"node": "gpu-node-001", "reason": "Xid 79"}))

    assert [n["name"] for n in nodes["nodes"]] == [
        "gpu-node-001",
        "gpu-node-002",
        "gpu-node-003",
        "gpu-node-004",
    ]
    assert [n["name"] for n in nodes["nodes"] if n["spare"]] == ["gpu-node-004"]
    assert "observe-only mode" in refused
    assert slurm.run("sinfo", "-h", "-n", "gpu-node-001", "-o", "%T").strip() == "idle"
