"""The agent's pull loop on ``GPU_EVENTS``: the platform's ``events.consumer.PullConsumer``.

A durable JetStream pull consumer (agent replicas share it and split the stream) that fetches
batches of up to 1,024 events, so a storm costs one fetch and one incident write per touched
incident per batch. Each event is acknowledged on its own (``AckPolicy.EXPLICIT``, fire-and-forget
publishes): with ``AckPolicy.ALL`` one replica's ack would acknowledge the events another replica
fetched and had not handled yet, and those of a replica that was killed would never be redelivered
(events lost; found with a SIGKILLed ``aiops agent`` process). A batch is
acknowledged only after the agent has persisted it; when handling fails (the KV store
unreachable, say) the same batch is retried in place with backoff, and a NATS fault (a server of
the cluster down, a leader election) is ridden out with backoff and a new pull subscription — see
``events.consumer``.

Why not FastStream's batch subscriber: its 50 ms fetch deadline yields batches of ~10 events under
load, it JSON-decodes every message for a handler that never reads the decoded body, and it needed
a patch of its internals to survive a time-out; the hand-written loop was about twice as fast
(evals/benchmarks/agent_throughput.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from events import subjects
from events.consumer import DeadLetterHook, PullConsumer
from events.liveness import Liveness

Handler = Callable[[list[tuple[str, bytes]]], Awaitable[None]]
ACK_WAIT_S = 30.0
"""Events a replica fetched and never acknowledged (it died) are redelivered this long after."""


class EventConsumer(PullConsumer):
    def __init__(
        self,
        js: JetStreamContext,
        handle: Handler,
        *,
        durable: str = "triage",
        batch_size: int = 1024,
        idle_wait_s: float = 0.5,
        ack_wait_s: float = ACK_WAIT_S,
        on_backlog: Callable[[bool], None] | None = None,
        dead_letter: DeadLetterHook | None = None,
        liveness: Liveness | None = None,
    ) -> None:
        async def payloads(msgs: list[Msg]) -> None:
            await handle([(m.subject, m.data) for m in msgs])

        def fetched(n: int) -> None:
            # A full batch means a backlog: held incidents wait until the agent has seen it.
            if on_backlog is not None:
                on_backlog(n >= batch_size)

        super().__init__(
            js,
            payloads,
            stream=subjects.STREAM_EVENTS,
            subject=subjects.events_all(),
            durable=durable,
            batch_size=batch_size,
            idle_wait_s=idle_wait_s,
            ack_wait_s=ack_wait_s,
            ack="message",
            dead_letter=dead_letter,
            liveness=liveness,
            on_fetched=fetched,
        )
