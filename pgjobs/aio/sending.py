"""Sending committed jobs' messages from asyncio: the threaded sender's rule
(pgjobs/producer/sender.py) with an asyncio Redis client.

The messages are built, encoded and hooked by ``broker.Sending`` and written by the same
script call (``send.lua``, arguments from ``wire.send_arguments``) as the threaded send does;
only the client differs. A failed
send leaves the rows pending for the relay, as there; the pending -> queued mark is handed to
the process's marker thread, which never blocks the loop.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.exceptions import NoScriptError

from pgjobs.aio.redis_client import get_redis
from pgjobs.producer import broker, sender, wire


async def send_and_mark(outgoing: Sequence[broker.Outgoing]) -> None:
    """Send these committed jobs' messages now; have their rows marked queued soon."""
    if not outgoing:
        return
    try:
        sending = broker.Sending(outgoing)
        args = wire.send_arguments(sending.broker.namespace, sending.encoded)
        client = get_redis()
        try:
            await client.evalsha(wire.SEND_SHA, *args)  # type: ignore[arg-type]
        except NoScriptError:
            await client.eval(wire.SEND_LUA, *args)  # type: ignore[arg-type]
        sending.sent()
    except Exception as exc:  # noqa: BLE001 - the relay re-sends; the job is safe in PostgreSQL
        sender.send_failed(outgoing, exc)
        return
    sender.mark_soon([o.job_id for o in outgoing])
