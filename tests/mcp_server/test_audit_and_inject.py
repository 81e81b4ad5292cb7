"""audit_log reads the trail with filters; inject_fault breaks the twin as the scenarios do, for
operators only, never on a real cluster, and lands in the trail itself."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from mcp import Client

from events.models import utcnow
from mcp_server.server import build_server
from tests.mcp_server.support import VIEWER, Stack, error, held, ok


async def test_an_operator_injects_an_xid_and_the_trail_shows_who_did_what(
    client: Client, stack: Stack
) -> None:
    injected = ok(
        await client.call_tool("inject_fault", {"kind": "xid", "node": "node-003", "gpu": 3, "xid": 79})
    )
    ok(
        await client.call_tool(
            "isolate_gpu", {"node": "node-003", "gpu": 3, "reason": "Xid 79", "dry_run": True}
        )
    )
    stack.identity.principal = VIEWER
    denied = error(await client.call_tool("inject_fault", {"kind": "hang", "job": "train-01"}))
    everything = ok(await client.call_tool("audit_log", {}))
    by_viewer = ok(await client.call_tool("audit_log", {"principal": "victor"}))
    isolations = ok(await client.call_tool("audit_log", {"tool": "isolate_gpu", "node": "node-003"}))
    denials = ok(await client.call_tool("audit_log", {"decision": "deny"}))
    other_node = ok(await client.call_tool("audit_log", {"node": "node-004"}))
    recent = ok(await client.call_tool("audit_log", {"since": "5m"}))
    future = ok(await client.call_tool("audit_log", {"since": (utcnow() + timedelta(hours=1)).isoformat()}))
    bad_since = error(await client.call_tool("audit_log", {"since": "yesterday"}))

    assert stack.twin.gpu("node-003", 3).health == "fallen_off_bus"
    assert injected["detail"] == "Xid 79 on node-003/gpu3" and injected["kernel_lines"]
    assert "denied for victor (role viewer)" in denied
    assert [r["tool"] for r in everything["records"]] == ["inject_fault", "isolate_gpu", "inject_fault"]
    assert everything["total"] == 3
    assert [(r["principal"], r["decision"]) for r in by_viewer["records"]] == [("victor", "deny")]
    assert [r["arguments"]["gpu"] for r in isolations["records"]] == [3]
    assert denials["matched"] == 1 and denials["records"][0]["reasons"]
    assert other_node["matched"] == 0
    assert recent["matched"] == 3 and future["matched"] == 0
    assert "neither a duration" in bad_since


async def test_injecting_is_refused_on_a_real_cluster(stack: Stack) -> None:
    @dataclasses.dataclass
    class Kubernetes:
        kind: str = "kubernetes"
        cluster: str = "prod-a"

    deps = dataclasses.replace(stack.deps, backend=Kubernetes())  # type: ignore[arg-type]
    async with held(Client(build_server(deps))) as client:
        refused = error(
            await client.call_tool("inject_fault", {"kind": "xid", "node": "n1", "gpu": 0, "xid": 79})
        )
        trail = ok(await client.call_tool("audit_log", {"tool": "inject_fault"}))

    assert "refused: the backend is kubernetes, not the fleet twin" in refused
    assert trail["records"][0]["decision"] == "deny"


async def test_an_operator_takes_a_node_away_and_a_second_time_is_a_readable_error(
    client: Client, stack: Stack
) -> None:
    lost = ok(await client.call_tool("inject_fault", {"kind": "node_lost", "node": "node-010"}))
    assert lost["target"] == "node-010" and "train-02" in lost["detail"] and lost["kernel_lines"] == []
    node = ok(await client.call_tool("describe_node", {"node": "node-010"}))
    assert node["state"] == "not_ready"

    again = error(await client.call_tool("inject_fault", {"kind": "node_lost", "node": "node-010"}))
    assert "already not_ready" in again
    missing = error(await client.call_tool("inject_fault", {"kind": "node_lost"}))
    assert "needs node" in missing
