"""An alert storm: ~5,000 events from 128 nodes under 4 leaf switches, and the root causes behind it.

The events are what the detectors and the kernel-log service put on ``gpu.events.>`` during a bad
five minutes, interleaved in time order:

- a lemon GPU printing Xid 95 thousands of times, with DCGM's single-bit-rate reports beside it;
- a double-bit ECC error: Xid 48 and 63 lines (repeated), sympathetic Xid 45 and 154, DCGM counters;
- leaf switch leaf-03 dropping packets: every node under it reports its ranks' collectives slow,
  the jobs crossing it slow down and two of them hang (first-stalled ranks on different nodes);
- independent faults elsewhere: a GPU off the bus with its job's hang, a thermally throttled GPU,
  a hang on leaf-04, a pending row remap, a benign application Xid repeated;
- two malformed payloads (they go to the dead-letter subject).

``build_storm`` returns the events and the root causes a correct agent reports: one incident each.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from events.models import AnyEvent, EccEvent, HangEvent, ThroughputEvent, XidEvent, stable_id
from events.publish import encode_event, event_subject
from fleet import FleetSpec, JobSpec

T0 = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
"""Default start; pass the fleet twin's ``now()`` to line the storm up with its clock."""
BUSES = (
    "0000:18:00.0",
    "0000:2a:00.0",
    "0000:3a:00.0",
    "0000:5d:00.0",
    "0000:9a:00.0",
    "0000:ab:00.0",
    "0000:ba:00.0",
    "0000:db:00.0",
)
BAD_LEAF = "leaf-03"


def storm_spec(seed: int = 3) -> FleetSpec:
    """128 nodes, 4 leaves of 32, racks of 4, 8 spares; ten 12-node jobs packed in order, so
    job-06 crosses leaf-02/leaf-03 and job-07, job-08 sit under leaf-03."""
    return FleetSpec(
        cluster="sim-a",
        seed=seed,
        leaf_switches=4,
        nodes_per_leaf=32,
        nodes_per_rack=4,
        spare_nodes=8,
        jobs=[
            JobSpec(
                name=f"job-{i:02d}",
                nodes=12,
                step_time_s=2.0,
                checkpoint_interval_s=1800,
                checkpoint_write_s=30,
            )
            for i in range(1, 11)
        ],
    )


def node(i: int) -> str:
    return f"node-{i:03d}"


def job_nodes(job: int) -> list[str]:
    return [node(i) for i in range((job - 1) * 12 + 1, job * 12 + 1)]


@dataclass(frozen=True)
class RootCause:
    kind: str
    entity: str
    what: str


