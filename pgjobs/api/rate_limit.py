"""Per-token request rate limit, counted in Redis so that it holds across API processes.

A fixed window: the first request of a window creates its counter with an expiry of one
window; each request adds one, in one round trip (a Lua script). Over the limit, the answer
is 429 with ``Retry-After`` = the seconds left in the window. Redis unreachable: the request
goes through (the limit protects the service; it is not what keeps tenants apart) and a
warning is logged.
"""

from __future__ import annotations

import math
import time
import uuid

import redis.exceptions
import structlog

from pgjobs.aio.redis_client import get_redis
from pgjobs.settings import get_settings

log = structlog.get_logger(__name__)

COUNT_LUA = """
local n = redis.call("INCR", KEYS[1])
if n == 1 then
    redis.call("PEXPIRE", KEYS[1], ARGV[1])
end
return {n, redis.call("PTTL", KEYS[1])}
"""
"""KEYS[1]: ``<namespace>:ratelimit:<token id>:<window number>``; ARGV[1]: the window in ms.
Returns the count so far and the milliseconds left in the window."""


class RateLimiter:
    def __init__(self, limit: int, window_seconds: int) -> None:
        self.limit = limit
        self.window_seconds = max(1, window_seconds)
        self._namespace = get_settings().redis_namespace

    async def over(self, token_id: uuid.UUID) -> int | None:
        """Count one request of the token: None when within the limit, else the seconds to
        wait. A limit of 0 counts nothing."""
        if self.limit <= 0:
            return None
        window = int(time.time() // self.window_seconds)
        key = f"{self._namespace}:ratelimit:{token_id}:{window}"
        try:
            count, left_ms = await get_redis().eval(COUNT_LUA, 1, key, self.window_seconds * 1000)
        except (redis.exceptions.RedisError, OSError) as exc:
            log.warning("api.rate_limit_unavailable", error_type=type(exc).__name__)
            return None
        if int(count) <= self.limit:
            return None
        return max(1, math.ceil(int(left_ms) / 1000))
