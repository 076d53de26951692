"""`job_events`: the append-only history of every job, one row per transition or progress step."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Identity, Index, func, text
from sqlalchemy.orm import Mapped, mapped_column

from pgjobs.db.models.base import Base, text_enum


class EventType(enum.StrEnum):
    ENQUEUED = "enqueued"
    STARTED = "started"
    PROGRESS = "progress"
    RETRY = "retry"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    RESCUED = "rescued"
    WAITING = "waiting"
    """A claim found no free concurrency slot: the job waits, its attempt not used."""


class JobEvent(Base):
    __tablename__ = "job_events"
    __table_args__ = (
        # get_job_events: one job's history in order, from a cursor. Deleting a job (pruning)
        # cascades through this index too. No index on tenant_id alone: tenant deletion is rare
        # and every read names the job (docs/architecture.md).
        Index("ix_job_events_job_id_id", "job_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    job_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("content_jobs.id", ondelete="CASCADE")
    )
    # No foreign key to tenants: every event is written by the statement that writes its job's
    # row, with the job's tenant_id, and deleting a tenant reaches its events through their
    # jobs (the cascade above). The check cost each inserted event a trigger and a lock on
    # the tenant's row: 12% of PostgreSQL's CPU per job of a batch (docs/performance.md).
    tenant_id: Mapped[uuid.UUID]
    event_type: Mapped[EventType] = mapped_column(text_enum(EventType, "event_type"))
    data: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
