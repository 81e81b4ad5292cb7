"""Reading a whole JetStream KV bucket in one pass.

``KeyValue.keys()`` followed by one ``get`` per key costs a round trip per entry, and every
``keys()`` leaves an ordered consumer on the bucket's stream for five minutes: a loop that lists a
bucket every second piles them up until the server refuses new ones ("maximum consumers limit
reached"). ``latest_values`` reads every live entry's value through one short-lived watcher.
"""

from __future__ import annotations

from nats.js.kv import KeyValue

WATCHER_IDLE_S = 5.0


async def latest_values(kv: KeyValue) -> list[bytes]:
    """The current value of every key (deleted keys left out), in no particular order."""
    watcher = await kv.watchall(ignore_deletes=True, inactive_threshold=WATCHER_IDLE_S)
    values: list[bytes] = []
    try:
        async for entry in watcher:
            if entry is None:  # the end of what the bucket held when the watcher started
                break
            if entry.value:
                values.append(entry.value)
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]
    return values
