"""Runs a scenario on the embedded platform (real nats-server) in lockstep with the twin's clock.

Each tick: apply the injections that are due; drive the detectors once at the current simulated
time (wait until the twin's heartbeats of the tick have reached the hang and throughput detectors
over NATS, evaluate them, scrape the twin's dcgm-exporter); let the whole pipeline settle (the
kernel-log shipper idle, the kmsg and triage consumers caught up, every mitigation finished); then
advance the simulated clock by ``tick_s``. Processing therefore takes no simulated time; detection
delays that live in simulated time (windows, thresholds, heartbeat intervals, DCGM scrapes once a
tick) are kept. Times have tick resolution. The deferred repairs and pre-emptive removal (when a
scenario's settings turn it on) take their rounds in the settling too: their own loops are parked.

Before the timeline starts, the detectors watch ``detector_warmup_s`` of healthy training (within
``warmup_s``), so the throughput detector has learnt each job's baseline step time.

GPU-hours lost are measured on the twin over the timeline: the jobs' lost hours (stalled, pending,
restarting, work discarded by a restart), what is committed at the end (the rest of a restart under
way; for a job still stopped, its work since the checkpoint and the restart it needs), and
throughput lost to slow steps. The oracle is what a perfect remediator, acting at the moment of
each fault, would lose for it (``OracleLoss``).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from aiops.platform import Platform
from aiops.settings import Settings
from evals.scenarios.model import Injection, Scenario
from events import subjects
from events.incident import Incident
from events.models import AuditRecord
from fleet import FleetSpec, FleetTwin, effect_of
from fleet.jobs import TrainingJob

SETTLE_LIMIT_S = 30.0

# Injection kinds: the twin call each one makes (the remaining YAML fields are its arguments).
KINDS: dict[str, str] = {
    "xid": "inject_xid",
    "fall_off_three_line": "inject_three_line_fall_off",
    "kernel_message": "log_kernel_messages",
    "ecc": "inject_ecc",  # fields: node, gpu, ecc (dbe | sbe_burst | remap_pending | remap_failure | retired_pages), count
    "hang": "inject_hang",  # fields: job, rank
    "degrade_link": "degrade_link",  # fields: leaf, factor (1 repairs)
    "throttle": "throttle_gpu",  # fields: node, gpu, factor (1 ends it)
    "slow_workload": "slow_workload",  # fields: job, factor (1 ends it)
    "lose_node": "lose_node",  # fields: node (the host goes away)
    "fail_nic": "fail_nic",  # fields: node (its InfiniBand link fails)
    "sdc": "inject_sdc",  # fields: node, gpu, mode (nan | spike), transient
}
# The Xid lines (and so the effects) the twin prints for each ECC injection (fleet.twin.inject_ecc).
ECC_XIDS: dict[str, list[int]] = {"dbe": [48, 63], "remap_pending": [63], "remap_failure": [64]}


class PlannerUnavailable(RuntimeError):
    """The planner asked for cannot run here (Claude without an API key)."""


@dataclass
class OracleLoss:
    """What a perfect remediator loses: for a fault that stops a job, the work since its checkpoint
    and the restart, at the moment of the fault; for a slowdown, the cheaper of swapping the slow
    part out at once (a restart) and living with it to the end of the run; for a slowdown nobody can
    remove at once (a degraded switch, the job's own workload), the slowdown itself."""

    gpu_hours: float = 0.0
    notes: list[str] = field(default_factory=list)


@dataclass
class ScenarioRun:
    scenario: Scenario
    planner: str
    started: datetime
    ended: datetime
    injected_at: list[datetime]
    incidents: list[Incident]
    audit: list[AuditRecord]
    twin: FleetTwin
    oracle: OracleLoss
    gpu_hours_lost: float
    slow_gpu_hours: float
    wall_s: float
    settle_timeouts: int = 0
    touched: set[str] = field(default_factory=set)
    """The hardware the timeline put a fault on: nodes and ``node/gpu``s."""
    audit_times: list[datetime] = field(default_factory=list)
    """The simulated time of each audit record (the tick it was written in), aligned with ``audit``."""

    @staticmethod
    def _done(a: AuditRecord) -> bool:
        return a.ok and a.decision == "allow" and not a.dry_run and not a.replayed

    @property
    def mutations(self) -> list[AuditRecord]:
        """Mutations that really happened (allowed, not dry runs, not replays)."""
        return [a for a in self.audit if self._done(a)]

    @property
    def mutation_times(self) -> list[datetime]:
        """The simulated time of each of ``mutations``."""
        times = self.audit_times or [self.ended] * len(self.audit)
        return [t for a, t in zip(self.audit, times, strict=True) if self._done(a)]


def build_spec(scenario: Scenario) -> FleetSpec:
    spec = FleetSpec.small(seed=scenario.fleet.seed)
    updates = dict(scenario.fleet.overrides)
    if scenario.fleet.spare_nodes is not None:
        updates["spare_nodes"] = scenario.fleet.spare_nodes
    return FleetSpec.model_validate({**spec.model_dump(), **updates}) if updates else spec


def _restart_cost(job: TrainingJob) -> float:
    return (job.work_since_checkpoint_s + job.restart_overhead_s) * job.gpus / 3600


def _slowdown(twin: FleetTwin, job: TrainingJob) -> float:
    """Share of the job's throughput lost to slow steps right now (0 when at its baseline)."""
    step = twin.telemetry.step_profile(job)[0]
    return max(0.0, 1 - twin.telemetry.base_step_s(job) / step) if step > 0 else 0.0


def apply(twin: FleetTwin, injection: Injection, oracle: OracleLoss, remaining_s: float) -> set[str]:
    """Make ``injection`` happen on the twin; ``remaining_s`` is the simulated time left in the run.
    Returns the hardware it put a fault on (nodes and ``node/gpu``s; none for a switch or workload)."""
    args = injection.arguments()
    touched = {str(args["node"])} if "node" in args else set()
    if "gpu" in args:
        touched.add(f"{args['node']}/{args['gpu']}")
    kind = injection.kind
    method = KINDS.get(kind)
    if method is None:
        raise ValueError(f"unknown injection kind {kind!r}; known: {sorted(KINDS)}")
    if kind == "xid":
        _oracle_for_xids(twin, args["node"], args["gpu"], [args["xid"]], args, oracle)
    elif kind == "fall_off_three_line":
        _oracle_for_xids(twin, args["node"], args["gpu"], [79], args, oracle)
    elif kind == "kernel_message":
        args = {"node": args["node"], "messages": [args["message"]]}
    elif kind == "ecc":
        args = {
            "node": args["node"],
            "gpu": args["gpu"],
            "kind": args["ecc"],
            "count": args.get("count", 1),
            "kernel_log": bool(args.get("kernel_log", True)),
        }
        _oracle_for_xids(twin, args["node"], args["gpu"], ECC_XIDS.get(args["kind"], []), {}, oracle)
    elif kind == "sdc":
        job = twin.job_for_gpu(args["node"], args["gpu"])
        if job is not None and job.state == "running":
            # A perfect remediator stops the job at once and restores the checkpoint before the onset.
            oracle.gpu_hours += _restart_cost(job)
            oracle.notes.append(
                f"{job.name} corrupted: {job.work_since_checkpoint_s:.0f} s since checkpoint + restart"
            )
    elif kind == "hang":
        job = twin.job(args["job"])
        if job.state == "running":
            oracle.gpu_hours += _restart_cost(job)
            oracle.notes.append(
                f"{job.name} hung: {job.work_since_checkpoint_s:.0f} s since checkpoint + restart"
            )
    elif kind in ("lose_node", "fail_nic"):
        for job in twin.jobs_on_node(args["node"]):
            if job.state == "running":
                oracle.gpu_hours += _restart_cost(job)
                oracle.notes.append(
                    f"{job.name} lost {args['node']}: {job.work_since_checkpoint_s:.0f} s since checkpoint + restart"
                )
    slow_before = _slow_jobs(twin)
    result = getattr(twin, method)(**args)
    if kind == "hang":
        job = twin.job(args["job"])
        node = job.nodes[int(result) // job.gpus_per_node]
        touched |= {node, f"{node}/{int(result) % job.gpus_per_node}"}
    if kind in ("throttle", "degrade_link", "slow_workload"):
        _oracle_for_slowdown(twin, kind, slow_before, remaining_s, oracle)
    return touched


def _oracle_for_xids(
    twin: FleetTwin, node: str, gpu: int, xids: list[int], args: dict[str, Any], oracle: OracleLoss
) -> None:
    job = twin.job_for_gpu(node, gpu)
    if job is None or job.state != "running":
        return
    if not any(effect_of(x, args.get("recovery_action", "GPU Reset Required")).stalls_job for x in xids):
        return
    oracle.gpu_hours += _restart_cost(job)
    oracle.notes.append(f"{job.name}: {job.work_since_checkpoint_s:.0f} s since checkpoint + restart")


def _slow_jobs(twin: FleetTwin) -> dict[str, float]:
    return {job.name: _slowdown(twin, job) for job in twin.jobs.values() if job.state == "running"}


def _oracle_for_slowdown(
    twin: FleetTwin, kind: str, before: dict[str, float], remaining_s: float, oracle: OracleLoss
) -> None:
    for name, was in before.items():
        job = twin.job(name)
        now = _slowdown(twin, job)
        if now <= was:
            continue
        live_with_it = (now - was) * job.gpus * remaining_s / 3600
        if kind == "throttle":
            # One slow GPU: a perfect remediator swaps its node out at once, unless the restart costs more.
            cost = min(_restart_cost(job), live_with_it)
            oracle.notes.append(
                f"{name}: straggler, the cheaper of a restart now and {now:.0%} slower to the end"
            )
        else:
            cost = live_with_it
            oracle.notes.append(f"{name}: {now:.0%} slower to the end, which no instant action removes")
        oracle.gpu_hours += cost


def lost_so_far(twin: FleetTwin) -> float:
    """GPU-hours the jobs have lost, counting what is already committed as lost: the rest of a
    restart under way, for a job that is stopped (stalled, pending) the work since its checkpoint
    and the restart it still needs — whoever restarts it later cannot save those — and for a job
    still training on corrupted numbers the work since its last clean checkpoint and a restart."""
    lost = 0.0
    for job in twin.jobs.values():
        lost += job.gpu_hours_lost
        if job.state == "restarting":
            lost += job.restart_remaining_s * job.gpus / 3600
        elif job.state in ("stalled", "pending"):
            lost += _restart_cost(job)
        elif job.state == "running" and job.name in twin.numerics.poisoned:
            lost += _corrupted_cost(twin, job)
    return lost


def _corrupted_cost(twin: FleetTwin, job: TrainingJob) -> float:
    """A job training on corrupted numbers (silent data corruption nobody stopped): everything since
    the newest checkpoint from before the corruption is wasted, and a restart from it is still due."""
    first_bad = twin.numerics.poisoned[job.name].first_bad_step
    clean = [c.step for c in job.checkpoints if c.step < first_bad]
    redo_s = (job.step - (clean[-1] if clean else 0)) * job.step_time_s
    return (redo_s + job.restart_overhead_s) * job.gpus / 3600


def slow_loss(twin: FleetTwin, seconds: float) -> float:
    """GPU-hours lost to slow steps by the running jobs over the next ``seconds``."""
    return sum(
        _slowdown(twin, job) * job.gpus * seconds / 3600
        for job in twin.jobs.values()
        if job.state == "running"
    )


class _BeatCounter:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, beat: object) -> None:
        self.count += 1


async def _wait_for(condition: Callable[[], bool], limit_s: float) -> bool:
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.001)
    return True


