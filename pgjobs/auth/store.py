"""API tokens in PostgreSQL: create (the raw token returned once), list, revoke, and the two
statements every authenticated request may run: the lookup by prefix, and the last-used mark.

The lookup and the mark are plans (pgjobs/db/statements.py), so the API runs them on its
asyncio connections and tests and tools in a thread, with the same SQL and the same checks.
Every failure to authenticate (wrong format, unknown prefix, wrong secret, revoked, expired)
is the one :class:`InvalidToken`: a caller cannot tell them apart.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, text, update

from pgjobs.auth.tokens import new_token, parse_token, secret_hash, secret_matches
from pgjobs.db.engine import autocommit, transaction
from pgjobs.db.errors import (
    ForeignKeyViolation,
    JobsError,
    NotFound,
    UniqueViolation,
    UnknownTenant,
    validated,
)
from pgjobs.db.models import ApiToken, TokenScope
from pgjobs.db.schemas.api_token import TokenCreate, TokenRead
from pgjobs.db.statements import Plan, Step, run
from pgjobs.db.validation import as_moment, as_uuid
from pgjobs.logs import get_logger

log = get_logger(__name__)

_tokens = cast(Table, ApiToken.__table__)
_READ_COLUMNS = [c for c in _tokens.c if c.name != "secret_hash"]

LAST_USED_EVERY_SECONDS = 60.0
"""``last_used_at`` is written at most this often per token (a write per request would make
every read a write)."""


class InvalidToken(JobsError):
    """The token is malformed, unknown, revoked or expired (deliberately one error)."""


class TokenNotFound(NotFound):
    """No token with this id or prefix for this tenant."""


@dataclass(frozen=True, slots=True)
class NewToken:
    """A token just created. ``token`` is the raw token: shown once, stored nowhere."""

    token: str
    record: TokenRead

    def __repr__(self) -> str:
        return f"NewToken(token=<hidden>, record={self.record!r})"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a valid token of one tenant, and what it may do."""

    token_id: uuid.UUID
    tenant_id: uuid.UUID
    scopes: frozenset[TokenScope]
    expires_at: datetime | None

    def allows(self, scope: TokenScope) -> bool:
        """``admin`` allows every scope but ``operator``."""
        if scope is TokenScope.OPERATOR:
            return self.is_operator
        return scope in self.scopes or TokenScope.ADMIN in self.scopes

    @property
    def is_operator(self) -> bool:
        """May switch the dashboard to another tenant (docs/ui.md)."""
        return TokenScope.OPERATOR in self.scopes

    def acting_for(self, tenant_id: uuid.UUID) -> Principal:
        """This operator token, acting on ``tenant_id``'s jobs (its actor stays the token)."""
        if tenant_id != self.tenant_id and not self.is_operator:
            raise InvalidToken("only an operator token may switch tenants")
        return Principal(self.token_id, tenant_id, self.scopes, self.expires_at)

    @property
    def actor(self) -> str:
        """How changes made with this token are attributed (events, log lines)."""
        return f"token:{self.token_id}"


