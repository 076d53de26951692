"""API token shapes. Output carries the public prefix, never the hash; the raw token appears
only in :class:`pgjobs.auth.store.NewToken`, once."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field, field_validator

from pgjobs.db.models.api_token import GRANTABLE_SCOPES, TokenScope
from pgjobs.db.schemas.common import InputModel, ReadModel


class TokenCreate(InputModel):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[TokenScope] = Field(min_length=1, max_length=len(TokenScope))
    expires_at: datetime | None = None

    @field_validator("scopes")
    @classmethod
    def _grantable(cls, scopes: list[TokenScope]) -> list[TokenScope]:
        """``operator`` is given by ``create_token(operator=True)`` only (the CLI)."""
        if any(s not in GRANTABLE_SCOPES for s in scopes):
            raise ValueError("the operator scope cannot be granted this way")
        return scopes


class TokenRead(ReadModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    prefix: str
    scopes: list[TokenScope]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
