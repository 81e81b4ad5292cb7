"""Incident summaries: the template always works; Claude's, through the real SDK against the
loopback server, falls back to the template on any failure."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from anthropic import AsyncAnthropic

from agents.claude import ClaudeLimits, make_client
from agents.summaries import ClaudeSummarizer, TemplateSummarizer
from evals.loopback_anthropic import Hang, LoopbackMessagesServer, Raw, text
from events.incident import ActionRecord, Incident, Plan, RootCause, RunbookInvocation


def mitigated() -> Incident:
    incident = Incident(
        id="inc-1",
        cluster="sim-a",
        kind="xid",
        title="Xid 79 GPU_HAS_FALLEN_OFF_THE_BUS on node-003 GPU 3",
        status="mitigated",
        root_cause=RootCause(entity_type="gpu", entity_id="node-003/gpu3", confidence=0.9),
        affected_nodes=["node-003"],
        affected_gpus=["node-003/3"],
        affected_jobs=["train-01"],
        plan=Plan(
            planner="rules",
            disposition="mitigate",
            rationale="Xid 79 is a hardware fault: isolate GPU 3 on node-003 and restart job train-01",
            actions=[RunbookInvocation(runbook="isolate-gpu", params={"node": "node-003", "gpu": 3})],
        ),
        actions=[
            ActionRecord(
                run_id="r",
                step="isolate",
                tool="isolate_gpu",
                arguments={"node": "node-003", "gpu": 3},
                ok=True,
            ),
            ActionRecord(
                run_id="r",
                step="restart",
                tool="restart_from_checkpoint",
                arguments={"job": "train-01"},
                ok=True,
            ),
        ],
        gpu_hours_lost=12.5,
    )
    for action in incident.actions:
        action.decision = "allow"
    return incident


@pytest.fixture
def loopback() -> Iterator[LoopbackMessagesServer]:
    with LoopbackMessagesServer() as server:
        yield server


@pytest.fixture
async def client(loopback: LoopbackMessagesServer) -> AsyncIterator[AsyncAnthropic]:
    c = make_client("test-key", loopback.url)
    yield c
    await c.close()


async def test_the_template_says_what_happened_what_was_done_and_what_is_next():
    summary = await TemplateSummarizer().summarize(mitigated())
    assert summary.by == "template"
    words = summary.text
    assert words.startswith("Xid 79 GPU_HAS_FALLEN_OFF_THE_BUS on node-003 GPU 3: contained automatically.")
    assert "job train-01" in words and "12.5 GPU-hours lost" in words
    assert "isolate_gpu node-003/3 done (policy: allow)" in words
    assert "Next: nothing urgent" in words


async def test_the_template_tells_a_person_why_an_escalated_incident_is_theirs():
    incident = Incident(
        id="inc-2", cluster="sim-a", kind="xid", title="Xid 9999 on node-005", status="escalated"
    )
    incident.note("escalated to a person", "runbook isolate-gpu denied: blast radius")
    words = (await TemplateSummarizer().summarize(incident)).text
    assert "handed to a person" in words and "Nothing in the cluster was changed." in words
    assert "Next: a person must look at it: runbook isolate-gpu denied: blast radius" in words


async def test_claude_writes_the_summary_from_the_fenced_record(loopback, client):
    loopback.script(
        summary=text("GPU 3 on node-003 died; it is isolated and train-01 restarted. Nothing to do.")
    )
    summary = await ClaudeSummarizer(client, model="claude-sonnet-4-6").summarize(mitigated())
    assert summary.by == "claude" and summary.text.startswith("GPU 3 on node-003 died")
    [request] = loopback.requests
    assert "tools" not in request.body
    assert request.body["messages"][0]["content"].startswith("<data-")


@pytest.mark.parametrize(
    "reply",
    [
        Raw(500, b'{"type": "error", "error": {"type": "api_error", "message": "boom"}}'),
        text("", "end_turn"),
        Raw(200, b"nope"),
    ],
    ids=["api error", "empty", "not json"],
)
async def test_any_claude_failure_falls_back_to_the_template_and_says_why(loopback, client, reply):
    loopback.script(summary=reply)
    summary = await ClaudeSummarizer(client, model="claude-sonnet-4-6").summarize(mitigated())
    assert summary.by == "template" and summary.note and summary.note.startswith("Claude summary failed")
    assert "contained automatically" in summary.text


async def test_a_summary_that_takes_too_long_falls_back_to_the_template(loopback, client):
    loopback.script(summary=Hang())
    summarizer = ClaudeSummarizer(client, model="claude-sonnet-4-6", limits=ClaudeLimits(max_wall_s=0.5))
    summary = await summarizer.summarize(mitigated())
    assert summary.by == "template" and "TimeoutError" in (summary.note or "")