@dataclass
class Storm:
    events: list[AnyEvent] = field(default_factory=list)
    malformed: list[tuple[str, bytes]] = field(default_factory=list)
    root_causes: list[RootCause] = field(default_factory=list)
    switch_nodes: frozenset[str] = frozenset()
    switch_jobs: frozenset[str] = frozenset()

    def payloads(self) -> list[tuple[str, bytes]]:
        """(subject, JSON) in time order, malformed ones mixed in."""
        out = [(event_subject(e), encode_event(e)) for e in sorted(self.events, key=lambda e: e.time)]
        for i, bad in enumerate(self.malformed):
            out.insert((i + 1) * len(out) // (len(self.malformed) + 1), bad)
        return out


def build_storm(*, t0: datetime = T0, scale: float = 1.0, seed: int = 11) -> Storm:
    """The storm from ``t0`` on (``scale`` multiplies the repeated lines; 1.0 gives ~5,000 events)."""
    rng = random.Random(seed)
    storm = Storm()
    ev = storm.events
    n = 0

    def t(lo: float, hi: float) -> datetime:
        return t0 + timedelta(seconds=rng.uniform(lo, hi))

    def xid(code: int, where: str, gpu: int, at: datetime, **extra: object) -> XidEvent:
        nonlocal n
        n += 1
        message = str(extra.pop("message", f"Xid {code} line {n}"))
        return XidEvent.model_validate(
            {
                "event_id": stable_id("storm", where, gpu, code, n),
                "time": at,
                "cluster": "sim-a",
                "source": "kmsg",
                "node": where,
                "gpu": gpu,
                "pci_bus_id": BUSES[gpu],
                "xid": code,
                "message": message,
                "raw": f"NVRM: Xid (PCI:{BUSES[gpu][:-2]}): {code}, {message}",
                **extra,
            }
        )

    def ecc(where: str, gpu: int, findings: list[str], at: datetime, **counters: int) -> EccEvent:
        nonlocal n
        n += 1
        return EccEvent.model_validate(
            {
                "event_id": stable_id("storm-ecc", where, gpu, n),
                "time": at,
                "cluster": "sim-a",
                "source": "dcgm",
                "node": where,
                "gpu": gpu,
                "pci_bus_id": BUSES[gpu],
                "findings": findings,
                "reason": ", ".join(findings),
                **counters,
            }
        )

    def hang(job: int, ranks: list[int], at: datetime) -> HangEvent:
        nonlocal n
        n += 1
        nodes = list(dict.fromkeys(job_nodes(job)[r // 8] for r in ranks))
        return HangEvent(
            event_id=stable_id("storm-hang", job, n),
            time=at,
            cluster="sim-a",
            source="hang-detector",
            job=f"job-{job:02d}",
            ranks=ranks,
            nodes=nodes,
            gpus=[f"{job_nodes(job)[r // 8]}/{r % 8}" for r in ranks],
            last_step=5000,
            stalled_for_s=45.0,
            threshold_s=40.0,
            ranks_total=96,
            how="behind the other ranks in the collective sequence",
        )

    def slow(
        job: int,
        at: datetime,
        signature: str,
        *,
        suspects: list[str],
        switches: list[str],
        gpus: list[str] = (),
    ) -> ThroughputEvent:  # type: ignore[assignment]
        nonlocal n
        n += 1
        return ThroughputEvent.model_validate(
            {
                "event_id": stable_id("storm-slow", job, n),
                "time": at,
                "cluster": "sim-a",
                "source": "throughput-detector",
                "job": f"job-{job:02d}",
                "baseline_step_s": 2.0,
                "observed_step_s": 2.6,
                "slowdown": 1.3,
                "suspect_nodes": suspects,
                "suspect_switches": switches,
                "suspect_gpus": list(gpus),
                "signature": signature,
                "nodes": job_nodes(job),
                "sustained_s": 120.0,
            }
        )

    reps = lambda count: max(1, round(count * scale))  # noqa: E731 - local shorthand

    # A lemon GPU: thousands of Xid 95 lines, and DCGM's single-bit-rate reports.
    lemon = (node(44), 5)
    ev += [xid(95, *lemon, t(0, 300)) for _ in range(reps(2600))]
    ev += [ecc(*lemon, ["sbe_rate"], t(0, 300), sbe_volatile=1000 + i) for i in range(reps(200))]
    storm.root_causes.append(RootCause("xid", f"{lemon[0]}/{BUSES[lemon[1]]}", "lemon GPU, Xid 95 storm"))

    # A double-bit ECC error on job-10's node-110 GPU 4, every signal of it repeated.
    dbe = (node(110), 4)
    start = t0 + timedelta(seconds=20)
    ev.append(xid(48, *dbe, start))
    ev += [xid(63, *dbe, start + timedelta(milliseconds=1))]
    ev += [xid(48, *dbe, t(21, 300)) for _ in range(reps(100))]
    ev += [xid(45, *dbe, t(21, 300), caused_by_xid=48) for _ in range(reps(20))]
    ev.append(xid(154, *dbe, start + timedelta(seconds=2), recovery_action="GPU Reset Required"))
    ev += [
        ecc(*dbe, ["dbe", "remap_pending"], t(25, 300), dbe_volatile=1, remap_pending=1)
        for _ in range(reps(30))
    ]
    storm.root_causes.append(RootCause("xid", f"{dbe[0]}/{BUSES[dbe[1]]}", "double-bit ECC error"))

    # leaf-03 drops packets: node-065..096. Hangs come first (two jobs), then slowdowns everywhere.
    under = [node(i) for i in range(65, 97)]
    storm.switch_nodes = frozenset(under)
    storm.switch_jobs = frozenset({"job-06", "job-07", "job-08"})
    ev.append(hang(7, [3 * 8 + 2], t0 + timedelta(seconds=30)))  # node-076
    ev.append(hang(8, [5 * 8 + 1], t0 + timedelta(seconds=31)))  # node-090
    ev += [hang(rng.choice([7, 8]), [rng.randrange(96)], t(32, 300)) for _ in range(reps(60))]
    for where in under:
        job = 6 if where <= node(72) else 7 if where <= node(84) else 8
        ev += [
            slow(job, t(40, 300), "network", suspects=[where], switches=[BAD_LEAF]) for _ in range(reps(50))
        ]
    ev += [
        slow(6, t(40, 300), "network", suspects=[], switches=["leaf-02", BAD_LEAF]) for _ in range(reps(20))
    ]
    storm.root_causes.append(RootCause("switch", BAD_LEAF, "leaf switch dropping packets"))

    # A GPU off the bus under job-03 (leaf-01), its sympathetic lines, and the hang it causes.
    off = (node(30), 1)
    ev.append(xid(79, *off, t0 + timedelta(seconds=60)))
    ev += [xid(45, *off, t(61, 300), caused_by_xid=79) for _ in range(reps(10))]
    ev.append(hang(3, [(30 - 25) * 8 + 1], t0 + timedelta(seconds=105)))
    storm.root_causes.append(RootCause("xid", f"{off[0]}/{BUSES[off[1]]}", "GPU fell off the bus"))

    # A thermally throttled GPU under job-01 (leaf-01): a straggler, reported repeatedly.
    ev += [
        slow(1, t(90, 300), "straggler", suspects=[node(10)], switches=[], gpus=[f"{node(10)}/6"])
        for _ in range(reps(20))
    ]
    storm.root_causes.append(RootCause("throughput", "job-01", "thermally throttled GPU on node-010"))

    # A hang on leaf-04 (job-09, first-stalled rank on node-100): a real single-node fault.
    ev += [hang(9, [(100 - 97) * 8 + 4], t0 + timedelta(seconds=120 + i)) for i in range(reps(5))]
    storm.root_causes.append(RootCause("hang", "job-09", "hang on node-100"))

    # A pending row remap on node-120 (job-10) GPU 0.
    ev += [
        ecc(node(120), 0, ["remap_pending"], t(150, 300), remap_pending=1, remap_correctable=1)
        for _ in range(reps(30))
    ]
    storm.root_causes.append(RootCause("ecc", f"{node(120)}/{BUSES[0]}", "pending row remap"))

    # A benign application Xid, repeated.
    ev += [xid(43, node(50), 3, t(0, 300), pid=4242, process="python3") for _ in range(reps(300))]
    storm.root_causes.append(RootCause("xid", f"{node(50)}/{BUSES[3]}", "benign application Xid 43"))

    storm.malformed = [
        ("gpu.events.xid.sim-a.node-001", b'{"kind": "xid", "node": "node-001"}'),
        ("gpu.events.hang.sim-a.job-01", b"not json at all"),
    ]
    return storm
