"""JetStream streams and KV buckets of the platform, declared in one place.

``ensure_jetstream`` is idempotent: it creates what is missing and updates what exists, so every
process can call it at start-up, in any order.

Buckets allow direct gets: a ``kv.get`` is then one message from any replica instead of a JSON API
reply with the value in base64, about twice as fast (the agent reads an incident before every
compare-and-set write). Buckets an older version made without it are updated in place.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, KeyValueConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from events import subjects

DAY_S = 24 * 3600.0


@dataclass(frozen=True)
class JetStreamLayout:
    """Retention knobs; replicas > 1 for a real NATS cluster."""

    replicas: int = 1
    events_max_age_s: float = 14 * DAY_S
    dedupe_window_s: float = 600.0
    kmsg_max_age_s: float = 1 * DAY_S
    dlq_max_age_s: float = 30 * DAY_S
    idempotency_ttl_s: float = 7 * DAY_S
    slack_replay_window_s: float = 11 * 60.0

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
            KeyValueConfig(
                bucket=subjects.BUCKET_NOTIFICATIONS, history=1, replicas=self.replicas, direct=True
            ),
            KeyValueConfig(bucket=subjects.BUCKET_APPROVALS, history=5, replicas=self.replicas, direct=True),
            KeyValueConfig(bucket=subjects.BUCKET_BREAKER, history=10, replicas=self.replicas, direct=True),
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
            # Signatures of Slack requests already run (chatops.replay): a repeat is a replay.
            KeyValueConfig(
                bucket=subjects.BUCKET_SLACK_REQUESTS,
                history=1,
                replicas=self.replicas,
                direct=True,
                ttl=self.slack_replay_window_s,
            ),
        ]


async def ensure_jetstream(js: JetStreamContext, layout: JetStreamLayout | None = None) -> None:
    """Create or update every stream and bucket of the platform."""
    layout = layout or JetStreamLayout()
    for cfg in layout.streams():
        assert cfg.name is not None
        try:
            await js.stream_info(cfg.name)
        except NotFoundError:
            await js.add_stream(cfg)
        else:
            await js.update_stream(cfg)
    for kv in layout.buckets():
        try:
            await js.create_key_value(kv)
        except BadRequestError:
            # The bucket exists with other settings (made by an older version): update its stream.
            stream = f"KV_{kv.bucket}"
            info = await js.stream_info(stream)
            await js.update_stream(replace(info.config, allow_direct=bool(kv.direct)))
