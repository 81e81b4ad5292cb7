"""What ``aiops up`` / ``aiops agent`` tell operators: one log line per incident transition and per
action (structured with ``--log-format json``), and the counters behind ``/metrics``."""

from __future__ import annotations

import json
import logging

import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from prometheus_client import REGISTRY

from aiops.logs import JsonFormatter
from aiops.observability import PlatformWatch
from events import subjects
from events.incident import Incident
from events.models import AuditRecord
from tests.waiting import eventually


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_each_incident_transition_and_action_is_one_log_line_and_counted(
    nc: NatsClient, js: JetStreamContext, caplog: pytest.LogCaptureFixture
) -> None:
    watch = PlatformWatch(nc)
    await watch.start()
    denied_before = sample("aiops_policy_denials_total", rule="blast-radius")
    mitigating_before = sample("aiops_incident_transitions_total", to_status="mitigating")
    caplog.set_level(logging.INFO, logger="aiops.activity")
    incident = Incident(
        id="inc-1", cluster="prod-a", kind="xid", title="Xid 79 on gpu-node-02", entity="gpu-node-02"
    )
    try:
        for status in ("open", "open", "mitigating"):  # the repeat is no transition
            changed = incident.model_copy(update={"status": status})
            await nc.publish(subjects.incident("prod-a", "inc-1"), changed.model_dump_json().encode())
        denial = AuditRecord(
            cluster="prod-a",
            principal="triage-agent",
            role="agent",
            tool="cordon_node",
            arguments={"node": "gpu-node-02"},
            decision="deny",
            reasons=["too many nodes out"],
            policies=["blast-radius"],
            ok=False,
        )
        await nc.publish(subjects.audit("prod-a"), denial.model_dump_json().encode())
        await eventually(lambda: watch.transitions == 2 and watch.actions == 1, what="lines")
    finally:
        await watch.stop()

    lines = [r for r in caplog.records if r.name == "aiops.activity"]
    assert [r.getMessage() for r in lines] == [
        "incident inc-1 new -> open: Xid 79 on gpu-node-02",
        "incident inc-1 open -> mitigating: Xid 79 on gpu-node-02",
        "action cordon_node gpu-node-02 by triage-agent: deny",
    ]
    structured = json.loads(JsonFormatter().format(lines[-1]))
    assert structured["event"] == "action" and structured["decision"] == "deny"
    assert structured["policies"] == ["blast-radius"] and structured["level"] == "info"
    assert sample("aiops_policy_denials_total", rule="blast-radius") == denied_before + 1
    assert sample("aiops_incident_transitions_total", to_status="mitigating") == mitigating_before + 1
