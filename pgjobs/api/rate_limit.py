"""Per-token request rate limit, counted in Redis so that it holds across API processes.

A fixed window per token: ``<namespace>:ratelimit:<token id>:<window number>`` counts the
token's requests of the window over every API process, and expires with it. Over the limit,
the answer is 429 with ``Retry-After`` = the seconds left in the window.

Each process sends its counts with INCRBY in one round trip (a Lua script). Near the limit
(within :data:`SYNC_BATCH` of it) every request does, so the limit is exact there; far below
it, a process sends its count for a token every :data:`SYNC_BATCH` requests or
:data:`SYNC_SECONDS`, whichever comes first, so a busy token costs one Redis call per batch
rather than one per request (a Redis call costs an API process about as much CPU as the rest of
a status read). What other processes counted since their last send is unknown to this one: the
limit can be passed by at most that, a batch per process. Redis unreachable: requests go
through (the limit protects the service; it is not what keeps tenants apart), with a warning.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass

import redis.exceptions

from pgjobs.aio.redis_client import get_redis
from pgjobs.logs import get_logger
from pgjobs.settings import get_settings

log = get_logger(__name__)

SYNC_BATCH = 64
"""Requests a process counts for a token before it sends them, far below the limit."""
SYNC_SECONDS = 0.05
"""Longest a process keeps a token's counted requests to itself."""

COUNT_LUA = """
local n = redis.call("INCRBY", KEYS[1], ARGV[2])
if n == tonumber(ARGV[2]) then
    redis.call("PEXPIRE", KEYS[1], ARGV[1])
end
return {n, redis.call("PTTL", KEYS[1])}
"""
"""KEYS[1]: the window's counter; ARGV[1]: the window in ms; ARGV[2]: requests to add. Returns
the count over all processes and the milliseconds left in the window."""


@dataclass
class _Count:
    """One token's window as this process sees it."""

    window: int
    known: int = 0
    """The count over all processes at the last send."""
    pending: int = 0
    """Counted here since."""
    sent_at: float = 0.0
    left_ms: int = 0
    sending: bool = False


class RateLimiter:
    def __init__(self, limit: int, window_seconds: int) -> None:
        self.limit = limit
        self.window_seconds = max(1, window_seconds)
        self._namespace = get_settings().redis_namespace
        self._counts: dict[uuid.UUID, _Count] = {}

    async def over(self, token_id: uuid.UUID) -> int | None:
        """Count one request of the token: None when within the limit, else the seconds to
        wait. A limit of 0 counts nothing."""
        if self.limit <= 0:
            return None
        now = time.time()
        window = int(now // self.window_seconds)
        count = self._counts.get(token_id)
        if count is None or count.window != window:
            if len(self._counts) > 10_000:
                self._counts = {k: v for k, v in self._counts.items() if v.window == window}
            count = self._counts[token_id] = _Count(window, sent_at=now)
        count.pending += 1
        near = count.known + count.pending >= self.limit - SYNC_BATCH
        due = count.pending >= SYNC_BATCH or now - count.sent_at >= SYNC_SECONDS
        if near or (due and not count.sending):
            await self._send(token_id, count)
        if count.known + count.pending <= self.limit:
            return None
        left_ms = count.left_ms or int((window + 1) * self.window_seconds * 1000 - now * 1000)
        return max(1, math.ceil(left_ms / 1000))

    async def _send(self, token_id: uuid.UUID, count: _Count) -> None:
        adding, count.pending, count.sending = count.pending, 0, True
        key = f"{self._namespace}:ratelimit:{token_id}:{count.window}"
        try:
            total, left_ms = await get_redis().eval(
                COUNT_LUA, 1, key, self.window_seconds * 1000, adding
            )
        except (redis.exceptions.RedisError, OSError) as exc:
            log.warning("api.rate_limit_unavailable", error_type=type(exc).__name__)
            return
        finally:
            count.sending = False
            count.sent_at = time.time()
        count.known = max(count.known, int(total))
        count.left_ms = int(left_ms)
