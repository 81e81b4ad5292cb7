"""``aiops up --agents N``: N ``aiops agent`` processes against the platform's NATS, supervised by
the ``aiops up`` process (a replica that dies is restarted; SIGTERM of the parent stops them all)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aiops.agent_replicas import AgentReplicas, replica_env
from aiops.cli import app
from aiops.nats_cluster import NatsCluster
from tests.aiops.up_process import UpProcess
from tests.waiting import eventually

STARTED = r"agent replica (\S+) started \(pid (\d+)\)"


def agent_connections(server: NatsCluster) -> list[str]:
    """Names of the agent replicas connected to the server right now (its /connz)."""
    found = server.monitor("n1", "/connz?limit=1024").get("connections") or []
    assert isinstance(found, list)
    return sorted(c["name"] for c in found if str(c.get("name", "")).startswith("aiops-agent "))


def alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def pids(up: UpProcess) -> dict[str, int]:
    """The latest pid of each replica, from the supervisor's log."""
    return {m.group(1): int(m.group(2)) for m in up.found(STARTED)}


def test_each_replica_gets_the_platform_and_an_agent_id_of_its_own() -> None:
    replicas = AgentReplicas.for_platform(
        3,
        nats_url="nats://a:4222,nats://b:4222",
        mcp_url="http://p/mcp",
        token="t",
        agent_id="triage",
        base_env={"AIOPS_AGENTS": "3", "PATH": "/bin"},
    )
    assert [r.name for r in replicas.replicas] == ["triage-1", "triage-2", "triage-3"]
    env = replicas.replicas[1].env
    assert env["AIOPS_AGENT_ID"] == "triage-2" and env["AIOPS_NATS_URL"] == "nats://a:4222,nats://b:4222"
    assert env["AIOPS_MCP_URL"] == "http://p/mcp" and env["AIOPS_AGENT_TOKEN"] == "t"
    assert "AIOPS_AGENTS" not in env and env["PATH"] == "/bin"
    assert replicas.command[-2:] == ["aiops.cli", "agent"]
    assert (
        replica_env({}, nats_url="n", mcp_url="m", token="t", agent_id="a")["AIOPS_EMBEDDED_AGENT"] == "false"
    )


@pytest.mark.parametrize(
    ("args", "says"), [(["--agents", "0"], "agents"), (["--agents", "2", "--no-agent"], "pick one")]
)
def test_a_bad_agent_count_is_one_readable_line_and_exit_status_two(args: list[str], says: str) -> None:
    result = CliRunner().invoke(app, ["up", *args])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("invalid setting") and says in lines[0], result.output


@pytest.mark.slow
async def test_two_replicas_connect_a_killed_one_is_restarted_and_sigterm_stops_them_all(
    tmp_path: Path,
) -> None:
    server = NatsCluster(tmp_path / "nats", size=1)
    with server, UpProcess(tmp_path, ["--agents", "2"], env={"AIOPS_NATS_URL": server.url}) as up:
        await up.ready()
        assert "agents      2 replicas" in up.text()
        both = ["aiops-agent triage-agent-1", "aiops-agent triage-agent-2"]
        await eventually(lambda: agent_connections(server) == both, within_s=120, what="two agents on NATS")
        first = pids(up)
        assert set(first) == {"triage-agent-1", "triage-agent-2"}
        assert all(alive(pid) for pid in first.values())
        assert up.proc is not None and up.proc.pid not in first.values()

        # A replica dies hard: the supervisor says so and starts it again.
        os.kill(first["triage-agent-2"], signal.SIGKILL)
        await eventually(
            lambda: pids(up).get("triage-agent-2") not in (None, first["triage-agent-2"]),
            within_s=60,
            what="triage-agent-2 restarted",
        )
        assert up.found(r"agent replica triage-agent-2 \(pid \d+\) exited unasked \(killed by SIGKILL\)")
        await eventually(lambda: agent_connections(server) == both, within_s=120, what="both agents back")
        second = pids(up)
        assert second["triage-agent-1"] == first["triage-agent-1"]

        # SIGTERM to the parent stops every replica, then the platform.
        up.terminate()
        await eventually(up.exited, within_s=90, what="aiops up to stop on SIGTERM")
        assert up.proc.returncode == 0, up.text()
        assert not any(alive(pid) for pid in second.values())
        await eventually(lambda: agent_connections(server) == [], within_s=10, what="agents gone")
        assert len(up.found(r"agent replica triage-agent-\d stopped")) == 2
