"""Status queries, each scoped to one tenant: one job, its events, lists, counts.

Lists are newest first and paginated by keyset on ``id`` (cursor = last id seen), so inserts
happening meanwhile never make a page skip or repeat a job. Each query is one statement served
by an index of pgjobs/db/models/job.py (tests assert on EXPLAIN).
"""

from __future__ import annotations

import base64
import binascii
import re
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
from pgjobs.db.validation import BIGINT_MAX, as_aware, as_id, as_int, as_text, as_uuid
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


_CURSOR = re.compile(r"v1:(0|[1-9][0-9]{0,18})")
_CURSOR_CHARS = 40
"""Longer than any cursor :func:`encode_cursor` makes ("v1:" and a bigint, in base64)."""


def decode_cursor(cursor: object) -> int:
    """The id a cursor holds; InvalidOption for anything :func:`encode_cursor` cannot have
    made (a forged one with an id past bigint included)."""
    try:
        if not isinstance(cursor, str) or len(cursor) > _CURSOR_CHARS:
            raise ValueError(cursor)
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        match = _CURSOR.fullmatch(raw)
        if match is None or int(match[1]) > BIGINT_MAX:
            raise ValueError(raw)
        return int(match[1])
    except (binascii.Error, UnicodeError, ValueError):
        raise InvalidOption("invalid cursor", ("cursor",)) from None


def _limit(limit: object) -> int:
    return as_int(limit, "limit", 1, get_settings().page_size_max, InvalidOption)


GET_JOB = select(jobs_t).where(
    jobs_t.c.id == bindparam("job_id"), jobs_t.c.tenant_id == bindparam("tenant_id")
)
"""Built once: the status API's most frequent statement (primary key lookup)."""


def job_ref(tenant_id: object, job_id: object) -> tuple[uuid.UUID, int]:
    """(tenant id, job id) checked: the arguments every call about one job starts with."""
    return as_uuid(tenant_id, "tenant_id", InvalidOption), as_id(job_id, "job_id", InvalidOption)


def _optional_text(value: object, field: str) -> str | None:
    return None if value is None else as_text(value, field, error=InvalidOption)


def _optional_aware(value: object, field: str) -> datetime | None:
    return None if value is None else as_aware(value, field, InvalidOption)


def get_job(tenant_id: uuid.UUID, job_id: int) -> JobRead:
    """One job with its last progress and last error. JobNotFound for another tenant's id."""
    tenant_id, job_id = job_ref(tenant_id, job_id)
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
    tenant_id = as_uuid(tenant_id, "tenant_id", InvalidOption)
    filters = JobFilters(
        _statuses(status),
        _optional_text(type, "type"),
        _optional_aware(created_after, "created_after"),
        _optional_aware(created_before, "created_before"),
        _optional_text(idempotency_key, "idempotency_key"),
    )
    if order not in ("newest", "oldest"):
        raise InvalidOption.for_field("order", "must be 'newest' or 'oldest'")
    limit = _limit(limit)
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
    except (TypeError, ValueError):
        raise InvalidOption(f"status must be one of: {', '.join(JobStatus)}") from None


def get_job_events(
    tenant_id: uuid.UUID, job_id: int, *, cursor: str | None = None, limit: int = 100
) -> Page[JobEventRead]:
    """A job's events in order. Follow a job by passing back ``next_cursor`` (or, at the end,
    the last event's cursor from :func:`event_cursor`) until it is terminal."""
    tenant_id, job_id = job_ref(tenant_id, job_id)
    after = 0 if cursor is None or cursor == "" else decode_cursor(cursor)
    limit = _limit(limit)
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
    tenant_id = as_uuid(tenant_id, "tenant_id", InvalidOption)
    type = _optional_text(type, "type")
    query = select(jobs_t.c.status, func.count()).where(jobs_t.c.tenant_id == tenant_id)
    if type is not None:
        query = query.where(jobs_t.c.type == type)
    query = query.group_by(jobs_t.c.status)
    with autocommit() as conn:
        counts = {JobStatus(s): int(n) for s, n in conn.execute(query).all()}
    return {s: counts.get(s, 0) for s in JobStatus}
