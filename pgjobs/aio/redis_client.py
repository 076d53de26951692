"""The asyncio side's Redis client: one ``redis.asyncio`` client per event loop and process,
connecting on first use."""

from __future__ import annotations

import asyncio
import os
import weakref

import redis.asyncio as aioredis

from pgjobs.services.locate import redis_url

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[int, aioredis.Redis]] = (
    weakref.WeakKeyDictionary()
)


def get_redis() -> aioredis.Redis:
    """This loop's client (a forked child or another loop gets its own)."""
    loop = asyncio.get_running_loop()
    found = _clients.get(loop)
    if found is None or found[0] != os.getpid():
        found = (os.getpid(), aioredis.Redis.from_url(redis_url(), health_check_interval=30))
        _clients[loop] = found
    return found[1]


async def close_redis() -> None:
    found = _clients.pop(asyncio.get_running_loop(), None)
    if found is not None and found[0] == os.getpid():
        await found[1].aclose()
