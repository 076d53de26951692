"""`job_schedules`: periodic job definitions, each firing one job per slot (docs/schedules.md).

A schedule's slots come from a cron expression in an IANA time zone or from a fixed interval;
``next_run_at`` is the next slot not yet fired. The maintenance process fires due slots through
the ordinary enqueue path and advances ``next_run_at`` in the same transaction
(pgjobs/worker/scheduler.py). The CHECK constraints make the database refuse a schedule that
could not fire (no timing, two timings) or would fire while paused.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from pgjobs.db.models.base import Base, TimestampMixin, text_enum, uuid_pk


class ScheduleStatus(enum.StrEnum):
    """Whether a schedule fires."""

    ACTIVE = "active"
    """Fires every slot; ``next_run_at`` is set. Out: pause -> paused, archive -> archived."""
    PAUSED = "paused"
    """Fires nothing; the slots passed while paused are not missed, they are skipped. Out:
    resume -> active (from the first slot after the resume), archive -> archived."""
    ARCHIVED = "archived"
    """Retired (by an operator, or by a sync after its declaration left the code): fires
    nothing, hidden from lists by default, kept for the history its jobs point at. Out: resume,
    or a sync that finds it declared again."""


class MisfirePolicy(enum.StrEnum):
    """What the scheduler does with slots it finds more than the misfire grace late."""

    SKIP = "skip"
    """Missed slots are dropped; the schedule goes on with the next slot."""
    RUN_ONCE = "run_once"
    """All due slots together become one job, for the latest of them."""
    CATCH_UP = "catch_up"
    """The latest ``catch_up_limit`` missed slots each become a job; older ones are dropped."""


class JobSchedule(TimestampMixin, Base):
    __tablename__ = "job_schedules"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name"),
        CheckConstraint("(cron IS NULL) <> (interval_seconds IS NULL)", name="one_timing"),
        CheckConstraint("interval_seconds >= 1", name="interval_positive"),
        CheckConstraint("(status = 'active') = (next_run_at IS NOT NULL)", name="active_next_run"),
        CheckConstraint(
            "(misfire_policy = 'catch_up') = (catch_up_limit IS NOT NULL)", name="catch_up_limit"
        ),
        CheckConstraint("catch_up_limit >= 1", name="catch_up_limit_positive"),
        CheckConstraint("jitter_seconds >= 0", name="jitter_nonnegative"),
        # The scheduler's scan: active schedules by next slot. Partial, so paused and archived
        # schedules cost it nothing.
        Index(
            "ix_job_schedules_due",
            "next_run_at",
            postgresql_where=text("status = 'active'"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    job_type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    cron: Mapped[str | None] = mapped_column(String(200))
    interval_seconds: Mapped[int | None] = mapped_column(Integer)
    timezone: Mapped[str] = mapped_column(String(64), server_default=text("'UTC'"))
    status: Mapped[ScheduleStatus] = mapped_column(
        text_enum(ScheduleStatus, "status"), default=ScheduleStatus.ACTIVE
    )
    misfire_policy: Mapped[MisfirePolicy] = mapped_column(
        text_enum(MisfirePolicy, "misfire_policy"), default=MisfirePolicy.SKIP
    )
    catch_up_limit: Mapped[int | None] = mapped_column(SmallInteger)
    jitter_seconds: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    declared: Mapped[bool] = mapped_column(server_default=text("false"))
    """Declared in the application's code: ``jobctl schedules sync`` owns it (and archives it
    when its declaration is gone). Schedules made through the API or the CLI are left alone."""
    next_run_at: Mapped[datetime | None]
    last_run_at: Mapped[datetime | None]
    """The slot of the last job fired (or the moment of the last run-now)."""
    last_job_id: Mapped[int | None] = mapped_column(BigInteger)
    """No foreign key: the pruner deletes old jobs without looking here."""
