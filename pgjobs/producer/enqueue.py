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

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, SupportsFloat

import structlog
from pydantic import BaseModel
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from pgjobs.db.engine import autocommit
from pgjobs.db.errors import wrap_db_errors
from pgjobs.db.jobs import state_machine as sm
from pgjobs.db.models.job import JobStatus
from pgjobs.db.timestamps import LATEST
from pgjobs.db.validation import as_int, as_moment, as_text, as_uuid
from pgjobs.producer import broker, sender
from pgjobs.producer.errors import InvalidOption, UnknownTenant
from pgjobs.producer.job_types import JobType, get_job_type
from pgjobs.producer.outbox import defer_until_commit
from pgjobs.producer.payloads import validated_payload
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
    if session is not None and not isinstance(session, Session):
        raise InvalidOption.for_field("session", "must be a SQLAlchemy Session")
    try:
        given = list(requests)
    except TypeError:  # not iterable
        raise InvalidOption.for_field("requests", "must be a sequence of JobRequest") from None
    prepared = [_prepare(r) for r in given]
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


def _prepare(request: object) -> _Prepared:
    """Validate one request completely before anything touches the database: this is the
    boundary of enqueue and enqueue_many, every argument checked here."""
    if not isinstance(request, JobRequest):
        raise InvalidOption.for_field("requests", "must hold JobRequest items")
    settings = get_settings()
    job_type = request.type if isinstance(request.type, JobType) else get_job_type(request.type)
    tenant_id = as_uuid(request.tenant_id, "tenant_id", InvalidOption)
    payload_json = validated_payload(job_type, request.payload, settings.max_payload_bytes)
    run_at, delay_seconds = _due(request.delay, request.run_at)
    priority = job_type.priority if request.priority is None else request.priority
    priority = as_int(priority, "priority", -_SMALLINT, _SMALLINT, InvalidOption)
    max_attempts = job_type.max_attempts if request.max_attempts is None else request.max_attempts
    max_attempts = as_int(max_attempts, "max_attempts", 1, 100, InvalidOption)
    key = request.idempotency_key
    if key is not None:
        key = as_text(key, "idempotency_key", min_length=1, max_length=200, error=InvalidOption)
    row = sm.NewJob(
        tenant_id=tenant_id,
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


def _due(delay: object, run_at: object) -> tuple[datetime | None, float | None]:
    """(run_at, delay in seconds): a delay is added to the database's clock, not ours. Either
    way the job falls due before ``db.timestamps.LATEST``, so its row can always be read."""
    if delay is not None and run_at is not None:
        raise InvalidOption("give delay or run_at, not both")
    if run_at is not None:
        # In UTC: an offset with seconds or microseconds has no text PostgreSQL reads back.
        return as_moment(run_at, "run_at", InvalidOption).astimezone(UTC), None
    if delay is None:
        return None, None
    try:
        if isinstance(delay, bool) or not isinstance(delay, timedelta | SupportsFloat):
            raise TypeError(delay)
        seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
    except (TypeError, ValueError):
        raise InvalidOption.for_field("delay", "must be seconds or a timedelta") from None
    except OverflowError:  # an int too large for a float
        seconds = math.inf
    if not seconds >= 0:  # also refuses NaN
        raise InvalidOption.for_field("delay", "must not be negative")
    if not seconds < (LATEST - datetime.now(UTC)).total_seconds():
        raise InvalidOption.for_field("delay", f"must end before {LATEST:%Y-%m-%d} (UTC)")
    return None, seconds
