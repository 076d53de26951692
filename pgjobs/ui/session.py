"""Dashboard sessions kept in Redis: the cookie holds a random id, Redis its hash's record.

A record names the tenant the session acts on, the token (id and public prefix, never the
secret), its scopes and a CSRF secret; it expires after ``SESSION_SECONDS`` and sign-out deletes
it. Every request looks the token up again, so a revoked or expired token ends its sessions at
once. The tenant is the token's own, except for an operator token switched to another
(:func:`switch_tenant`); a record naming another tenant for any other token ends the session.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from pgjobs.aio.redis_client import get_redis
from pgjobs.auth.store import InvalidToken, Principal, lookup_plan
from pgjobs.db.async_pool import connection
from pgjobs.db.models import TokenScope
from pgjobs.db.statements import arun
from pgjobs.settings import get_settings

SESSION_SECONDS = 8 * 3600
COOKIE = "pgjobs_session"
SIGNIN_COOKIE = "pgjobs_signin"
"""The sign-in form's CSRF token (double submit: the same value in this cookie and the form)."""
SIGNIN_SECONDS = 3600


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in browser: its principal and the CSRF token its forms carry."""

    key: str
    principal: Principal
    """The token acting on the session's tenant (``principal.tenant_id``)."""
    prefix: str
    csrf: str
    home_tenant_id: uuid.UUID
    """The token's own tenant (another than the session's only for an operator token)."""
    tenant_label: str | None = None
    """The slug of the tenant an operator switched to (the header shows it)."""

    def can_write(self) -> bool:
        return self.principal.allows(TokenScope.JOBS_WRITE)


def _key(session_id: str) -> str:
    digest = hashlib.sha256(session_id.encode()).hexdigest()
    return f"{get_settings().redis_namespace}:ui:session:{digest}"


async def open_session(principal: Principal, prefix: str) -> str:
    """A new session for ``principal``; the random id for the cookie."""
    session_id = secrets.token_urlsafe(32)
    record = {
        "tenant_id": str(principal.tenant_id),
        "token_id": str(principal.token_id),
        "prefix": prefix,
        "scopes": sorted(s.value for s in principal.scopes),
        "csrf": secrets.token_urlsafe(32),
    }
    await get_redis().set(_key(session_id), json.dumps(record), ex=SESSION_SECONDS)
    return session_id


async def close_session(session_id: str) -> None:
    await get_redis().delete(_key(session_id))


async def load_session(session_id: str | None) -> Session | None:
    """The live session of a cookie's id, or None (unknown, expired, or its token revoked)."""
    if not session_id:
        return None
    key = _key(session_id)
    raw = await get_redis().get(key)
    if raw is None:
        return None
    record = json.loads(raw)
    async with connection() as conn:
        stored = await arun(conn, lookup_plan(record["prefix"]))
    now = datetime.now(UTC)
    if (
        stored is None
        or str(stored.id) != record["token_id"]
        or stored.revoked_at is not None
        or (stored.expires_at is not None and stored.expires_at <= now)
    ):
        await get_redis().delete(key)
        return None
    home = Principal(stored.id, stored.tenant_id, stored.scopes, stored.expires_at)
    try:
        principal = home.acting_for(uuid.UUID(record["tenant_id"]))
    except InvalidToken:
        await get_redis().delete(key)
        return None
    return Session(
        key, principal, record["prefix"], record["csrf"], stored.tenant_id, record.get("label")
    )


async def switch_tenant(session: Session, tenant_id: uuid.UUID, label: str) -> None:
    """Have an operator token's session act on ``tenant_id`` from its next request (the
    session keeps its expiry). InvalidToken for any other token."""
    session.principal.acting_for(tenant_id)
    redis = get_redis()
    raw = await redis.get(session.key)
    if raw is None:
        raise InvalidToken("the session ended")
    record = json.loads(raw) | {"tenant_id": str(tenant_id), "label": label}
    await redis.set(session.key, json.dumps(record), keepttl=True)


def csrf_ok(session: Session, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(session.csrf, presented)
