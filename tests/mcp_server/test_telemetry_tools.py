"""The telemetry tools in process, over the fleet twin's counters and kernel log: the fleet at a
glance, worst offenders, DCGM series over a window, Xid history, ECC health, job throughput,
and gpu_status."""

from __future__ import annotations

import json

from mcp import Client

from fleet import FleetTwin
from tests.mcp_server.support import Stack, error
from tests.mcp_server.test_tools import call


def advance(stack: Stack, seconds: int, step: int = 60) -> None:
    """Let the twin run, sampling its telemetry as a running server would."""
    assert stack.telemetry is not None
    for _ in range(seconds // step):
        stack.twin.advance(step)
        stack.telemetry.sample()


# -- fleet_health ---------------------------------------------------------------------------------


async def test_fleet_health_of_a_calm_fleet_is_healthy_in_one_line(client: Client) -> None:
    health = await call(client, "fleet_health")
    assert health["status"] == "healthy"
    assert health["headline"].startswith("HEALTHY: 128/128 GPUs healthy")
    assert health["nodes"] == {
        "total": 16,
        "ready": 16,
        "not_ready": 0,
        "cordoned": 0,
        "with_gpu_problems": 0,
        "spares": 2,
        "spares_fit": 2,
    }
    assert health["jobs"] == {"running": 2}
    assert health["attention"] == []
    # The two sample incidents: one mitigated, one resolved; neither is open.
    assert health["open_incidents"] == 0


async def test_fleet_health_puts_a_stalled_job_and_a_lost_gpu_first(client: Client, twin: FleetTwin) -> None:
    twin.inject_xid("node-003", 2, 79)
    twin.cordon_node("node-010", owner="olga")
    health = await call(client, "fleet_health")
    assert health["status"] == "critical"
    assert health["gpus"]["unhealthy"] == 1 and health["nodes"]["cordoned"] == 1
    assert health["attention"][0] == "job train-01 is stalled (64 GPUs idle)"
    assert any(line.startswith("node node-003: 1 GPU(s) unhealthy") for line in health["attention"])
    assert "1 stalled or failed" in health["headline"]


# -- xid_history, top_offenders -----------------------------------------------------------------------


async def test_xid_history_lists_the_kernel_logs_xids_newest_first(client: Client, twin: FleetTwin) -> None:
    twin.inject_xid("node-010", 4, 31)
    twin.advance(60)
    twin.inject_xid("node-003", 2, 79)
    history = await call(client, "xid_history")
    assert [(o["node"], o["gpu"], o["xid"]) for o in history["occurrences"]] == [
        ("node-003", 2, 79),
        ("node-010", 4, 31),
    ]
    assert history["occurrences"][0]["mnemonic"] == "GPU_HAS_FALLEN_OFF_THE_BUS"
    assert history["by_code"] == {"79": 1, "31": 1} and history["total"] == 2
    only = await call(client, "xid_history", node="node-010", gpu=4)
    assert [o["xid"] for o in only["occurrences"]] == [31]


async def test_xid_history_window_and_arguments_are_checked(client: Client, twin: FleetTwin) -> None:
    twin.inject_xid("node-010", 4, 31)
    twin.advance(2 * 3600)
    assert (await call(client, "xid_history", window_hours=1))["total"] == 0
    assert "needs node" in error(await client.call_tool("xid_history", {"gpu": 2}))
    assert "node-999" in error(await client.call_tool("xid_history", {"node": "node-999"}))


async def test_top_offenders_ranks_the_gpu_with_repeated_faults_first(
    client: Client, twin: FleetTwin
) -> None:
    for _ in range(3):
        twin.inject_xid("node-011", 5, 31)
        twin.advance(60)
    twin.inject_xid("node-003", 2, 79)
    twin.inject_ecc("node-013", 1, "sbe_burst", count=40)
    ranked = await call(client, "top_offenders")
    assert [o["target"] for o in ranked["offenders"]] == ["node-011/5", "node-003/2", "node-013/1"]
    assert ranked["offenders"][0]["by_code"] == {"31": 3}
    nodes = await call(client, "top_offenders", by="node", limit=1)
    assert [o["target"] for o in nodes["offenders"]] == ["node-011"]


# -- gpu_metrics, ecc_status, gpu_status ---------------------------------------------------------------


async def test_gpu_metrics_gives_series_over_the_window_with_the_current_value_last(
    client: Client, stack: Stack
) -> None:
    advance(stack, 600)
    stack.twin.throttle_gpu("node-002", 6, 1.6)
    advance(stack, 120)
    answer = await call(
        client,
        "gpu_metrics",
        node="node-002",
        gpus=[6],
        fields=["DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_CLOCKS_EVENT_REASONS"],
        window_minutes=15,
    )
    temp, reasons = answer["series"]
    assert (temp["field"], temp["unit"], temp["gpu"]) == ("DCGM_FI_DEV_GPU_TEMP", "C", 6)
    assert len(temp["samples"]) >= 10
    assert temp["last"] == 91.0 and temp["min"] < 91.0  # it heated up inside the window
    assert reasons["last"] == 0x20 | 0x40
    assert answer["source"] == "twin"


async def test_gpu_metrics_defaults_to_every_gpu_of_the_node(client: Client) -> None:
    answer = await call(client, "gpu_metrics", node="node-013", window_minutes=5)
    assert sorted({s["gpu"] for s in answer["series"]}) == list(range(8))
    assert {s["field"] for s in answer["series"]} == {
        "DCGM_FI_DEV_GPU_TEMP",
        "DCGM_FI_DEV_POWER_USAGE",
        "DCGM_FI_DEV_CLOCKS_EVENT_REASONS",
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
    }


async def test_gpu_metrics_names_a_field_the_twin_does_not_sample(client: Client) -> None:
    message = error(
        await client.call_tool(
            "gpu_metrics", {"node": "node-001", "fields": ["DCGM_FI_PROF_GR_ENGINE_ACTIVE"]}
        )
    )
    assert "DCGM_FI_PROF_GR_ENGINE_ACTIVE" in message and "Prometheus" in message
    assert "fields" in error(await client.call_tool("gpu_metrics", {"node": "node-001", "fields": ["TEMP"]}))


async def test_ecc_status_judges_each_gpu_by_dcgms_limits(client: Client, twin: FleetTwin) -> None:
    twin.inject_ecc("node-013", 1, "dbe")
    twin.inject_ecc("node-013", 2, "remap_failure")
    twin.inject_ecc("node-013", 3, "sbe_burst", count=12)
    status = await call(client, "ecc_status", node="node-013")
    verdicts = {g["gpu"]: g["verdict"] for g in status["gpus"]}
    assert (verdicts[1], verdicts[2], verdicts[3]) == ("reset_needed", "replace", "watch")
    dbe = status["gpus"][1]
    assert dbe["dbe_volatile"] == 1 and dbe["row_remap_pending"] is True
    assert any("double-bit" in reason for reason in dbe["reasons"])
    one = await call(client, "ecc_status", node="node-013", gpu=2)
    assert [g["gpu"] for g in one["gpus"]] == [2]


async def test_gpu_status_gathers_inventory_job_memory_and_recent_xids(
    client: Client, twin: FleetTwin
) -> None:
    twin.inject_ecc("node-010", 4, "dbe")
    status = await call(client, "gpu_status", node="node-010", gpu=4)
    assert status["gpu"]["index"] == 4 and status["gpu"]["last_xid"] == 63
    assert (status["job"], status["job_state"]) == ("train-02", "stalled")
    assert status["ecc"]["verdict"] == "reset_needed"
    assert [x["xid"] for x in status["recent_xids"]] == [63, 48]
    assert status["temperature_c"] is not None and status["telemetry_note"] is None
    assert "GPU 9" in error(await client.call_tool("gpu_status", {"node": "node-010", "gpu": 9}))


async def test_gpu_status_of_a_gpu_off_the_bus_says_dcgm_lost_it(client: Client, twin: FleetTwin) -> None:
    twin.inject_xid("node-003", 2, 79)
    status = await call(client, "gpu_status", node="node-003", gpu=2)
    assert status["gpu"]["health"] == "fallen_off_bus"
    assert "fell off the bus" in status["telemetry_note"]


# -- job_throughput, promql ---------------------------------------------------------------------------


async def test_job_throughput_measures_steps_and_points_at_the_throttled_gpu(
    client: Client, stack: Stack
) -> None:
    advance(stack, 600)
    healthy = await call(client, "job_throughput", job="train-02", window_minutes=5)
    assert healthy["slowdown"] == 1.0 and healthy["throttled_gpus"] == []
    assert healthy["steps_per_s"] is not None and healthy["steps_per_s"] > 0
    stack.twin.throttle_gpu("node-011", 2, 1.6)
    advance(stack, 600)
    slow = await call(client, "job_throughput", job="train-02", window_minutes=5)
    assert slow["slowdown"] > 1.1
    assert slow["throttled_gpus"] == ["node-011/2"]
    assert (slow["hottest_gpu"], slow["hottest_gpu_temp_c"]) == ("node-011/2", 91.0)
    assert slow["steps_per_s"] < healthy["steps_per_s"]


async def test_promql_on_the_twin_says_it_needs_a_prometheus(client: Client) -> None:
    message = error(await client.call_tool("promql", {"query": "up"}))
    assert "PromQL needs a Prometheus" in message and "AIOPS_PROMETHEUS_URL" in message


async def test_promql_queries_are_bounded(client: Client) -> None:
    assert "query" in error(await client.call_tool("promql", {"query": "x" * 2001}))
    assert "range_minutes" in error(await client.call_tool("promql", {"query": "up", "range_minutes": 20000}))


async def test_gpu_metrics_default_answer_is_bounded(client: Client, stack: Stack) -> None:
    advance(stack, 3600)
    answer = await call(client, "gpu_metrics", node="node-002")
    assert len(answer["series"]) == 8 * 4
    assert max(len(s["samples"]) for s in answer["series"]) <= 13
    assert len(json.dumps(answer)) < 40_000
