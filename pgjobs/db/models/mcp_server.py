"""`mcp_servers`: MCP server settings beside the credentials that authenticate to them."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from pgjobs.db.models.base import Base, TimestampMixin, text_enum, uuid_pk


class AuthType(enum.StrEnum):
    NONE = "none"
    TOKEN = "token"  # noqa: S105 - an auth type name, not a secret
    BASIC = "basic"


class McpServerStatus(enum.StrEnum):
    """Set by `mcp_ping` jobs."""

    UNKNOWN = "unknown"
    ONLINE = "online"
    OFFLINE = "offline"
    ERROR = "error"


class McpServer(TimestampMixin, Base):
    __tablename__ = "mcp_servers"
    __table_args__ = (
        UniqueConstraint("tenant_id", "label"),
        # auth_ref must be a credential of the *same* tenant: the composite FK makes the database
        # refuse a cross-tenant reference instead of trusting every caller to check.
        ForeignKeyConstraint(
            ["tenant_id", "auth_ref"],
            ["app_credentials.tenant_id", "app_credentials.id"],
            name="fk_mcp_servers_auth_ref_app_credentials",
        ),
        CheckConstraint("auth_type = 'none' OR auth_ref IS NOT NULL", name="auth_ref_required"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    label: Mapped[str] = mapped_column(String(200))
    base_url: Mapped[str] = mapped_column(String(2048))
    auth_type: Mapped[AuthType] = mapped_column(
        text_enum(AuthType, "auth_type"), default=AuthType.NONE
    )
    auth_ref: Mapped[uuid.UUID | None]
    # e.g. {"headers": {"X-Org": "acme"}}; validated by db.schemas.mcp_server.McpMetadata.
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", default=dict, server_default=text("'{}'::jsonb")
    )
    status: Mapped[McpServerStatus] = mapped_column(
        text_enum(McpServerStatus, "status"), default=McpServerStatus.UNKNOWN
    )
    last_ping_at: Mapped[datetime | None]
