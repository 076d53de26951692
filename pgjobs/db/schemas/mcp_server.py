"""MCP server shapes, including the validated ``metadata`` JSONB (custom headers)."""

from __future__ import annotations

import re
import uuid
from datetime import datetime

from pydantic import AnyHttpUrl, Field, ValidationInfo, field_validator

from pgjobs.db.models.mcp_server import AuthType, McpServerStatus
from pgjobs.db.schemas.common import InputModel, ReadModel

_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")
# Headers the client sets itself; a custom value would be ignored or would smuggle a secret
# into plain JSONB (authentication belongs in a credential referenced by auth_ref).
RESERVED_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "host", "content-length"}
)


class McpMetadata(InputModel):
    """``mcp_servers.metadata``: custom headers sent with every call, plus free-form notes."""

    headers: dict[str, str] = Field(default_factory=dict, max_length=32)
    notes: str | None = Field(default=None, max_length=2000)

    @field_validator("headers")
    @classmethod
    def _valid_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not _HEADER_NAME.match(name):
                raise ValueError("header names must be HTTP tokens (letters, digits, -_.)")
            if name.lower() in RESERVED_HEADERS:
                raise ValueError(f"header {name!r} is reserved: use auth_type and auth_ref")
            if len(value) > 4096 or any(c in value for c in "\r\n\0"):
                raise ValueError(f"header {name!r} has an invalid value")
        return headers


class McpServerCreate(InputModel):
    label: str = Field(min_length=1, max_length=200)
    base_url: AnyHttpUrl
    auth_type: AuthType = AuthType.NONE
    auth_ref: uuid.UUID | None = Field(default=None, validate_default=True)
    metadata: McpMetadata = Field(default_factory=McpMetadata)

    @field_validator("auth_ref")
    @classmethod
    def _auth_ref_matches_type(
        cls, auth_ref: uuid.UUID | None, info: ValidationInfo
    ) -> uuid.UUID | None:
        """Checked on auth_ref (declared after auth_type), so the error names that field."""
        auth_type = info.data.get("auth_type")  # absent when auth_type itself is invalid
        if auth_type is AuthType.NONE and auth_ref is not None:
            raise ValueError("must be empty when auth_type is 'none'")
        if auth_type not in (None, AuthType.NONE) and auth_ref is None:
            raise ValueError(
                f"is required when auth_type is '{auth_type.value}': the credential to "
                "authenticate with"
            )
        return auth_ref


class McpServerPatch(InputModel):
    label: str | None = Field(default=None, min_length=1, max_length=200)
    base_url: AnyHttpUrl | None = None
    auth_type: AuthType | None = None
    auth_ref: uuid.UUID | None = None
    metadata: McpMetadata | None = None


class McpServerRead(ReadModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    label: str
    base_url: str
    auth_type: AuthType
    auth_ref: uuid.UUID | None
    metadata: McpMetadata = Field(validation_alias="metadata_")
    status: McpServerStatus
    last_ping_at: datetime | None
    created_at: datetime
    updated_at: datetime
