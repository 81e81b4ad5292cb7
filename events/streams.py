"""JetStream streams and KV buckets of the platform, declared in one place.

``ensure_jetstream`` is idempotent: it creates what is missing and updates what exists, so every
process can call it at start-up, in any order. It never lowers an existing stream's (or bucket's)
replicas or limits: a process started with ``AIOPS_JS_REPLICAS=1`` against streams an operator
scaled to 3 leaves them at 3 (JetStream would silently scale them down), and a longer retention set
by hand stays. Each such difference is logged and returned; raising a value is applied.

A cluster that is still forming answers for a while with "no suitable peers for placement" (a peer
not yet heard from), "JetStream system temporarily unavailable" (no meta leader yet) or a timeout;
every process starts beside its NATS cluster in a Kubernetes rollout, so ``ensure_jetstream`` waits
through those answers with backoff up to ``forming_timeout_s`` and only then raises, with the last
answer as the reason. Any other error is raised at once.

Buckets allow direct gets: a ``kv.get`` is then one message from any replica instead of a JSON API
reply with the value in base64, about twice as fast (the agent reads an incident before every
compare-and-set write). Buckets an older version made without it are updated in place.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, KeyValueConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import APIError, NotFoundError, ServiceUnavailableError

from events import subjects

log = logging.getLogger(__name__)

DAY_S = 24 * 3600.0
CONSOLE_SESSION_TTL_S = 8 * 3600.0
"""How long a fleet console session lasts (its bucket drops an entry that long after its last write)."""


@dataclass(frozen=True)
class JetStreamLayout:
    """Retention knobs; replicas > 1 for a real NATS cluster (``AIOPS_JS_REPLICAS``)."""

    replicas: int = 1
    events_max_age_s: float = 14 * DAY_S
    dedupe_window_s: float = 600.0
    kmsg_max_age_s: float = 1 * DAY_S
    dlq_max_age_s: float = 30 * DAY_S
    dcgm_max_age_s: float = 1 * DAY_S
    dcgm_per_node: int = 5
    idempotency_ttl_s: float = 7 * DAY_S
    slack_replay_window_s: float = 11 * 60.0

    def __post_init__(self) -> None:
        if not 1 <= self.replicas <= 5:
            raise ValueError(f"JetStream replicas must be 1 to 5, not {self.replicas}")

    def streams(self) -> list[StreamConfig]:
        file = StorageType.FILE
        return [
            StreamConfig(
                name=subjects.STREAM_EVENTS,
                subjects=[subjects.events_all()],
                storage=file,
                num_replicas=self.replicas,
                max_age=self.events_max_age_s,
                duplicate_window=self.dedupe_window_s,
                description="Typed GPU fault events; deduplicated on Nats-Msg-Id = event_id",
            ),
            StreamConfig(
                name=subjects.STREAM_KMSG,
                subjects=["gpu.kmsg.>"],
                storage=file,
                num_replicas=self.replicas,
                max_age=self.kmsg_max_age_s,
                discard=DiscardPolicy.OLD,
                # Node agents publish with Nats-Msg-Id = boot id + kernel sequence: a line re-sent
                # after a NATS outage or an agent restart is stored once.
                duplicate_window=self.dedupe_window_s,
                description="Raw kernel log lines from GPU nodes, kept so a parser restart loses none",
            ),
            StreamConfig(
                name=subjects.STREAM_DCGM,
                subjects=[subjects.dcgm_all()],
                storage=file,
                num_replicas=self.replicas,
                max_age=self.dcgm_max_age_s,
                max_msgs_per_subject=self.dcgm_per_node,
                discard=DiscardPolicy.OLD,
                description="Node agents' relays of their dcgm-exporter: the latest reports per node",
            ),
            StreamConfig(
                name=subjects.STREAM_DLQ,
                subjects=["gpu.dlq.>"],
                storage=file,
                num_replicas=self.replicas,
                max_age=self.dlq_max_age_s,
                description="Anything that failed validation, with the original payload and the reason",
            ),
            StreamConfig(
                name=subjects.STREAM_AUDIT,
                subjects=["gpu.audit.>"],
                storage=file,
                num_replicas=self.replicas,
                retention=RetentionPolicy.LIMITS,
                deny_delete=True,
                deny_purge=True,
                description="One record per call of a tool that could change something",
            ),
            StreamConfig(
                name=subjects.STREAM_ESCALATIONS,
                subjects=["gpu.tickets.>", "gpu.pages.>"],
                storage=file,
                num_replicas=self.replicas,
                duplicate_window=self.dedupe_window_s,
                description="Hardware tickets and pages to on-call, deduplicated on Nats-Msg-Id",
            ),
            StreamConfig(
                name=subjects.STREAM_INCIDENTS,
                subjects=["gpu.incidents.>"],
                storage=file,
                num_replicas=self.replicas,
                max_age=self.events_max_age_s,
                description="Incident state changes, for subscribers (UIs, notifiers)",
            ),
        ]

    def buckets(self) -> list[KeyValueConfig]:
        return [
            KeyValueConfig(bucket=subjects.BUCKET_INCIDENTS, history=5, replicas=self.replicas, direct=True),
            KeyValueConfig(
                bucket=subjects.BUCKET_RUNBOOK_RUNS, history=5, replicas=self.replicas, direct=True
            ),
            KeyValueConfig(
                bucket=subjects.BUCKET_LEASES, history=1, replicas=self.replicas, direct=True, ttl=300
            ),
            # Correlation claims (agents.claims): fault key -> the incident that owns the fault,
            # shared by every agent replica; a day is far longer than any correlation window.
            KeyValueConfig(
                bucket=subjects.BUCKET_CORRELATION, history=1, replicas=self.replicas, direct=True, ttl=DAY_S
            ),
            KeyValueConfig(
                bucket=subjects.BUCKET_NOTIFICATIONS, history=1, replicas=self.replicas, direct=True
            ),
            KeyValueConfig(bucket=subjects.BUCKET_APPROVALS, history=5, replicas=self.replicas, direct=True),
            KeyValueConfig(bucket=subjects.BUCKET_BREAKER, history=10, replicas=self.replicas, direct=True),
            # Deferred repairs (events.repairs): one per node, claimed compare-and-set.
            KeyValueConfig(bucket=subjects.BUCKET_REPAIRS, history=5, replicas=self.replicas, direct=True),
            KeyValueConfig(
                bucket=subjects.BUCKET_GPU_INVENTORY, history=1, replicas=self.replicas, direct=True
            ),
            KeyValueConfig(
                bucket=subjects.BUCKET_IDEMPOTENCY,
                history=1,
                replicas=self.replicas,
                direct=True,
                ttl=self.idempotency_ttl_s,
            ),
            # Checkpoint write times per job, from the heartbeats (events/checkpoint_times.py).
            KeyValueConfig(
                bucket=subjects.BUCKET_CHECKPOINT_TIMES, history=1, replicas=self.replicas, direct=True
            ),
            # Nodes flagged for pre-emptive removal (agents/preemptive.py), kept a week.
            KeyValueConfig(
                bucket=subjects.BUCKET_PREEMPTIONS,
                history=5,
                replicas=self.replicas,
                direct=True,
                ttl=7 * 86_400.0,
            ),
            # Signatures of Slack requests already run (chatops.replay): a repeat is a replay.
            KeyValueConfig(
                bucket=subjects.BUCKET_SLACK_REQUESTS,
                history=1,
                replicas=self.replicas,
                direct=True,
                ttl=self.slack_replay_window_s,
            ),
            # Fleet console sessions (console/sessions.py): any replica accepts them, a restart keeps them.
            KeyValueConfig(
                bucket=subjects.BUCKET_CONSOLE_SESSIONS,
                history=1,
                replicas=self.replicas,
                direct=True,
                ttl=CONSOLE_SESSION_TTL_S,
            ),
        ]


# Limits where a bigger number keeps more; 0 (age, window) or -1 (counts, sizes) means no limit.
_LIMITS = ("num_replicas", "max_age", "max_msgs", "max_bytes", "max_msgs_per_subject", "max_msg_size")
_UNLIMITED: dict[str, Any] = {
    "max_age": 0,
    "max_msgs": -1,
    "max_bytes": -1,
    "max_msgs_per_subject": -1,
    "max_msg_size": -1,
}


def _rank(name: str, value: Any) -> float:
    if value is None:
        return float("-inf")
    if name in _UNLIMITED and value in (0, -1):
        return float("inf") if name != "num_replicas" else 0.0
    return float(value)


def merge_stream(existing: StreamConfig, wanted: dict[str, Any], name: str) -> tuple[StreamConfig, list[str]]:
    """``existing`` with ``wanted`` applied, except that no replica count or limit goes down; the
    second value names each difference kept."""
    changes: dict[str, Any] = {}
    kept: list[str] = []
    for key, value in wanted.items():
        have = getattr(existing, key)
        if key in _LIMITS:
            if _rank(key, value) < _rank(key, have):
                kept.append(f"{name}: keeps {key}={have} (the layout asks {value}; never lowered)")
                continue
            if have is not None and _rank(key, value) == _rank(key, have):
                continue
        if have != value:
            changes[key] = value
    return replace(existing, **changes), kept


def _stream_wanted(cfg: StreamConfig) -> dict[str, Any]:
    fields = ("subjects", "description", "num_replicas", "max_age", "duplicate_window", "discard",
              "deny_delete", "deny_purge")  # fmt: skip
    return {f: getattr(cfg, f) for f in fields if getattr(cfg, f) is not None}


def _bucket_wanted(kv: KeyValueConfig) -> dict[str, Any]:
    return {
        "num_replicas": kv.replicas,
        "max_msgs_per_subject": kv.history,
        "max_age": kv.ttl or 0,
        "allow_direct": bool(kv.direct),
    }


# JetStream's answers while a cluster forms or elects: no meta leader yet (503) or a peer the
# meta leader has not heard from yet (10005, "no suitable peers for placement, peer offline").
FORMING_ERR_CODES = frozenset({10005, 10008})
FORMING_TIMEOUT_S = 60.0


def is_forming(exc: BaseException) -> bool:
    """True for the answers of a cluster that is still forming (worth waiting for)."""
    if isinstance(exc, ServiceUnavailableError | NatsTimeoutError | asyncio.TimeoutError):
        return True
    return isinstance(exc, APIError) and exc.err_code in FORMING_ERR_CODES


async def ensure_jetstream(
    js: JetStreamContext,
    layout: JetStreamLayout | None = None,
    *,
    forming_timeout_s: float = FORMING_TIMEOUT_S,
) -> list[str]:
    """Create or update every stream and bucket of the platform; returns (and logs) each
    replica count or limit it kept because the layout would have lowered it. Waits (with backoff,
    up to ``forming_timeout_s``) while the cluster is still forming."""
    layout = layout or JetStreamLayout()
    kept: list[str] = []
    for cfg in layout.streams():
        assert cfg.name is not None
        kept += await _while_forming(
            partial(_ensure_stream, js, cfg.name, partial(js.add_stream, cfg), _stream_wanted(cfg)),
            cfg.name,
            forming_timeout_s,
        )
    for kv in layout.buckets():
        name = f"KV_{kv.bucket}"
        kept += await _while_forming(
            partial(_ensure_stream, js, name, partial(js.create_key_value, kv), _bucket_wanted(kv)),
            name,
            forming_timeout_s,
        )
    for note in kept:
        log.warning("%s", note)
    return kept


async def _while_forming(step: Callable[[], Awaitable[list[str]]], what: str, timeout_s: float) -> list[str]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    delay = 0.05
    while True:
        try:
            return await step()
        except Exception as exc:
            if not is_forming(exc) or loop.time() + delay > deadline:
                raise
            log.info("JetStream not ready for %s (%s); retrying in %.2fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def _ensure_stream(js: JetStreamContext, stream: str, create: Any, wanted: dict[str, Any]) -> list[str]:
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        await create()
        return []
    merged, kept = merge_stream(info.config, wanted, stream)
    if merged != info.config:
        await js.update_stream(merged)
    return kept
