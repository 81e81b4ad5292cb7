"""`aiops inject` breaks the twin of a running platform and `aiops audit` reads the trail (the real
JetStream stream) through the MCP endpoint; a wrong token or a server that is down is one readable
line and exit 1, never a traceback."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.agents.safety_support import as_operator, cli, incident_where, running

pytestmark = pytest.mark.slow


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_inject_then_audit_and_the_errors_are_readable(tmp_path: Path) -> None:
    async with running(tmp_path, http=True) as platform:
        env = as_operator(platform)
        injected = await cli(env, "inject", "xid", "--node", "node-003", "--gpu", "3", "--xid", "79")
        acted = await incident_where(
            platform,
            lambda i: i.status not in ("open", "mitigating"),
            what="the agent to finish with the Xid",
        )
        every_incident = await cli(env, "slash", "gpu incidents --all")
        trail = await cli(env, "audit", "--node", "node-003")
        mine = await cli(env, "audit", "--principal", "olga", "--tool", "inject_fault", "--json")
        wrong_token = await cli({**env, "AIOPS_MCP_TOKEN": "not-a-token-anyone-has"}, "audit")
        unknown_kind = await cli(env, "inject", "meteor")
    down = await cli({**env, "AIOPS_MCP_URL": f"http://127.0.0.1:{_closed_port()}/mcp"}, "approvals")

    assert injected[0] == 0 and "injected: Xid 79 on node-003/gpu3" in injected[1]
    assert every_incident[0] == 0 and acted.id in every_incident[1] and "*" not in every_incident[1]
    assert trail[0] == 0
    assert "olga (operator)  inject_fault" in trail[1] and "triage-agent (agent)  isolate_gpu" in trail[1]
    records = json.loads(mine[1])["records"]
    assert [(r["principal"], r["tool"], r["decision"]) for r in records] == [
        ("olga", "inject_fault", "allow")
    ]
    assert wrong_token[0] == 1
    assert wrong_token[1].strip() == "error: 401: token not accepted (check --token / AIOPS_MCP_TOKEN)"
    assert unknown_kind[0] != 0 and "Traceback" not in unknown_kind[1]
    assert down[0] == 1 and len(down[1].strip().splitlines()) == 1
    assert down[1].startswith("error: cannot reach http://127.0.0.1:")


async def test_inject_sdc_corrupts_a_gpu_of_the_running_twin(tmp_path: Path) -> None:
    async with running(tmp_path, http=True) as platform:
        env = as_operator(platform)
        injected = await cli(env, "inject", "sdc", "--node", "node-010", "--gpu", "3", "--mode", "spike")
        fault = platform.twin.numerics.faulty("node-010", 3)

    assert injected[0] == 0 and "silent data corruption (spike) on node-010/gpu3" in injected[1], injected[1]
    assert fault is not None and fault.mode == "spike" and not fault.transient
