"""Who is calling: the bearer token of every request, its tenant and scopes, and its rate.

A request's tenant is its token's, never a parameter. Lookups by prefix are kept for
``JOBS_API_TOKEN_CACHE_SECONDS`` per process (so a busy token costs no query per request and
a revocation takes effect within that time); the secret is hashed and compared on every
request. Every failure is the same 401; a token without the scope an endpoint needs gets a
403 naming the scope. ``last_used_at`` is marked in the background, at most once a minute
per token (pgjobs/auth/store.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Request

from pgjobs.api.problems import problem, unauthorized
from pgjobs.api.rate_limit import RateLimiter
from pgjobs.auth.store import (
    InvalidToken,
    LastUsedCoalescer,
    Principal,
    StoredToken,
    check_token,
    lookup_plan,
    touch_plan,
)
from pgjobs.auth.tokens import parse_token
from pgjobs.db.async_pool import connection
from pgjobs.db.errors import JobsError
from pgjobs.db.models import TokenScope
from pgjobs.db.statements import arun
from pgjobs.logs import get_logger
from pgjobs.settings import get_settings

log = get_logger(__name__)

CACHE_MAX = 10_000
"""Token lookups kept per process at most (the cache is emptied when full)."""


class ApiRefusal(Exception):
    """Ends a request with a ready problem response (401, 403, 429)."""

    def __init__(self, response: object) -> None:
        super().__init__("request refused")
        self.response = response


class TokenCache:
    """Stored tokens by prefix, each for a few seconds; unknown prefixes too."""

    def __init__(self, ttl_seconds: float) -> None:
        self.ttl_seconds = ttl_seconds
        self._found: dict[str, tuple[float, StoredToken | None]] = {}

    async def principal(self, raw: str | None) -> Principal:
        """The principal of a raw token; InvalidToken for anything else."""
        parts = parse_token(raw)
        if parts is None:
            raise InvalidToken("invalid token")
        now = time.monotonic()
        cached = self._found.get(parts.prefix)
        if cached is None or now - cached[0] > self.ttl_seconds:
            async with connection() as conn:
                stored = await arun(conn, lookup_plan(parts.prefix))
            if len(self._found) >= CACHE_MAX:
                self._found.clear()
            cached = self._found[parts.prefix] = (now, stored)
        return check_token(parts.secret, cached[1], datetime.now(UTC))


def bearer(request: Request) -> str | None:
    """The token of ``Authorization: Bearer <token>``, or None."""
    return bearer_token(request.headers.get("authorization"))


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization`` header's value ``Bearer <token>``, or None."""
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


class Gate:
    """The API process's authentication, scope check, rate limit and last-used marks."""

    def __init__(self) -> None:
        settings = get_settings()
        self.tokens = TokenCache(settings.api_token_cache_seconds)
        self.limiter = RateLimiter(settings.api_rate_limit, settings.api_rate_window_seconds)
        self.last_used = LastUsedCoalescer()
        self._marking: set[asyncio.Task[None]] = set()

    async def admit(self, authorization: str | None, scope: TokenScope) -> Principal:
        """The caller presenting ``authorization`` (the header's value) if its token is
        valid, has ``scope`` and is within its rate; else ApiRefusal with the answer."""
        try:
            principal = await self.tokens.principal(bearer_token(authorization))
        except InvalidToken:
            raise ApiRefusal(unauthorized()) from None
        if not principal.allows(scope):
            raise ApiRefusal(
                problem(
                    403,
                    "InsufficientScope",
                    f"this token lacks the scope {scope.value!r}",
                    required_scope=scope.value,
                )
            )
        retry_after = await self.limiter.over(principal.token_id)
        if retry_after is not None:
            raise ApiRefusal(
                problem(
                    429,
                    "RateLimited",
                    f"over {self.limiter.limit} requests per {self.limiter.window_seconds} s "
                    "for this token",
                    headers={"Retry-After": str(retry_after)},
                    limit=self.limiter.limit,
                    window_seconds=self.limiter.window_seconds,
                )
            )
        if self.last_used.due(principal.token_id, time.monotonic()):
            task = asyncio.create_task(self._mark_used(principal))
            self._marking.add(task)
            task.add_done_callback(self._marking.discard)
        return principal

    async def still_valid(self, raw: str | None) -> bool:
        """Whether a token is still valid (open event streams ask every few seconds)."""
        try:
            await self.tokens.principal(raw)
        except InvalidToken:
            return False
        return True

    @staticmethod
    async def _mark_used(principal: Principal) -> None:
        try:
            async with connection() as conn:
                await arun(conn, touch_plan(principal.token_id))
        except JobsError as exc:  # a lost mark is retried a minute later
            log.warning("token.mark_used_failed", error_type=type(exc).__name__)


def require(scope: TokenScope) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency: the caller, admitted for ``scope`` (ApiRefusal otherwise)."""

    async def admitted(request: Request) -> Principal:
        gate: Gate = request.app.state.gate
        return await gate.admit(request.headers.get("authorization"), scope)

    return admitted


async def on_refusal(request: Request, exc: Exception) -> Any:
    assert isinstance(exc, ApiRefusal)
    return exc.response


READ = require(TokenScope.JOBS_READ)
WRITE = require(TokenScope.JOBS_WRITE)
ADMIN = require(TokenScope.ADMIN)

Caller = Annotated[Principal, Depends(READ)]
"""A route's parameter: the caller, admitted with ``jobs:read``."""
Writer = Annotated[Principal, Depends(WRITE)]
"""... with ``jobs:write``."""
Admin = Annotated[Principal, Depends(ADMIN)]
"""... with ``admin``."""
