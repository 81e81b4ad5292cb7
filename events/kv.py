"""Reading a whole JetStream KV bucket in one pass.

``KeyValue.keys()`` followed by one ``get`` per key costs a round trip per entry, and every
``keys()`` leaves an ordered consumer on the bucket's stream for five minutes: a loop that lists a
bucket every second piles them up until the server refuses new ones ("maximum consumers limit
reached"). ``latest_values`` reads every live entry's value through one short-lived watcher.

The end of the listing is the bucket stream's last sequence, read before the watcher starts, not
nats-py's "no pending updates" marker: the library decides that marker from consumer info, which
can say "nothing pending" while the entries the server already sent are still on their way, and
then the listing would come back empty.
"""

from __future__ import annotations

from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

WATCHER_IDLE_S = 5.0


async def latest_values(kv: KeyValue) -> list[bytes]:
    """The current value of every key (deleted keys left out), in no particular order."""
    info = await kv._js.stream_info(kv._stream)  # nats-py keeps both private
    last = info.state.last_seq
    if not info.state.messages or not last:
        return []
    latest: dict[str, bytes | None] = {}
    watcher = await kv.watchall(inactive_threshold=WATCHER_IDLE_S)
    try:
        async for entry in watcher:
            if entry is None:
                # The library's end marker: early (before any entry) it may be the race of the
                # module docstring; after an entry it follows the last one delivered.
                if latest:
                    break
                continue
            deleted = entry.operation in (KV_DEL, KV_PURGE)
            latest[entry.key] = None if deleted else entry.value
            if entry.revision >= last:
                break
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]
    return [v for v in latest.values() if v]
