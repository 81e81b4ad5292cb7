"""A workaround for a FastStream 0.7.8 + nats-py 2.16 bug in batch pull subscribers.

``faststream.nats.subscriber.usecases.stream_pull_subscriber`` imports ``TimeoutError`` from
``nats.errors`` and its batch loop catches only that class around ``fetch``. nats-py's ``fetch``
for a batch raises the builtin ``asyncio.TimeoutError`` when a follow-up request finds no more
messages before the batch timeout. The builtin escapes, the consume task dies with messages it
already fetched, FastStream's supervisor restarts it, and those messages wait for JetStream's
ack-wait (30 s) to be redelivered: an intermittent 30-second stall on the event path.

Catching both classes in that module restores the intended behaviour ("a partial batch is handed
over at the timeout"). ``apply()`` is idempotent; it is called where our subscribers are built.
"""

from __future__ import annotations

import asyncio

import nats.errors
from faststream.nats.subscriber.usecases import stream_pull_subscriber

_BOTH = (nats.errors.TimeoutError, asyncio.TimeoutError)


def apply() -> None:
    # `except TimeoutError:` in that module then catches either class.
    stream_pull_subscriber.TimeoutError = _BOTH  # type: ignore[attr-defined,assignment]
