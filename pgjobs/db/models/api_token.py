"""`api_tokens`: programmatic access to one tenant over HTTP (pgjobs/auth/).

A token is ``pgj_<prefix>_<secret>``. The prefix is public and finds the row; of the secret
(256 random bits) only its SHA-256 is kept, so the table cannot give a token back. The raw token
is shown once, when it is created.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, LargeBinary, String
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from pgjobs.db.models.base import Base, TimestampMixin, uuid_pk


class TokenScope(enum.StrEnum):
    """What a token may do. ``admin`` may do everything the others may, and more."""

    JOBS_READ = "jobs:read"
    """Read jobs, their events and counts; stream a job's events; list job types."""
    JOBS_WRITE = "jobs:write"
    """Enqueue, cancel and retry jobs."""
    ADMIN = "admin"
    """Manage the tenant's credentials and MCP servers."""
    OPERATOR = "operator"
    """Sign in to the dashboard and switch it to any tenant (``jobctl tokens create
    --operator`` only: never granted through the API or the dashboard, and not implied by
    ``admin``). It adds nothing to what the token may do over the HTTP API."""


GRANTABLE_SCOPES = (TokenScope.JOBS_READ, TokenScope.JOBS_WRITE, TokenScope.ADMIN)
"""The scopes a tenant's admin may give a token (every one but ``operator``)."""


_SCOPES_SQL = ", ".join(f"'{s.value}'" for s in TokenScope)


class ApiToken(TimestampMixin, Base):
    __tablename__ = "api_tokens"
    __table_args__ = (
        CheckConstraint("octet_length(secret_hash) = 32", name="secret_hash_sha256"),
        CheckConstraint(
            f"cardinality(scopes) >= 1 AND scopes <@ ARRAY[{_SCOPES_SQL}]::varchar[]",
            name="scopes_known",
        ),
        # `jobctl tokens list`: one tenant's tokens.
        Index("ix_api_tokens_tenant_id", "tenant_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    """Public part of the token, the lookup key (unique over every tenant)."""
    secret_hash: Mapped[bytes] = mapped_column(LargeBinary)
    """SHA-256 of the token's secret part; the secret itself is never stored."""
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(20)))
    expires_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    """Written at most once a minute per token, not per request."""
    revoked_at: Mapped[datetime | None]
