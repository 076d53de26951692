"""Status queries, each scoped to one tenant: one job, its events, lists, counts.

Lists are newest first and paginated by keyset on ``id`` (cursor = last id seen), so inserts
happening meanwhile never make a page skip or repeat a job. Each query is one statement served
by an index of pgjobs/db/models/job.py (tests assert on EXPLAIN).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Literal, TypeVar

from sqlalchemy import Select, bindparam, func, select

from pgjobs.db.engine import autocommit
from pgjobs.db.models import ContentJob, JobEvent, JobStatus
from pgjobs.db.schemas.job import JobEventRead, JobRead
from pgjobs.db.statements import execute
from pgjobs.producer.errors import InvalidOption, JobNotFound
from pgjobs.settings import get_settings

T = TypeVar("T")
jobs_t = ContentJob.__table__
events_t = JobEvent.__table__


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None
    """Pass back as ``cursor`` for the next page; None on the last page."""


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, _, value = raw.partition(":")
        if version != "v1":
            raise ValueError(version)
        return int(value)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidOption("invalid cursor") from None


def _limit(limit: int) -> int:
    cap = get_settings().page_size_max
    if not 1 <= limit <= cap:
        raise InvalidOption(f"limit must be between 1 and {cap}")
    return limit


GET_JOB = select(jobs_t).where(
    jobs_t.c.id == bindparam("job_id"), jobs_t.c.tenant_id == bindparam("tenant_id")
)
"""Built once: the status API's most frequent statement (primary key lookup)."""


def get_job(tenant_id: uuid.UUID, job_id: int) -> JobRead:
    """One job with its last progress and last error. JobNotFound for another tenant's id."""
    with autocommit() as conn:
        row = execute(conn, GET_JOB, {"job_id": job_id, "tenant_id": tenant_id}).fetchone()
    if row is None:
        raise JobNotFound(f"job {job_id} not found")
    return JobRead.model_validate(row)


@dataclass(frozen=True)
class JobFilters:
    """Filters of :func:`list_jobs`; all optional, combined with AND."""

    status: JobStatus | tuple[JobStatus, ...] | None = None
    type: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    idempotency_key: str | None = None


def list_jobs_query(
    tenant_id: uuid.UUID,
    filters: JobFilters,
    *,
    cursor: str | None,
    limit: int,
    order: Literal["newest", "oldest"],
) -> Select[tuple[object, ...]]:
    """The statement behind :func:`list_jobs` (fetches one extra row to know if more follow)."""
    query = select(jobs_t).where(jobs_t.c.tenant_id == tenant_id)
    if filters.status is not None:
        statuses = [filters.status] if isinstance(filters.status, JobStatus) else filters.status
        query = query.where(jobs_t.c.status.in_(list(statuses)))
    if filters.type is not None:
        query = query.where(jobs_t.c.type == filters.type)
    if filters.created_after is not None:
        query = query.where(jobs_t.c.created_at >= filters.created_after)
    if filters.created_before is not None:
        query = query.where(jobs_t.c.created_at < filters.created_before)
    if filters.idempotency_key is not None:
        query = query.where(jobs_t.c.idempotency_key == filters.idempotency_key)
    newest = order == "newest"
    if cursor is not None:
        last = decode_cursor(cursor)
        query = query.where(jobs_t.c.id < last if newest else jobs_t.c.id > last)
    ordering = jobs_t.c.id.desc() if newest else jobs_t.c.id.asc()
    return query.order_by(ordering).limit(_limit(limit) + 1)


def list_jobs(
    tenant_id: uuid.UUID,
    *,
    status: JobStatus | str | Iterable[JobStatus | str] | None = None,
    type: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    idempotency_key: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
    order: Literal["newest", "oldest"] = "newest",
) -> Page[JobRead]:
    """Jobs of a tenant, newest first (or oldest), filtered, one page of at most ``limit``."""
    statuses = _statuses(status)
    filters = JobFilters(statuses, type, created_after, created_before, idempotency_key)
    query = list_jobs_query(tenant_id, filters, cursor=cursor, limit=limit, order=order)
    with autocommit() as conn:
        rows = conn.execute(query).all()
    items = [JobRead.model_validate(r) for r in rows[:limit]]
    more = len(rows) > limit
    return Page(items, encode_cursor(items[-1].id) if more and items else None)


def _statuses(
    status: JobStatus | str | Iterable[JobStatus | str] | None,
) -> JobStatus | tuple[JobStatus, ...] | None:
    try:
        if status is None:
            return None
        if isinstance(status, str):
            return JobStatus(status)
        return tuple(JobStatus(s) for s in status)
    except ValueError:
        raise InvalidOption(f"status must be one of: {', '.join(JobStatus)}") from None


def get_job_events(
    tenant_id: uuid.UUID, job_id: int, *, cursor: str | None = None, limit: int = 100
) -> Page[JobEventRead]:
    """A job's events in order. Follow a job by passing back ``next_cursor`` (or, at the end,
    the last event's cursor from :func:`event_cursor`) until it is terminal."""
    after = decode_cursor(cursor) if cursor else 0
    query = (
        select(events_t)
        .where(
            events_t.c.job_id == job_id,
            events_t.c.tenant_id == tenant_id,
            events_t.c.id > after,
        )
        .order_by(events_t.c.id)
        .limit(_limit(limit) + 1)
    )
    with autocommit() as conn:
        rows = conn.execute(query).all()
        if not rows:
            exists = conn.execute(
                select(jobs_t.c.id).where(jobs_t.c.id == job_id, jobs_t.c.tenant_id == tenant_id)
            ).first()
            if exists is None:
                raise JobNotFound(f"job {job_id} not found")
    items = [JobEventRead.model_validate(r) for r in rows[:limit]]
    more = len(rows) > limit
    return Page(items, encode_cursor(items[-1].id) if more and items else None)


def event_cursor(event: JobEventRead) -> str:
    """The cursor that continues after ``event`` (to keep following a job)."""
    return encode_cursor(event.id)


def count_jobs_by_status(tenant_id: uuid.UUID, *, type: str | None = None) -> dict[JobStatus, int]:
    """How many jobs of the tenant are in each status (every status present, zeros included)."""
    query = select(jobs_t.c.status, func.count()).where(jobs_t.c.tenant_id == tenant_id)
    if type is not None:
        query = query.where(jobs_t.c.type == type)
    query = query.group_by(jobs_t.c.status)
    with autocommit() as conn:
        counts = {JobStatus(s): int(n) for s, n in conn.execute(query).all()}
    return {s: counts.get(s, 0) for s in JobStatus}
