"""Job and event shapes, and the JSONB shapes of ``job_events.data`` per event type."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from pgjobs.db.models.job import JobStatus
from pgjobs.db.models.job_event import EventType
from pgjobs.db.schemas.common import ReadModel


class JobRead(ReadModel):
    """A job as the status API returns it (payload included: the caller owns the tenant)."""

    id: int
    tenant_id: uuid.UUID
    type: str
    payload: dict[str, Any]
    status: JobStatus
    queue_job_id: str | None
    attempts: int
    max_attempts: int
    priority: int
    run_at: datetime
    lease_expires_at: datetime | None
    idempotency_key: str | None
    progress: int
    progress_message: str | None
    result: Any
    """The handler's JSON result (any JSON value), None until it succeeds."""
    error_message: str | None
    cancel_requested_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime


class JobEventRead(ReadModel):
    id: int
    job_id: int
    tenant_id: uuid.UUID
    event_type: EventType
    data: dict[str, Any]
    created_at: datetime


# --- job_events.data, one shape per event type ---------------------------------------------


class EnqueuedData(BaseModel):
    type: str
    run_at: datetime | None = None
    idempotency_key: str | None = None
    held: str | None = None
    """Why the job was held at enqueue (``fair share``): it waits for its tenant's share."""


class StartedData(BaseModel):
    attempt: int
    message_id: str | None = None
    worker: str | None = None


class ProgressData(BaseModel):
    percent: int = Field(ge=0, le=100)
    message: str | None = Field(default=None, max_length=500)


class RetryData(BaseModel):
    attempt: int
    error: str | None = None
    """The last error; absent on a manual retry of a job that ended without one."""
    manual: bool = False
    next_run_at: datetime | None = None


class CompletedData(BaseModel):
    attempt: int
    duration_ms: float | None = None


class FailedData(BaseModel):
    attempt: int
    error: str


class CancelledData(BaseModel):
    reason: str | None = None
    while_running: bool = False


class RescuedData(BaseModel):
    attempt: int
    lease_expired_at: datetime | None = None


class WaitingData(BaseModel):
    attempt: int
    reason: str
    """``concurrency``: every slot of the key was taken (docs/limits.md)."""
    key: str
    max: int


EVENT_DATA: dict[EventType, type[BaseModel]] = {
    EventType.ENQUEUED: EnqueuedData,
    EventType.STARTED: StartedData,
    EventType.PROGRESS: ProgressData,
    EventType.RETRY: RetryData,
    EventType.COMPLETED: CompletedData,
    EventType.FAILED: FailedData,
    EventType.CANCELLED: CancelledData,
    EventType.RESCUED: RescuedData,
    EventType.WAITING: WaitingData,
}
