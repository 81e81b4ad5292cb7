"""Slurm's answers as data: ``sinfo --json`` nodes and ``squeue --json`` jobs (OpenAPI v0.0.38
shapes, Slurm 22.05 and later), ``scontrol show -o`` records, host lists and GRES strings. The
gpu-aiops conventions inside node and job fields are ``conventions``'s.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from contracts.tools import JobState, NodeState
from mcp_server.backends.slurm.conventions import Json, ParseError, job_facts

# -- host lists ------------------------------------------------------------------------------------


def _split_top(text: str) -> list[str]:
    """Split on commas outside brackets: ``a[1-2],b`` -> ``["a[1-2]", "b"]``."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p for p in (p.strip() for p in parts) if p]


def expand_hostlist(text: str | None) -> list[str]:
    """``gpu-node-[001-003,007]`` -> the four names, in order (Slurm's hostlist syntax)."""
    if not text or text in ("(null)", "None"):
        return []
    names: list[str] = []
    for part in _split_top(text):
        match = re.match(r"^([^\[]*)\[([^\]]+)\](.*)$", part)
        if not match:
            names.append(part)
            continue
        head, ranges, tail = match.groups()
        for rng in ranges.split(","):
            lo, _, hi = rng.partition("-")
            if not lo.isdigit() or (hi and not hi.isdigit()):
                raise ParseError(f"cannot read the host list {text!r}")
            for i in range(int(lo), int(hi or lo) + 1):
                names.extend(f"{head}{i:0{len(lo)}d}{rest}" for rest in expand_hostlist(tail) or [""])
    return names


# -- scontrol show -o ----------------------------------------------------------------------------


def scontrol_records(text: str) -> list[dict[str, str]]:
    """``scontrol show <thing> -o``: one record a line, ``Key=Value`` words (a value may hold spaces)."""
    records = []
    for line in text.splitlines():
        record: dict[str, str] = {}
        key = None
        for word in line.split():
            name, eq, value = word.partition("=")
            if eq and re.fullmatch(r"[A-Za-z][A-Za-z0-9_:/]*", name):
                key = name
                record[key] = value
            elif key is not None:
                record[key] += " " + word
        if record:
            records.append(record)
    return records


# -- GRES ---------------------------------------------------------------------------------------------


def gpu_count(gres: str | None) -> int:
    """GPUs in a GRES string: ``gpu:8``, ``gpu:a100:4(S:0-1),gpu:h100:4`` -> 8."""
    total = 0
    for item in _split_top(gres or ""):
        item = re.sub(r"\(.*\)$", "", item)
        parts = item.split(":")
        if parts[0] != "gpu":
            continue
        if len(parts) == 1:
            total += 1
        elif parts[-1].isdigit():
            total += int(parts[-1])
        else:
            total += 1  # gpu:a100 (a type, count 1)
    return total


def with_gpu_count(gres: str, count: int) -> str:
    """The GRES string with its (single) GPU entry's count set: ``gpu:a100:8`` -> ``gpu:a100:7``."""
    out, done = [], False
    for item in _split_top(gres):
        parts = re.sub(r"\(.*\)$", "", item).split(":")
        if parts[0] == "gpu":
            if done:
                raise ParseError(f"{gres!r} has several GPU types; reduce them in gres.conf instead")
            done = True
            kind = parts[1:-1] if parts[-1].isdigit() else parts[1:]
            out.append(":".join(["gpu", *kind, str(count)]))
        else:
            out.append(item)
    if not done:
        raise ParseError(f"no GPU in the GRES {gres!r}")
    return ",".join(out)


def gpu_indices(detail: str) -> list[int]:
    """The GPU indices of one node's ``gres_detail`` entry: ``gpu:8(IDX:0-7)`` -> 0..7."""
    out: list[int] = []
    for match in re.finditer(r"gpu[^()]*\(IDX:([0-9,\-]+)\)", detail):
        for rng in match.group(1).split(","):
            lo, _, hi = rng.partition("-")
            out.extend(range(int(lo), int(hi or lo) + 1))
    return out


# -- nodes and jobs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlurmNode:
    name: str
    state: str
    flags: frozenset[str]
    reason: str
    reason_by: str | None
    gres: str
    gres_used: str
    partitions: tuple[str, ...]
    features: tuple[str, ...]
    comment: str
    extra: Json = field(default_factory=dict)

    @property
    def drained(self) -> bool:
        return bool(self.flags & {"DRAIN", "DRAINING", "DRAINED"}) or self.state in ("drained", "draining")

    @property
    def rebooting(self) -> bool:
        return any(f.startswith("REBOOT") for f in self.flags) or self.state == "reboot"

    @property
    def view_state(self) -> NodeState:
        if self.rebooting:
            return "rebooting"
        if self.state in ("down", "future", "unknown") or self.flags & {"NOT_RESPONDING", "INVALID_REG"}:
            return "not_ready" if self.state != "unknown" else "unknown"
        if self.state in ("idle", "mixed", "allocated", "completing", "drained", "draining"):
            return "ready"
        return "unknown"

    @property
    def gpus(self) -> int:
        return gpu_count(self.gres)

    @property
    def busy(self) -> bool:
        return self.state in ("mixed", "allocated", "completing") or "COMPLETING" in self.flags