PARKED_S = 1e9


def park_detector_loop(platform: Platform) -> None:
    """The runner drives the detectors itself, once per tick; their own wall-clock loop is parked
    (its intervals put out of reach), so no evaluation or scrape lands at a moment of its choosing.
    At most the round in flight when this is called still runs (during the warm-up)."""
    service = platform.detection.service
    service.evaluate_interval_s = service.scrape_interval_s = PARKED_S
    platform.repairs.park()  # the runner ticks the deferred repairs itself (``settle``)
    if platform.preemptive is not None:
        platform.preemptive.park()  # and pre-emptive removal


async def detect(platform: Platform, beats: _BeatCounter, *, scrape: bool) -> bool:
    """Run the heartbeat detectors once at the twin's current time, after the heartbeats emitted so
    far have reached them, and scrape DCGM if ``scrape``; False if the heartbeats never arrived."""
    service, relay = platform.detection.service, platform.detection.relay
    arrived = await _wait_for(lambda: service.beats_seen + relay.dropped >= beats.count, SETTLE_LIMIT_S)
    await service.evaluate()
    if scrape:
        await service.scrape()
    return arrived


@dataclass
class _Cadence:
    """Something due every ``every_s`` of simulated time (the DCGM scrape)."""

    every_s: float
    next_at: datetime | None = None

    def due(self, now: datetime) -> bool:
        if self.next_at is not None and now < self.next_at:
            return False
        self.next_at = now + timedelta(seconds=self.every_s)
        return True


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
            # Then the deferred repairs' round (the worker's own loop is parked): what it did (a
            # reboot's kernel lines, say) goes through the pipeline before the tick ends.
            if await platform.repairs.tick():
                quiet_rounds = 0
                continue
            if platform.preemptive is not None and await platform.preemptive.tick():
                quiet_rounds = 0
                continue
            return True
        await asyncio.sleep(0.005)
    return False


