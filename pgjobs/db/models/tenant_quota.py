"""`tenant_quotas` and `tenant_quota_usage`: how many jobs a tenant may create per day, and how
many it has created today.

A quota is per tenant, for all its job types (``job_type = '*'``) or for one. The usage rows are
counters per (tenant, UTC day of the database clock, quota): the enqueue statement adds the
jobs it creates to them in the same statement that inserts the jobs, and the CHECK constraint
``used <= per_day`` makes PostgreSQL refuse the whole statement when one would pass its quota,
so concurrent producers can never go over by one (pgjobs/db/jobs/state_machine.py).
"""

from __future__ import annotations

import uuid
from datetime import date

from sqlalchemy import CheckConstraint, Date, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from pgjobs.db.models.base import Base, TimestampMixin

ALL_TYPES = "*"
"""``job_type`` of a quota over every job type of the tenant."""
QUOTA_CHECK = "quota_within"
"""The usage CHECK constraint's name (without the table prefix) that means "over quota"."""


class TenantQuota(TimestampMixin, Base):
    __tablename__ = "tenant_quotas"
    __table_args__ = (CheckConstraint("per_day >= 0", name="per_day_not_negative"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    job_type: Mapped[str] = mapped_column(String(100), primary_key=True)
    """A job type's name, or ``*`` for all of the tenant's jobs together."""
    per_day: Mapped[int] = mapped_column(Integer)


class TenantQuotaUsage(Base):
    __tablename__ = "tenant_quota_usage"
    __table_args__ = (CheckConstraint("used <= per_day", name=QUOTA_CHECK),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    """The UTC day of the database clock the jobs were created on."""
    job_type: Mapped[str] = mapped_column(String(100), primary_key=True)
    used: Mapped[int] = mapped_column(Integer)
    per_day: Mapped[int] = mapped_column(Integer)
    """The quota when the count was last written: the constraint compares against it."""
