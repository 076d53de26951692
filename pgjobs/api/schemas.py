"""Request and response bodies of the HTTP API that are not the library's own shapes.

Jobs, events, credentials and MCP servers are answered with the library's read models
(``JobRead``, ``JobEventRead``, ``CredentialRead``, ``McpServerRead``): the API adds no second
description of them.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from pgjobs.db.models import CredentialStatus, JobStatus, Provider
from pgjobs.producer.control import BULK_MAX

T = TypeVar("T")

BATCH_MAX = 1_000
"""Jobs one ``POST /v1/jobs/batch`` may carry."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JobCreate(_Body):
    """``POST /v1/jobs``. The idempotency key comes in the ``Idempotency-Key`` header."""

    type: str = Field(description="A registered job type (GET /v1/job-types).")
    payload: dict[str, Any] = Field(description="Validated against the type's payload schema.")
    delay: float | None = Field(default=None, description="Seconds from now (or give run_at).")
    run_at: datetime | None = Field(default=None, description="When to run (or give delay).")
    priority: int | None = None
    max_attempts: int | None = None


class BatchItem(JobCreate):
    idempotency_key: str | None = None


class BatchCreate(_Body):
    """``POST /v1/jobs/batch``: all or nothing."""

    jobs: list[BatchItem] = Field(min_length=1, max_length=BATCH_MAX)


class JobQuery(_Body):
    """``GET /v1/jobs``: the filters, cursor and page size of ``pgjobs.list_jobs``."""

    status: list[JobStatus] | None = None
    type: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    idempotency_key: str | None = None
    cursor: str | None = None
    limit: int = 50
    order: Literal["newest", "oldest"] = "newest"


class EnqueuedOut(BaseModel):
    """What enqueueing answers: the job as recorded (``created`` false: the idempotency key
    matched a job that exists, which is returned instead)."""

    id: int
    type: str
    status: JobStatus
    run_at: datetime
    created: bool


class BatchOut(BaseModel):
    jobs: list[EnqueuedOut]


class PageOut(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="Pass back as `cursor`; null on the last page.")


class CancelIn(_Body):
    reason: str | None = Field(default=None, max_length=1000)


class CancelOut(BaseModel):
    job_id: int
    status: JobStatus
    stop_requested: bool


class BulkSelect(_Body):
    """Which of the tenant's jobs a bulk call is about: ``ids``, or the filters of
    ``GET /v1/jobs`` (combined with AND), or both. One of them is required: acting on every
    job of the tenant takes a filter that says so (all the statuses)."""

    ids: list[int] | None = Field(default=None, min_length=1, max_length=BULK_MAX)
    status: list[JobStatus] | None = None
    type: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    idempotency_key: str | None = None
    max_id: int | None = Field(
        default=None,
        ge=1,
        description="The `max_id` a bulk count answered: act only on jobs up to it, never on "
        "jobs created after the count.",
    )

    @model_validator(mode="after")
    def _says_which(self) -> BulkSelect:
        if not self.options().keys() - {"max_id"}:
            raise ValueError("give ids or at least one filter")
        return self

    def options(self) -> dict[str, Any]:
        """The selection as ``pgjobs.producer.control.select_jobs`` takes it (a subclass's
        own fields, such as a cancel's reason, left out)."""
        return self.model_dump(exclude_none=True, include=set(BulkSelect.model_fields))


class BulkCountIn(BulkSelect):
    """``POST /v1/jobs/bulk/count``: how many jobs the action would move (dry run)."""

    action: Literal["cancel", "retry"]


class BulkCancelIn(BulkSelect):
    """``POST /v1/jobs/bulk/cancel``."""

    reason: str | None = Field(default=None, max_length=1000)


class BulkCountOut(BaseModel):
    jobs: int = Field(description="Jobs of the selection the action can move now.")
    max_id: int = Field(description="The newest of them: pass it back to act on these only.")


class BulkOut(BaseModel):
    action: Literal["cancel", "retry"]
    job_ids: list[int] = Field(description="The jobs moved (cancelled, asked to stop, retried).")
    stop_requested: list[int] = Field(description="Running jobs asked to stop (cancel only).")
    more: bool = Field(description=f"Stopped at {BULK_MAX} jobs: call again for the rest.")


class JobTypeOut(BaseModel):
    name: str
    queue: str
    priority: int
    max_attempts: int
    time_limit_seconds: float
    description: str
    payload_schema: dict[str, Any]


class CredentialIn(_Body):
    provider: Provider
    name: str
    secret: SecretStr = Field(json_schema_extra={"writeOnly": True})


class SecretIn(_Body):
    secret: SecretStr = Field(json_schema_extra={"writeOnly": True})


class RenameIn(_Body):
    name: str


class MarkIn(_Body):
    status: CredentialStatus = Field(description="valid or invalid")


class McpServerIn(_Body):
    label: str
    base_url: str
    auth_type: str = "none"
    auth_ref: uuid.UUID | None = None
    metadata: dict[str, Any] | None = None


class McpServerPatchIn(_Body):
    label: str | None = None
    base_url: str | None = None
    auth_type: str | None = None
    auth_ref: uuid.UUID | None = None
    metadata: dict[str, Any] | None = None


class Health(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)


class ScheduleCreate(_Body):
    """``POST /v1/schedules``: the arguments of ``pgjobs.schedules.create``."""

    name: str = Field(description="Unique per tenant: lowercase letters, digits, '.', '_', '-'.")
    type: str = Field(description="A registered job type (GET /v1/job-types).")
    payload: dict[str, Any] = Field(
        default_factory=dict, description="Validated against the type's payload schema."
    )
    cron: str | None = Field(default=None, description="Five fields, or @hourly and the like.")
    every: float | None = Field(default=None, description="Or a fixed interval, in seconds.")
    tz: str = Field(default="UTC", description="The cron expression's IANA time zone.")
    misfire: Literal["skip", "run_once", "catch_up"] = "skip"
    catch_up_limit: int | None = Field(default=None, description="Required with catch_up.")
    jitter: float = Field(default=0, description="Each job runs up to this many seconds late.")
    paused: bool = False


class ScheduleUpdate(_Body):
    """``PATCH /v1/schedules/{id}``: what is given changes, the rest stays."""

    name: str | None = None
    type: str | None = None
    payload: dict[str, Any] | None = None
    cron: str | None = None
    every: float | None = None
    tz: str | None = None
    misfire: Literal["skip", "run_once", "catch_up"] | None = None
    catch_up_limit: int | None = None
    jitter: float | None = None


class ScheduleQuery(_Body):
    """``GET /v1/schedules``: active and paused ones unless ``status`` names others."""

    status: list[Literal["active", "paused", "archived"]] | None = None
    cursor: str | None = None
    limit: int = 50


class UpcomingOut(BaseModel):
    slots: list[datetime]
