"""The Slurm parsers against answers captured from a real Slurm 22.05 (tests/fixtures/slurm/,
written by ``python -m tests.mcp_server.backends.slurm.capture``), and the conventions' syntax."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mcp_server.backends.slurm.conventions import (
    ParseError,
    drain_owner,
    drain_reason,
    fact_time,
    job_facts,
    node_record,
    with_node_record,
)
from mcp_server.backends.slurm.parse import (
    expand_hostlist,
    gpu_count,
    gpu_indices,
    parse_jobs,
    parse_nodes,
    scontrol_records,
    with_gpu_count,
)

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "slurm"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def test_sinfo_json_nodes_with_state_drain_reason_gres_and_the_agents_inventory() -> None:
    nodes = {n.name: n for n in parse_nodes(load("sinfo.json"))}

    assert sorted(nodes) == ["gpu-node-001", "gpu-node-002", "gpu-node-003", "gpu-node-004"]
    busy, drained, spare = nodes["gpu-node-001"], nodes["gpu-node-003"], nodes["gpu-node-004"]
    assert (busy.state, busy.busy, busy.drained, busy.gpus, busy.view_state) == (
        "mixed",
        True,
        False,
        8,
        "ready",
    )
    assert busy.extra["gpu_health"] == {"3": "fallen_off_bus"} and len(busy.extra["gpus"]) == 8
    assert (drained.drained, drained.reason, drained.reason_by) == (True, "hw-team: DIMM swap", "root")
    assert drained.comment == "asset 4711" and drained.view_state == "ready"
    assert spare.partitions == ("spares",) and not spare.busy


def test_squeue_json_jobs_with_their_nodes_gpu_indices_and_checkpoint_facts() -> None:
    running, pending = parse_jobs(load("squeue.json"))

    assert (running.job_id, running.name, running.state, running.partition) == (
        1,
        "train-llm",
        "running",
        "gpu",
    )
    assert running.nodes == ("gpu-node-001", "gpu-node-002") and running.requeue and running.restarts == 0
    assert running.gpus_by_node == {"gpu-node-001": tuple(range(8)), "gpu-node-002": tuple(range(8))}
    assert running.facts["checkpoint_step"] == "1000" and running.facts["step_time_s"] == "1.25"
    assert (pending.name, pending.state, pending.nodes, pending.gpus_per_node) == (
        "eval-wide",
        "pending",
        (),
        8,
    )


def test_scontrol_show_one_liners_become_records() -> None:
    parts = {r["PartitionName"]: r for r in scontrol_records((FIXTURES / "partitions.txt").read_text())}
    (reservation,) = scontrol_records((FIXTURES / "reservation.txt").read_text())

    assert expand_hostlist(parts["gpu"]["Nodes"]) == ["gpu-node-001", "gpu-node-002", "gpu-node-003"]
    assert parts["spares"]["Nodes"] == "gpu-node-004"
    assert reservation["ReservationName"] == "spare-pool" and reservation["Nodes"] == "gpu-node-004"
    assert scontrol_records("NodeName=a OS=Linux 6.1 #1 SMP State=IDLE")[0]["OS"] == "Linux 6.1 #1 SMP"


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("gpu-node-[001-003,007]", ["gpu-node-001", "gpu-node-002", "gpu-node-003", "gpu-node-007"]),
        ("a1,b[8-10]", ["a1", "b8", "b9", "b10"]),
        ("rack[1-2]-n[1-2]", ["rack1-n1", "rack1-n2", "rack2-n1", "rack2-n2"]),
        ("", []),
        ("(null)", []),
    ],
)
def test_host_lists_expand_like_slurms(text: str, names: list[str]) -> None:
    assert expand_hostlist(text) == names


def test_a_host_list_slurm_would_not_write_is_an_error() -> None:
    with pytest.raises(ParseError, match="cannot read the host list"):
        expand_hostlist("n[a-b]")


def test_gres_counts_typed_gpus_and_lowers_one_entry() -> None:
    assert gpu_count("gpu:8") == 8
    assert gpu_count("gpu:a100:4(S:0-1),gpu:h100:4,nic:2") == 8
    assert gpu_count("") == 0
    assert with_gpu_count("gpu:a100:8(S:0-1),nic:2", 7) == "gpu:a100:7,nic:2"
    assert gpu_indices("gpu:8(IDX:0-2,5)") == [0, 1, 2, 5]
    with pytest.raises(ParseError, match="several GPU types"):
        with_gpu_count("gpu:a100:4,gpu:h100:4", 7)
    with pytest.raises(ParseError, match="no GPU"):
        with_gpu_count("nic:2", 1)


def test_the_node_record_keeps_the_sites_comment_text() -> None:
    comment = with_node_record("asset 4711", {"isolated": {"3": {"by": "olga"}}})

    assert comment == 'asset 4711 | gpu-aiops:{"isolated":{"3":{"by":"olga"}}}'
    assert node_record(comment) == {"isolated": {"3": {"by": "olga"}}}
    assert with_node_record(comment, {}) == "asset 4711"
    assert node_record("asset 4711") == {}
    with pytest.raises(ParseError, match="not JSON"):
        node_record("gpu-aiops:{broken")


def test_the_drain_reason_prefix_is_the_ownership_mark() -> None:
    reason = drain_reason("Xid 79 on GPU 3\n(incident inc-1)", "triage-agent")

    assert reason == "gpu-aiops: Xid 79 on GPU 3 (incident inc-1) [by triage-agent]"
    assert drain_owner(reason) == "gpu-aiops/triage-agent"
    assert drain_owner("hw-team: DIMM swap") is None
    assert drain_owner("hw-team: gpu-aiops: looks like ours") is None


def test_job_facts_read_the_training_loops_words() -> None:
    facts = job_facts("nightly | gpu-aiops: step=5 checkpoint_at=1796618000 junk")

    assert facts == {"step": "5", "checkpoint_at": "1796618000"}
    assert fact_time(facts, "checkpoint_at") == datetime.fromtimestamp(1796618000, UTC)
    assert fact_time({"at": "2026-12-07T04:00:00"}, "at") == datetime(2026, 12, 7, 4, tzinfo=UTC)
    assert fact_time({"at": "yesterday"}, "at") is None


def test_answers_without_their_lists_are_errors_not_empty_clusters() -> None:
    with pytest.raises(ParseError, match="without nodes"):
        parse_nodes({"meta": {}, "errors": []})
    with pytest.raises(ParseError, match="without jobs"):
        parse_jobs({"meta": {}})
