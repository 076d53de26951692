"""`app_credentials`: provider secrets, AES-256-GCM ciphertext only (see pgjobs/vault/cipher.py)."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from pgjobs.db.models.base import Base, TimestampMixin, text_enum, uuid_pk


class Provider(enum.StrEnum):
    OPENAI = "openai"
    ESPN = "espn"
    CFBD = "cfbd"
    CUSTOM = "custom"


class CredentialStatus(enum.StrEnum):
    """`unknown` until a credential_check job (or an operator) validates it."""

    VALID = "valid"
    INVALID = "invalid"
    UNKNOWN = "unknown"


class AppCredential(TimestampMixin, Base):
    __tablename__ = "app_credentials"
    __table_args__ = (
        UniqueConstraint("tenant_id", "provider", "name"),
        # Target of mcp_servers' composite (tenant_id, auth_ref) foreign key.
        UniqueConstraint("tenant_id", "id"),
        # Rotation walks rows per key id.
        Index("ix_app_credentials_key_id", "key_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    provider: Mapped[Provider] = mapped_column(text_enum(Provider, "provider"))
    name: Mapped[str] = mapped_column(String(200))
    secret_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    secret_nonce: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(64))
    # Masked display form (e.g. "sk-...abcd"), computed at write time so listing never decrypts.
    secret_mask: Mapped[str] = mapped_column(String(32))
    status: Mapped[CredentialStatus] = mapped_column(
        text_enum(CredentialStatus, "status"), default=CredentialStatus.UNKNOWN
    )
    last_validated_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return (
            f"AppCredential(id={self.id}, tenant_id={self.tenant_id}, provider={self.provider}, "
            f"name={self.name!r}, key_id={self.key_id}, secret={self.secret_mask!r})"
        )
