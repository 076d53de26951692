"""Sending committed jobs' messages from asyncio: the threaded sender's rule
(pgjobs/producer/sender.py) with an asyncio Redis client.

The messages are built, encoded and hooked by ``broker.Sending`` and laid out by
``broker.stored_layout``, exactly as the threaded send does; only the write differs. A failed
send leaves the rows pending for the relay, as there; the pending -> queued mark is handed to
the process's marker thread, which never blocks the loop.
"""

from __future__ import annotations

from collections.abc import Sequence

from pgjobs.aio.redis_client import get_redis
from pgjobs.producer import broker, sender


async def send_and_mark(outgoing: Sequence[broker.Outgoing]) -> None:
    """Send these committed jobs' messages now; have their rows marked queued soon."""
    if not outgoing:
        return
    try:
        sending = broker.Sending(outgoing)
        layout = broker.stored_layout(sending.broker.namespace, sending.encoded)
        async with get_redis().pipeline(transaction=True) as pipe:
            for key, bodies in layout:
                pipe.hset(f"{key}.msgs", mapping=bodies)  # type: ignore[arg-type]
                pipe.rpush(key, *bodies)
            rung = [broker.sleepers_key(key) for key, _ in layout]
            pipe.eval(broker.RING_LUA, len(rung), *rung, broker.DOORBELL_TTL_MS)
            await pipe.execute()
        sending.sent()
    except Exception as exc:  # noqa: BLE001 - the relay re-sends; the job is safe in PostgreSQL
        sender.send_failed(outgoing, exc)
        return
    sender.mark_soon([o.job_id for o in outgoing])
