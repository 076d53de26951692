"""`content_jobs`: one row per job, the durable truth about it and the producer's outbox.

Status moves only through :mod:`db.jobs.state_machine`; the CHECK constraints below make the
database itself refuse rows no legal transition can produce.
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
    Identity,
    Index,
    SmallInteger,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from pgjobs.db.models.base import Base, TimestampMixin, text_enum


class JobStatus(enum.StrEnum):
    """A job's place in its life (docs/architecture.md, "The job's life")."""

    PENDING = "pending"
    """Row committed by ``enqueue``; its message is not yet known to be sent. Out: send -> queued,
    cancel -> cancelled. The relay re-sends rows left here."""
    QUEUED = "queued"
    """Message sent (or re-sent). Out: claim -> active, no free concurrency slot at claim ->
    waiting, cancel -> cancelled."""
    HELD = "held"
    """Committed by ``enqueue`` while its tenant's fair share of the queue was in flight
    (docs/limits.md): no message yet. Out: the share frees -> queued (sent), cancel ->
    cancelled."""
    WAITING = "waiting"
    """Parked by a claim that found every concurrency slot of its key taken (docs/limits.md):
    no attempt used, no message held, no worker thread. Out: a slot frees -> queued (re-sent),
    cancel -> cancelled. Parked for a rate (``rate_key`` set): a delayed message due at
    ``run_at``, when its window has room; its claim -> active (or parked again)."""
    ACTIVE = "active"
    """Claimed by a worker holding a lease. Out: succeeded, failed, cancelled, retry -> queued,
    lease expired -> rescued -> queued (or failed when attempts are used up)."""
    SUCCEEDED = "succeeded"
    """Terminal: the handler returned."""
    FAILED = "failed"
    """Terminal: attempts used up or a permanent error. A manual retry starts a new attempt."""
    CANCELLED = "cancelled"
    """Terminal: cancelled before or while running. A manual retry starts a new attempt."""


TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
_TERMINAL_SQL = "status IN ('succeeded', 'failed', 'cancelled')"


class ContentJob(TimestampMixin, Base):
    __tablename__ = "content_jobs"
    __table_args__ = (
        # Unique per tenant; partial, so the many jobs without a key cost this index nothing
        # (each row version of a job would otherwise add an entry here).
        Index(
            "uq_content_jobs_tenant_id_idempotency_key",
            "tenant_id",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
        CheckConstraint(f"({_TERMINAL_SQL}) = (completed_at IS NOT NULL)", name="finalized"),
        CheckConstraint("status <> 'active' OR lease_expires_at IS NOT NULL", name="active_lease"),
        CheckConstraint("attempts >= 0", name="attempts_nonnegative"),
        CheckConstraint("max_attempts >= 1", name="max_attempts_positive"),
        CheckConstraint("progress BETWEEN 0 AND 100", name="progress_range"),
        # Status API: newest first per tenant, optionally filtered by status or type.
        Index("ix_content_jobs_tenant_id_id", "tenant_id", "id"),
        Index("ix_content_jobs_tenant_id_status_id", "tenant_id", "status", "id"),
        Index("ix_content_jobs_tenant_id_type_id", "tenant_id", "type", "id"),
        # Maintenance: the relay and the scheduler scan the small live set, the rescuer the
        # expired leases. Partial indexes stay small however many finished jobs there are.
        Index(
            "ix_content_jobs_live_run_at",
            "run_at",
            postgresql_where=text("status IN ('pending', 'queued')"),
        ),
        Index(
            "ix_content_jobs_active_lease",
            "lease_expires_at",
            postgresql_where=text("status = 'active'"),
        ),
        # Concurrency limits (docs/limits.md): the jobs of a key that hold or wait for a slot.
        # Partial, so jobs without a limit cost this index nothing.
        Index(
            "ix_content_jobs_concurrency_key",
            "concurrency_key",
            "status",
            postgresql_where=text("concurrency_key IS NOT NULL"),
        ),
        CheckConstraint(
            "(concurrency_key IS NULL) = (concurrency_max IS NULL)", name="concurrency_pair"
        ),
        # Fair shares (docs/limits.md): a tenant's jobs of a fair queue in flight or held.
        # Partial, so jobs of other queues cost this index nothing.
        Index(
            "ix_content_jobs_share_key",
            "share_key",
            "status",
            postgresql_where=text("share_key IS NOT NULL"),
        ),
        CheckConstraint("(share_key IS NULL) = (share_max IS NULL)", name="share_pair"),
        # Rate limits (docs/limits.md): the jobs of a rate key waiting for room in its window.
        # Partial, so jobs never parked for a rate cost this index nothing.
        Index(
            "ix_content_jobs_rate_key",
            "rate_key",
            "status",
            postgresql_where=text("rate_key IS NOT NULL"),
        ),
        # Pruning walks finished jobs by completion time.
        Index(
            "ix_content_jobs_completed_at",
            "completed_at",
            postgresql_where=text(_TERMINAL_SQL),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    status: Mapped[JobStatus] = mapped_column(
        text_enum(JobStatus, "status"), default=JobStatus.PENDING
    )
    queue_job_id: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    max_attempts: Mapped[int] = mapped_column(SmallInteger, server_default=text("3"))
    priority: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    run_at: Mapped[datetime] = mapped_column(server_default=func.now())
    lease_expires_at: Mapped[datetime | None]
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    progress: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    progress_message: Mapped[str | None] = mapped_column(String(500))
    result: Mapped[dict[str, Any] | None]
    error_message: Mapped[str | None] = mapped_column(Text)
    cancel_requested_at: Mapped[datetime | None]
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    """Why it was cancelled, as the caller said: kept from the request of a running job until
    it stops, for its ``cancelled`` event."""
    concurrency_key: Mapped[str | None] = mapped_column(String(300))
    """The job type's concurrency limit key for this job (``<scope>:<value>``), set at enqueue;
    at most ``concurrency_max`` active jobs share one (docs/limits.md)."""
    concurrency_max: Mapped[int | None] = mapped_column(SmallInteger)
    share_key: Mapped[str | None] = mapped_column(String(300))
    """``<queue>:<tenant id>`` when the job's queue is a fair queue, set at enqueue: at most
    ``share_max`` due jobs of a share are queued or running, the rest are held."""
    share_max: Mapped[int | None]
    rate_key: Mapped[str | None] = mapped_column(String(300))
    """Set when a claim parks the job ``waiting`` for room in its rate key's window (its
    ``run_at`` is then when the room comes); NULL when it was parked for a concurrency slot."""
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
