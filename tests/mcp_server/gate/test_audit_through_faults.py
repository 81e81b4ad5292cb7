"""An audit record is never lost to a NATS fault: written while the server is down, it lands once
the server is back (on its store), exactly once."""

from __future__ import annotations

import asyncio

import nats
import pytest

from events import subjects
from events.models import AuditRecord
from events.streams import ensure_jetstream
from mcp_server.gate.audit import JetStreamAudit
from tests.nats_cluster import NatsCluster
from tests.waiting import eventually

pytestmark = pytest.mark.slow


def entry(tool: str) -> AuditRecord:
    return AuditRecord(
        cluster="sim-a", principal="triage-agent", role="agent", tool=tool, decision="allow", ok=True
    )


async def test_a_record_written_while_the_server_is_down_lands_once_it_is_back(tmp_path) -> None:
    with NatsCluster(tmp_path / "nats", size=1) as server:
        nc = await nats.connect(server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1)
        try:
            js = nc.jetstream()
            await ensure_jetstream(js)
            audit = JetStreamAudit(js)
            await audit.record(entry("cordon_node"))

            server.kill("n1")
            writing = asyncio.create_task(audit.record(entry("isolate_gpu")))
            await eventually(lambda: nc.is_reconnecting, within_s=10, what="the client to notice")
            assert not writing.done()
            await asyncio.to_thread(server.restart, "n1")
            await asyncio.wait_for(writing, timeout=60)

            records = await audit.read()
            assert [r.tool for r in records] == ["cordon_node", "isolate_gpu"]
            info = await js.stream_info(subjects.STREAM_AUDIT)
            assert info.state.messages == 2
        finally:
            await nc.close()
