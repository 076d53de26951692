"""``enqueue`` and ``enqueue_many``: the transactional outbox (docs/architecture.md).

The row (pending) and its ``enqueued`` event are written first; the message (ids only) is sent
only after that write commits; then the row becomes queued, marked by the process's background
marker shortly after (pgjobs/producer/sender.py). Two modes:

* standalone (no ``session``): one statement in autocommit, then the send;
* inside the caller's SQLAlchemy ``Session``: rows are written in the caller's transaction and
  the messages wait in ``session.info`` until it commits; a rollback drops them unsent.

If the send fails (Redis down) the job stays pending and durable; the relay sends it later.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from pydantic import BaseModel, ValidationError
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from pgjobs.db.engine import autocommit
from pgjobs.db.errors import wrap_db_errors
from pgjobs.db.jobs import state_machine as sm
from pgjobs.db.models.job import JobStatus
from pgjobs.producer import broker, sender
from pgjobs.producer.errors import InvalidOption, InvalidPayload, PayloadTooLarge, UnknownTenant
from pgjobs.producer.job_types import JobType, get_job_type
from pgjobs.producer.outbox import defer_until_commit
from pgjobs.settings import get_settings

log = structlog.get_logger(__name__)

_SMALLINT = 32767


@dataclass(frozen=True)
class JobRequest:
    """One job for :func:`enqueue_many` (same options as :func:`enqueue`)."""

    type: str | JobType[Any]
    payload: Mapping[str, Any] | BaseModel
    tenant_id: uuid.UUID
    idempotency_key: str | None = None
    delay: float | timedelta | None = None
    run_at: datetime | None = None
    priority: int | None = None
    max_attempts: int | None = None


@dataclass(frozen=True, slots=True)
class EnqueuedJob:
    """What enqueue returns. ``created`` is False when the idempotency key matched a job."""

    id: int
    tenant_id: uuid.UUID
    type: str
    status: JobStatus
    message_id: str | None
    run_at: datetime
    created: bool


@dataclass(frozen=True, slots=True)
class _Prepared:
    row: sm.NewJob
    queue: str


def enqueue(
    type: str | JobType[Any],
    payload: Mapping[str, Any] | BaseModel,
    *,
    tenant_id: uuid.UUID,
    session: Session | None = None,
    idempotency_key: str | None = None,
    delay: float | timedelta | None = None,
    run_at: datetime | None = None,
    priority: int | None = None,
    max_attempts: int | None = None,
) -> EnqueuedJob:
    """Record one job and send its message after commit.

    Raises (and writes nothing): UnknownJobType, InvalidPayload, PayloadTooLarge, InvalidOption,
    UnknownTenant.
    """
    request = JobRequest(
        type, payload, tenant_id, idempotency_key, delay, run_at, priority, max_attempts
    )
    return enqueue_many([request], session=session)[0]


def enqueue_many(
    requests: Sequence[JobRequest], *, session: Session | None = None
) -> list[EnqueuedJob]:
    """Record many jobs in one statement and send their messages in one pipelined round trip.

    All or nothing: one invalid request or unknown tenant raises before anything is written.
    """
    prepared = [_prepare(r) for r in requests]
    if not prepared:
        return []
    rows = [p.row for p in prepared]
    if session is None:
        with autocommit() as conn:
            inserted = _insert(conn, rows)
        sender.send_and_mark(_outgoing(prepared, inserted))
        return _results(inserted)
    with wrap_db_errors():
        inserted = _insert(session.connection(), rows)
    defer_until_commit(session, _outgoing(prepared, inserted))
    return _results(inserted)


def _insert(conn: Connection, rows: list[sm.NewJob]) -> list[sm.InsertedJob]:
    inserted = sm.insert_pending(conn, rows)
    if any(job is None for job in inserted):
        raise UnknownTenant("unknown tenant")
    return [job for job in inserted if job is not None]


def _results(inserted: list[sm.InsertedJob]) -> list[EnqueuedJob]:
    return [
        EnqueuedJob(j.id, j.tenant_id, j.type, j.status, j.queue_job_id, j.run_at, j.created)
        for j in inserted
    ]


def _outgoing(prepared: list[_Prepared], inserted: list[sm.InsertedJob]) -> list[broker.Outgoing]:
    """Messages for the rows this call created (an idempotent repeat sends nothing). A job due
    beyond the scheduling horizon gets none now: the relay sends it when it comes near."""
    horizon_ms = get_settings().schedule_horizon_seconds * 1000
    out = []
    for p, job in zip(prepared, inserted, strict=True):
        if job.created and job.queue_job_id is not None and job.due_in_ms <= horizon_ms:
            delay = job.due_in_ms or None
            out.append(broker.Outgoing(job.id, job.tenant_id, p.queue, job.queue_job_id, delay))
    return out


def _prepare(request: JobRequest) -> _Prepared:
    """Validate one request completely before anything touches the database."""
    settings = get_settings()
    job_type = request.type if isinstance(request.type, JobType) else get_job_type(request.type)
    payload_json = _validated_payload(job_type, request.payload, settings.max_payload_bytes)
    run_at, delay_seconds = _due(request.delay, request.run_at)
    priority = job_type.priority if request.priority is None else request.priority
    if not -_SMALLINT <= priority <= _SMALLINT:
        raise InvalidOption(f"priority must be between {-_SMALLINT} and {_SMALLINT}")
    max_attempts = job_type.max_attempts if request.max_attempts is None else request.max_attempts
    if not 1 <= max_attempts <= 100:
        raise InvalidOption("max_attempts must be between 1 and 100")
    key = request.idempotency_key
    if key is not None and not 1 <= len(key) <= 200:
        raise InvalidOption("idempotency_key must be 1 to 200 characters")
    if not isinstance(request.tenant_id, uuid.UUID):
        raise InvalidOption("tenant_id must be a UUID")
    row = sm.NewJob(
        tenant_id=request.tenant_id,
        type=job_type.name,
        payload_json=payload_json,
        message_id=broker.new_message_id(),
        max_attempts=max_attempts,
        priority=priority,
        run_at=run_at,
        delay_seconds=delay_seconds,
        idempotency_key=key,
    )
    return _Prepared(row, job_type.queue)


def _validated_payload(
    job_type: JobType[Any], payload: Mapping[str, Any] | BaseModel, max_bytes: int
) -> str:
    """The payload as compact JSON after validation; errors name fields, never values."""
    try:
        model = job_type.payload_model.model_validate(
            payload.model_dump() if isinstance(payload, BaseModel) else payload
        )
    except ValidationError as exc:
        errors = [
            (".".join(str(p) for p in e["loc"]) or "(payload)", e["type"], e["msg"])
            for e in exc.errors(include_url=False, include_input=False, include_context=False)
        ]
        raise InvalidPayload(job_type.name, errors) from None
    payload_json: str = model.model_dump_json()
    size = len(payload_json.encode())
    if size > max_bytes:
        raise PayloadTooLarge(f"payload is {size} bytes; the limit is {max_bytes}")
    return payload_json


def _due(
    delay: float | timedelta | None, run_at: datetime | None
) -> tuple[datetime | None, float | None]:
    """(run_at, delay in seconds): a delay is added to the database's clock, not ours."""
    if delay is not None and run_at is not None:
        raise InvalidOption("give delay or run_at, not both")
    if delay is not None:
        seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
        if not seconds >= 0:  # also refuses NaN
            raise InvalidOption("delay must not be negative")
        return None, seconds
    if run_at is not None and run_at.tzinfo is None:
        raise InvalidOption("run_at must be timezone-aware")
    return run_at, None
