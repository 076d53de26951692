"""Tenant input and output shapes."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from pgjobs.db.schemas.common import InputModel, ReadModel

SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"


class TenantCreate(InputModel):
    name: str = Field(min_length=1, max_length=200)
    slug: str = Field(
        pattern=SLUG_PATTERN,
        description="1 to 64 lowercase letters, digits and dashes, not starting or ending "
        "with a dash",
    )


class TenantPatch(InputModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)


class TenantRead(ReadModel):
    id: uuid.UUID
    name: str
    slug: str
    created_at: datetime
    updated_at: datetime
