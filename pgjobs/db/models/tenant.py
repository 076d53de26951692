"""`tenants`: the unit of isolation. Every other table points here and every query names one."""

from __future__ import annotations

import uuid

from sqlalchemy import CheckConstraint, SmallInteger, String, text
from sqlalchemy.orm import Mapped, mapped_column

from pgjobs.db.models.base import Base, TimestampMixin, uuid_pk


class Tenant(TimestampMixin, Base):
    __tablename__ = "tenants"
    __table_args__ = (CheckConstraint("share_weight BETWEEN 1 AND 100", name="share_weight_range"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    share_weight: Mapped[int] = mapped_column(SmallInteger, server_default=text("1"))
    """Its weight in fair queues (docs/limits.md): its share of in-flight jobs is
    ``JOBS_FAIR_SHARE_IN_FLIGHT`` times this."""