async def audit_count(platform: Platform) -> int:
    return int((await platform.js.stream_info(subjects.STREAM_AUDIT)).state.messages)


def stamp(marks: list[tuple[int, datetime]], records: int, started: datetime) -> list[datetime]:
    """The simulated time of each of ``records`` audit records, from (count, time) marks taken each
    tick: a record is stamped with the first tick whose count includes it."""
    times = []
    for index in range(records):
        times.append(next((at for count, at in marks if count > index), marks[-1][1] if marks else started))
    return times


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


def scenario_settings(scenario: Scenario, planner: str) -> Settings:
    """The platform's settings for a run: the scenario's overrides, the planner, free ports."""
    settings = Settings(http_port=0, **{**scenario.settings, "planner": planner})
    key = settings.anthropic_api_key
    if planner != "rules" and not (key and key.get_secret_value()):
        raise PlannerUnavailable(
            f"planner {planner!r} needs ANTHROPIC_API_KEY; without it, it would be the rules"
        )
    return settings


async def run_scenario(scenario: Scenario, planner: str = "rules") -> ScenarioRun:
    wall = time.perf_counter()
    settings = scenario_settings(scenario, planner)
    oracle, timeouts = OracleLoss(), 0
    injected_at: list[datetime] = []
    touched: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="aiops-eval-") as tmp:
        async with Platform(
            settings, spec=build_spec(scenario), data_dir=Path(tmp), serve_http=False, run_clock=False
        ) as platform:
            twin = platform.twin
            park_detector_loop(platform)
            beats, scrapes = _BeatCounter(), _Cadence(scenario.dcgm_scrape_s)
            unsubscribe = twin.subscribe_heartbeats(beats)
            twin.advance(scenario.warmup_s - scenario.detector_warmup_s)
            watched = 0.0
            while True:  # the detectors learn the healthy fleet
                timeouts += not await detect(platform, beats, scrape=scrapes.due(twin.now()))
                timeouts += not await settle(platform)
                if watched >= scenario.detector_warmup_s:
                    break
                step = min(scenario.tick_s, scenario.detector_warmup_s - watched)
                twin.advance(step)
                watched += step
            started = twin.now()
            lost_before, slow = lost_so_far(twin), 0.0
            pending = sorted(scenario.timeline, key=lambda i: i.at_s)
            end = (pending[-1].at_s if pending else 0.0) + scenario.run_for_s
            sim = 0.0
            marks: list[tuple[int, datetime]] = [(await audit_count(platform), started)]
            while True:
                while pending and pending[0].at_s <= sim:
                    injected_at.append(twin.now())
                    touched |= apply(twin, pending.pop(0), oracle, end - sim)
                timeouts += not await detect(platform, beats, scrape=scrapes.due(twin.now()))
                timeouts += not await settle(platform)
                if (count := await audit_count(platform)) > marks[-1][0]:
                    marks.append((count, twin.now()))
                if sim >= end:
                    break
                slow += slow_loss(twin, scenario.tick_s)
                twin.advance(scenario.tick_s)
                sim += scenario.tick_s
            unsubscribe()
            ended = twin.now()
            lost = lost_so_far(twin) - lost_before + slow
            incidents = await platform.store.list_incidents(limit=100_000)
            audit = await read_audit(platform)
    return ScenarioRun(
        audit_times=stamp(marks, len(audit), started),
        scenario=scenario,
        planner=planner,
        started=started,
        ended=ended,
        injected_at=injected_at,
        incidents=sorted(incidents, key=lambda i: (i.opened_at, i.id)),
        audit=audit,
        twin=twin,
        oracle=oracle,
        gpu_hours_lost=lost,
        slow_gpu_hours=slow,
        wall_s=time.perf_counter() - wall,
        settle_timeouts=timeouts,
        touched=touched,
    )


def dump_run(run: ScenarioRun) -> dict[str, Any]:
    return {
        "incidents": [json.loads(i.model_dump_json()) for i in run.incidents],
        "mutations": [json.loads(a.model_dump_json()) for a in run.mutations],
    }
