"""Declarative base: stable constraint names, timezone-aware timestamps, shared columns."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Enum, MetaData, func
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """All tables. Timestamps are ``timestamptz``; JSON is ``jsonb``."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: DateTime(timezone=True),
        dict[str, Any]: JSONB,
        uuid.UUID: UUID(as_uuid=True),
    }


def text_enum(enum_cls: type[enum.StrEnum], name: str) -> Enum:
    """A text column limited to the enum's values by a named CHECK constraint.

    Text plus CHECK, not a PostgreSQL ENUM type: adding a value is a plain constraint swap in a
    migration instead of ``ALTER TYPE`` (see docs/architecture.md).
    """
    return Enum(
        enum_cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=max(len(m.value) for m in enum_cls) + 8,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class TimestampMixin:
    """created_at / updated_at, filled by the database."""

    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())


def uuid_pk() -> Mapped[uuid.UUID]:
    """A random UUID primary key, generated client side so callers know the id before flush."""
    return mapped_column(primary_key=True, default=uuid.uuid4)