@dataclass(frozen=True, slots=True)
class StoredToken:
    """The row a lookup finds, hash included (it never leaves this module's callers)."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    secret_hash: bytes
    scopes: frozenset[TokenScope]
    expires_at: datetime | None
    revoked_at: datetime | None

    def __repr__(self) -> str:
        return f"StoredToken(id={self.id}, tenant_id={self.tenant_id}, secret_hash=<hidden>)"


def create_token(
    tenant_id: uuid.UUID,
    *,
    name: str,
    scopes: Sequence[TokenScope | str],
    expires_at: datetime | None = None,
    operator: bool = False,
) -> NewToken:
    """A new token for the tenant. The raw token is in the answer and nowhere else.

    ``operator``: add the ``operator`` scope (the dashboard's tenant switch, docs/ui.md); only
    the CLI passes it, ``scopes`` can never carry it."""
    tenant_id = as_uuid(tenant_id, "tenant_id")
    data = validated(TokenCreate, {"name": name, "scopes": scopes, "expires_at": expires_at})
    granted = {s.value for s in data.scopes} | ({TokenScope.OPERATOR.value} if operator else set())
    if data.expires_at is not None:
        as_moment(data.expires_at, "expires_at")
    for _ in range(3):  # a prefix collision (one in 3.6e15 per pair) draws again
        raw, parts = new_token()
        insert = (
            _tokens.insert()
            .values(
                id=uuid.uuid4(),
                tenant_id=tenant_id,
                name=data.name,
                prefix=parts.prefix,
                secret_hash=secret_hash(parts.secret),
                scopes=sorted(granted),
                expires_at=data.expires_at,
            )
            .returning(*_READ_COLUMNS)
        )
        try:
            with transaction() as conn:
                row = conn.execute(insert).one()
        except UniqueViolation:
            continue
        except ForeignKeyViolation:
            raise UnknownTenant(f"unknown tenant {tenant_id}") from None
        record = TokenRead.model_validate(row)
        log.info("token.created", tenant_id=str(tenant_id), id=str(record.id), operator=operator)
        return NewToken(raw, record)
    raise JobsError("could not draw an unused token prefix")  # pragma: no cover


def list_tokens(tenant_id: uuid.UUID) -> list[TokenRead]:
    """The tenant's tokens (revoked ones too), newest first. Never a secret or a hash."""
    tenant_id = as_uuid(tenant_id, "tenant_id")
    query = (
        select(*_READ_COLUMNS)
        .where(_tokens.c.tenant_id == tenant_id)
        .order_by(_tokens.c.created_at.desc(), _tokens.c.id)
    )
    with transaction() as conn:
        rows = conn.execute(query).all()
    return [TokenRead.model_validate(r) for r in rows]


def revoke_token(tenant_id: uuid.UUID, token: str) -> TokenRead:
    """Revoke the tenant's token named by its id or its prefix (``pgj_<prefix>`` or the bare
    prefix). Revoking a revoked token keeps its first revocation time."""
    tenant_id = as_uuid(tenant_id, "tenant_id")
    t = _tokens
    which = _token_condition(token)
    statement = (
        update(t)
        .where(t.c.tenant_id == tenant_id, which)
        .values(revoked_at=text("coalesce(revoked_at, now())"), updated_at=text("now()"))
        .returning(*_READ_COLUMNS)
    )
    with transaction() as conn:
        row = conn.execute(statement).one_or_none()
    if row is None:
        raise TokenNotFound("token not found")
    log.info("token.revoked", tenant_id=str(tenant_id), id=str(row.id))
    return TokenRead.model_validate(row)


def _token_condition(token: str) -> Any:
    """The WHERE condition for a token named by id or prefix."""
    if not isinstance(token, str):
        raise TokenNotFound("token not found")
    try:
        return _tokens.c.id == uuid.UUID(token)
    except ValueError:
        pass
    prefix = token.removeprefix("pgj_").rstrip("_…")
    return _tokens.c.prefix == prefix[:16]


LOOKUP = select(
    _tokens.c.id,
    _tokens.c.tenant_id,
    _tokens.c.secret_hash,
    _tokens.c.scopes,
    _tokens.c.expires_at,
    _tokens.c.revoked_at,
).where(_tokens.c.prefix == bindparam("prefix"))
"""Built once: run by (almost) every request whose token is not cached."""


def lookup_plan(prefix: str) -> Plan[StoredToken | None]:
    """The stored token with this prefix, valid or not."""
    rows = yield Step(LOOKUP, {"prefix": prefix})
    if not rows:
        return None
    row = rows[0]
    return StoredToken(
        id=row.id,
        tenant_id=row.tenant_id,
        secret_hash=bytes(row.secret_hash),
        scopes=frozenset(TokenScope(s) for s in row.scopes),
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


def check_token(secret: str, stored: StoredToken | None, now: datetime) -> Principal:
    """The principal of a presented secret and the row its prefix found; InvalidToken unless
    the secret matches and the token is neither revoked nor expired at ``now``."""
    if stored is None:
        secret_matches(secret, bytes(32))  # the same work as for a known prefix
        raise InvalidToken("invalid token")
    if not secret_matches(secret, stored.secret_hash):
        raise InvalidToken("invalid token")
    if stored.revoked_at is not None or (
        stored.expires_at is not None and stored.expires_at <= now
    ):
        raise InvalidToken("invalid token")
    return Principal(stored.id, stored.tenant_id, stored.scopes, stored.expires_at)


def authenticate(raw: str) -> Principal:
    """The principal of a raw token (tools and tests; the API caches lookups)."""
    parts = parse_token(raw)
    if parts is None:
        raise InvalidToken("invalid token")
    with autocommit() as conn:
        stored = run(conn, lookup_plan(parts.prefix))
    return check_token(parts.secret, stored, datetime.now(UTC))


TOUCH = text(
    """
    UPDATE api_tokens SET last_used_at = now()
    WHERE id = :id
      AND (last_used_at IS NULL OR last_used_at < now() - make_interval(secs => :every))
    RETURNING id
    """
)


def touch_plan(token_id: uuid.UUID) -> Plan[bool]:
    """Mark the token used now, unless it was marked less than a minute ago (by any process):
    True when the row was written."""
    rows = yield Step(TOUCH, {"id": token_id, "every": LAST_USED_EVERY_SECONDS})
    return bool(rows)


class LastUsedCoalescer:
    """In one process, the tokens whose last-used mark is due: at most one mark a minute per
    token, so a busy token costs one UPDATE a minute, not one a request. (The statement's own
    condition holds the same rule across processes.)"""

    def __init__(self, every_seconds: float = LAST_USED_EVERY_SECONDS) -> None:
        self.every_seconds = every_seconds
        self._marked: dict[uuid.UUID, float] = {}

    def due(self, token_id: uuid.UUID, now: float) -> bool:
        """Whether to mark ``token_id`` now (``now`` from a monotonic clock); a True answer
        counts as the mark."""
        last = self._marked.get(token_id)
        if last is not None and now - last < self.every_seconds:
            return False
        if len(self._marked) > 100_000:  # forget tokens not seen for a while
            self._marked = {k: v for k, v in self._marked.items() if now - v < self.every_seconds}
        self._marked[token_id] = now
        return True