def _extra(text: str | None, node: str) -> Json:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}  # a site's own use of Extra; the node agent's inventory is absent
    return value if isinstance(value, dict) else {}


def parse_nodes(doc: Json) -> list[SlurmNode]:
    """``sinfo --json``'s ``nodes``."""
    if "nodes" not in doc:
        raise ParseError(f"sinfo --json answered without nodes (keys: {', '.join(doc) or 'none'})")
    out = []
    for n in doc["nodes"]:
        try:
            out.append(
                SlurmNode(
                    name=n["name"],
                    state=str(n.get("state", "unknown")).lower(),
                    flags=frozenset(str(f).upper() for f in n.get("state_flags") or []),
                    reason=n.get("reason") or "",
                    reason_by=n.get("reason_set_by_user") or None,
                    gres=n.get("gres") or "",
                    gres_used=n.get("gres_used") or "",
                    partitions=tuple(n.get("partitions") or ()),
                    features=tuple(f for f in (n.get("active_features") or "").split(",") if f),
                    comment=n.get("comment") or "",
                    extra=_extra(n.get("extra"), n["name"]),
                )
            )
        except KeyError as exc:
            raise ParseError(f"a node in sinfo --json lacks {exc}") from exc
    return out


JOB_STATES: dict[str, JobState] = {
    "RUNNING": "running",
    "PENDING": "pending",
    "CONFIGURING": "pending",
    "REQUEUED": "restarting",
    "REQUEUE_FED": "restarting",
    "REQUEUE_HOLD": "restarting",
    "RESIZING": "running",
    "SUSPENDED": "stalled",
    "STOPPED": "stalled",
    "COMPLETING": "restarting",
    "COMPLETED": "completed",
    "CANCELLED": "failed",
    "FAILED": "failed",
    "TIMEOUT": "failed",
    "NODE_FAIL": "failed",
    "PREEMPTED": "failed",
    "BOOT_FAIL": "failed",
    "DEADLINE": "failed",
    "OUT_OF_MEMORY": "failed",
}


UNPLACEABLE = frozenset(
    {"Resources", "ReqNodeNotAvail", "PartitionNodeLimit", "NodeDown", "BadConstraints", "PartitionDown"}
)
"""Pending reasons that mean a requeued job has nowhere to run (not: it is on its way)."""


@dataclass(frozen=True)
class SlurmJob:
    job_id: int
    name: str
    slurm_state: str
    reason: str
    nodes: tuple[str, ...]
    gpus_by_node: dict[str, tuple[int, ...]]
    gpus_per_node: int
    node_count: int
    required: tuple[str, ...]
    excluded: tuple[str, ...]
    partition: str
    requeue: bool
    restarts: int
    comment: str
    facts: dict[str, str]

    @property
    def state(self) -> JobState:
        if self.slurm_state == "PENDING" and (self.restarts or "requeue" in self.reason.lower()):
            # Requeued: on its way back, unless Slurm says it cannot be placed now.
            return "pending" if self.reason in UNPLACEABLE else "restarting"
        return JOB_STATES.get(self.slurm_state, "unknown")

    @property
    def active(self) -> bool:
        return self.slurm_state in ("RUNNING", "CONFIGURING", "SUSPENDED", "COMPLETING", "RESIZING")


def parse_jobs(doc: Json) -> list[SlurmJob]:
    """``squeue --json``'s ``jobs``."""
    if "jobs" not in doc:
        raise ParseError(f"squeue --json answered without jobs (keys: {', '.join(doc) or 'none'})")
    out = []
    for j in doc["jobs"]:
        try:
            state = str(j["job_state"]).upper()
            required = tuple(expand_hostlist(j.get("required_nodes")))
            nodes = tuple(expand_hostlist(j.get("nodes"))) if state != "PENDING" else ()
            if required and len(required) == int(j.get("node_count") or 0):
                # Pinned to its nodes (a swapped gang): it runs on exactly those, also while a
                # requeue is still completing on the old ones.
                nodes = required
            details = j.get("gres_detail") or []
            allocated = [
                a.get("nodename") for a in (j.get("job_resources") or {}).get("allocated_nodes") or []
            ]
            order = allocated if len(allocated) == len(details) else list(nodes)
            by_node = {node: tuple(gpu_indices(detail)) for node, detail in zip(order, details, strict=False)}
            per_node = gpu_count((j.get("tres_per_node") or "").replace("gres:", "").replace("gres/", ""))
            if not per_node and by_node:
                per_node = max(len(v) for v in by_node.values())
            out.append(
                SlurmJob(
                    job_id=int(j["job_id"]),
                    name=j.get("name") or str(j["job_id"]),
                    slurm_state=state,
                    reason=j.get("state_reason") or "",
                    nodes=nodes,
                    gpus_by_node=by_node,
                    gpus_per_node=per_node,
                    node_count=int(j.get("node_count") or len(nodes)),
                    required=required,
                    excluded=tuple(expand_hostlist(j.get("excluded_nodes"))),
                    partition=j.get("partition") or "",
                    requeue=bool(j.get("requeue")),
                    restarts=int(j.get("restart_cnt") or 0),
                    comment=j.get("comment") or "",
                    facts=job_facts(j.get("comment")),
                )
            )
        except KeyError as exc:
            raise ParseError(f"a job in squeue --json lacks {exc}") from exc
    return out
