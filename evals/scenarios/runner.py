"""Runs a scenario on the embedded platform (real nats-server) in lockstep with the twin's clock.

Each tick: apply the injections that are due, let the whole pipeline settle (the kernel-log
shipper idle, the kmsg and triage consumers caught up, every mitigation finished), then advance the
simulated clock by ``tick_s``. Processing therefore takes no simulated time; detection delays that
live in simulated time (windows, thresholds) are kept. Times to mitigate have tick resolution.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from aiops.platform import Platform
from aiops.settings import Settings
from evals.scenarios.model import Injection, Scenario
from events import subjects
from events.incident import Incident
from events.models import AuditRecord
from fleet import FleetSpec, FleetTwin, effect_of

SETTLE_LIMIT_S = 30.0

# Injection kinds: the twin call each one makes.
KINDS: dict[str, str] = {
    "xid": "inject_xid",
    "fall_off_three_line": "inject_three_line_fall_off",
    "kernel_message": "log_kernel_messages",
}


@dataclass
class OracleLoss:
    """What a perfect remediator loses for a fault: the work since the checkpoint and the restart."""

    gpu_hours: float = 0.0
    notes: list[str] = field(default_factory=list)


@dataclass
class ScenarioRun:
    scenario: Scenario
    planner: str
    started: datetime
    incidents: list[Incident]
    audit: list[AuditRecord]
    twin: FleetTwin
    oracle: OracleLoss
    wall_s: float
    settle_timeouts: int = 0

    @property
    def mutations(self) -> list[AuditRecord]:
        """Mutations that really happened (allowed, not dry runs, not replays)."""
        return [a for a in self.audit if a.ok and a.decision == "allow" and not a.dry_run and not a.replayed]


def build_spec(scenario: Scenario) -> FleetSpec:
    spec = FleetSpec.small(seed=scenario.fleet.seed)
    updates = dict(scenario.fleet.overrides)
    if scenario.fleet.spare_nodes is not None:
        updates["spare_nodes"] = scenario.fleet.spare_nodes
    return FleetSpec.model_validate({**spec.model_dump(), **updates}) if updates else spec


def apply(twin: FleetTwin, injection: Injection, oracle: OracleLoss) -> None:
    args = injection.arguments()
    if injection.kind == "xid":
        _oracle_for_xid(twin, args, oracle)
    if injection.kind == "fall_off_three_line":
        _oracle_for_xid(twin, {**args, "xid": 79}, oracle)
    if injection.kind == "kernel_message":
        args = {"node": args["node"], "messages": [args["message"]]}
    method = KINDS.get(injection.kind)
    if method is None:
        raise ValueError(f"unknown injection kind {injection.kind!r}; known: {sorted(KINDS)}")
    getattr(twin, method)(**args)


def _oracle_for_xid(twin: FleetTwin, args: dict[str, Any], oracle: OracleLoss) -> None:
    job = twin.job_for_gpu(args["node"], args["gpu"])
    effect = effect_of(args["xid"], args.get("recovery_action", "GPU Reset Required"))
    if job is None or not effect.stalls_job or job.state != "running":
        return
    lost = (job.work_since_checkpoint_s + job.restart_overhead_s) * job.gpus / 3600
    oracle.gpu_hours += lost
    oracle.notes.append(f"{job.name}: {job.work_since_checkpoint_s:.0f} s since checkpoint + restart")


async def settle(platform: Platform) -> bool:
    """Wait until nothing is in flight anywhere in the pipeline; False if it never settled."""
    deadline = time.monotonic() + SETTLE_LIMIT_S
    quiet_rounds = 0
    while time.monotonic() < deadline:
        await platform.shipper.wait_idle()
        busy = False
        for stream, durable in ((subjects.STREAM_KMSG, "kmsg-parser"), (subjects.STREAM_EVENTS, "triage")):
            info = await platform.js.consumer_info(stream, durable)
            busy = busy or bool(info.num_pending or info.num_ack_pending)
        await platform.agent.drain()
        quiet_rounds = 0 if busy else quiet_rounds + 1
        if quiet_rounds >= 2:
            return True
        await asyncio.sleep(0.005)
    return False


async def read_audit(platform: Platform) -> list[AuditRecord]:
    info = await platform.js.stream_info(subjects.STREAM_AUDIT)
    if not info.state.messages:
        return []
    sub = await platform.js.pull_subscribe("gpu.audit.>", durable=None)
    records: list[AuditRecord] = []
    while len(records) < info.state.messages:
        batch = await sub.fetch(info.state.messages - len(records), timeout=5)
        records += [AuditRecord.model_validate_json(m.data) for m in batch]
    await sub.unsubscribe()
    return records


async def run_scenario(scenario: Scenario, planner: str = "rules") -> ScenarioRun:
    wall = time.perf_counter()
    settings = Settings(http_port=0, **scenario.settings)
    oracle, timeouts = OracleLoss(), 0
    with tempfile.TemporaryDirectory(prefix="aiops-eval-") as tmp:
        async with Platform(
            settings, spec=build_spec(scenario), data_dir=Path(tmp), serve_http=False, run_clock=False
        ) as platform:
            twin = platform.twin
            twin.advance(scenario.warmup_s)
            started = twin.now()
            pending = sorted(scenario.timeline, key=lambda i: i.at_s)
            end = (pending[-1].at_s if pending else 0.0) + scenario.run_for_s
            sim = 0.0
            while True:
                while pending and pending[0].at_s <= sim:
                    apply(twin, pending.pop(0), oracle)
                timeouts += not await settle(platform)
                if sim >= end:
                    break
                twin.advance(scenario.tick_s)
                sim += scenario.tick_s
            incidents = await platform.store.list_incidents(limit=100_000)
            audit = await read_audit(platform)
    return ScenarioRun(
        scenario=scenario,
        planner=planner,
        started=started,
        incidents=incidents,
        audit=audit,
        twin=twin,
        oracle=oracle,
        wall_s=time.perf_counter() - wall,
        settle_timeouts=timeouts,
    )


def dump_run(run: ScenarioRun) -> dict[str, Any]:
    return {
        "incidents": [json.loads(i.model_dump_json()) for i in run.incidents],
        "mutations": [json.loads(a.model_dump_json()) for a in run.mutations],
    }
