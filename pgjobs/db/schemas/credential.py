"""Credential shapes. Input carries the secret as ``SecretStr``; output carries only its mask."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field, SecretStr

from pgjobs.db.models.credential import CredentialStatus, Provider
from pgjobs.db.schemas.common import InputModel, ReadModel

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,199}$"
NAME_RULE = (
    "1 to 200 letters, digits, spaces, dots, dashes and underscores, starting with a letter or "
    "digit"
)


class CredentialCreate(InputModel):
    provider: Provider
    name: str = Field(pattern=NAME_PATTERN, description=NAME_RULE)
    secret: SecretStr = Field(min_length=1, max_length=8192)


class CredentialPatch(InputModel):
    name: str | None = Field(default=None, pattern=NAME_PATTERN, description=NAME_RULE)
    status: CredentialStatus | None = None


class CredentialRead(ReadModel):
    """What listing shows: metadata and a masked secret (e.g. ``sk-...abcd``), never plaintext."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    provider: Provider
    name: str
    secret_mask: str
    key_id: str
    status: CredentialStatus
    last_validated_at: datetime | None
    created_at: datetime
    updated_at: datetime
