"""Status queries, each scoped to one tenant: one job, its events, lists, counts.

Lists are newest first and paginated by keyset on ``id`` (cursor = last id seen), so inserts
happening meanwhile never make a page skip or repeat a job. Each query is one statement served
by an index of pgjobs/db/models/job.py (tests assert on EXPLAIN).

Each query is a plan (pgjobs/db/statements.py): the functions here run it in a thread,
``pgjobs.aio`` runs the very same plan on an asyncio connection.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Literal, TypedDict, TypeVar

from sqlalchemy import Select, bindparam, func, select
from typing_extensions import Unpack

from pgjobs.db.engine import autocommit
from pgjobs.db.models import ContentJob, JobEvent, JobStatus
from pgjobs.db.schemas.common import ReadModel
from pgjobs.db.schemas.job import JobEventRead, JobRead
from pgjobs.db.statements import Plan, Step, run
from pgjobs.db.validation import BIGINT_MAX, as_aware, as_id, as_int, as_text, as_uuid
from pgjobs.producer.errors import InvalidOption, JobNotFound
from pgjobs.settings import get_settings

T = TypeVar("T")
R = TypeVar("R", bound=ReadModel)
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
    plan = get_job_plan(tenant_id, job_id)
    with autocommit() as conn:
        return run(conn, plan)


def get_job_plan(tenant_id: object, job_id: object) -> Plan[JobRead]:
    """:func:`get_job` for either shell: arguments checked now, the statement when run."""
    return _get_job(*job_ref(tenant_id, job_id))


def _get_job(tenant_id: uuid.UUID, job_id: int) -> Plan[JobRead]:
    rows = yield Step(GET_JOB, {"job_id": job_id, "tenant_id": tenant_id})
    if not rows:
        raise JobNotFound(f"job {job_id} not found")
    return JobRead.model_validate(rows[0])


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


class ListOptions(TypedDict, total=False):
    """The filters, cursor and page of :func:`list_jobs` (every one optional)."""

    status: JobStatus | str | Iterable[JobStatus | str] | None
    type: str | None
    created_after: datetime | None
    created_before: datetime | None
    idempotency_key: str | None
    cursor: str | None
    limit: int
    order: Literal["newest", "oldest"]


def list_jobs(tenant_id: uuid.UUID, **options: Unpack[ListOptions]) -> Page[JobRead]:
    """Jobs of a tenant, newest first (or ``order="oldest"``), one page of at most ``limit``
    (50), filtered by ``status`` (one or several), ``type``, ``created_after``,
    ``created_before`` and ``idempotency_key``, from ``cursor`` (a page's ``next_cursor``)."""
    plan = list_jobs_plan(tenant_id, **options)
    with autocommit() as conn:
        return run(conn, plan)


def list_jobs_plan(
    tenant_id: object,
    *,
    status: JobStatus | str | Iterable[JobStatus | str] | None = None,
    type: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    idempotency_key: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
    order: Literal["newest", "oldest"] = "newest",
) -> Plan[Page[JobRead]]:
    """:func:`list_jobs` for either shell: arguments checked now, the statement when run."""
    tenant_id = as_uuid(tenant_id, "tenant_id", InvalidOption)
    filters = list_filters(status, type, created_after, created_before, idempotency_key)
    if order not in ("newest", "oldest"):
        raise InvalidOption.for_field("order", "must be 'newest' or 'oldest'")
    limit = _limit(limit)
    query = list_jobs_query(tenant_id, filters, cursor=cursor, limit=limit, order=order)
    return _page(Step(query), JobRead, limit)


def list_filters(
    status: JobStatus | str | Iterable[JobStatus | str] | None,
    type: object,
    created_after: object,
    created_before: object,
    idempotency_key: object,
) -> JobFilters:
    """The filters of :func:`list_jobs`, checked (bulk calls select jobs with them too)."""
    return JobFilters(
        _statuses(status),
        _optional_text(type, "type"),
        _optional_aware(created_after, "created_after"),
        _optional_aware(created_before, "created_before"),
        _optional_text(idempotency_key, "idempotency_key"),
    )


def _page(step: Step, shape: type[R], limit: int) -> Plan[Page[R]]:
    """One page read by ``step`` (which asks for one row more than ``limit``)."""
    rows = yield step
    items = [shape.model_validate(r) for r in rows[:limit]]
    more = len(rows) > limit
    return Page(items, encode_cursor(rows[limit - 1].id) if more and items else None)


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
    plan = get_job_events_plan(tenant_id, job_id, cursor=cursor, limit=limit)
    with autocommit() as conn:
        return run(conn, plan)


def get_job_events_plan(
    tenant_id: object, job_id: object, *, cursor: str | None = None, limit: int = 100
) -> Plan[Page[JobEventRead]]:
    """:func:`get_job_events` for either shell: arguments checked now, statements when run."""
    tenant_id, job_id = job_ref(tenant_id, job_id)
    after = 0 if cursor is None or cursor == "" else decode_cursor(cursor)
    return _events_page(tenant_id, job_id, after, _limit(limit))


def _events_page(
    tenant_id: uuid.UUID, job_id: int, after: int, limit: int
) -> Plan[Page[JobEventRead]]:
    query = (
        select(events_t)
        .where(
            events_t.c.job_id == job_id,
            events_t.c.tenant_id == tenant_id,
            events_t.c.id > after,
        )
        .order_by(events_t.c.id)
        .limit(limit + 1)
    )
    page = yield from _page(Step(query), JobEventRead, limit)
    if not page.items:
        exists = select(jobs_t.c.id).where(jobs_t.c.id == job_id, jobs_t.c.tenant_id == tenant_id)
        if not (yield Step(exists)):
            raise JobNotFound(f"job {job_id} not found")
    return page


def event_cursor(event: JobEventRead) -> str:
    """The cursor that continues after ``event`` (to keep following a job)."""
    return encode_cursor(event.id)


def count_jobs_by_status(tenant_id: uuid.UUID, *, type: str | None = None) -> dict[JobStatus, int]:
    """How many jobs of the tenant are in each status (every status present, zeros included)."""
    plan = count_jobs_plan(tenant_id, type=type)
    with autocommit() as conn:
        return run(conn, plan)


def count_jobs_plan(tenant_id: object, *, type: str | None = None) -> Plan[dict[JobStatus, int]]:
    """:func:`count_jobs_by_status` for either shell."""
    tenant_id = as_uuid(tenant_id, "tenant_id", InvalidOption)
    type = _optional_text(type, "type")
    query = select(jobs_t.c.status, func.count().label("n")).where(jobs_t.c.tenant_id == tenant_id)
    if type is not None:
        query = query.where(jobs_t.c.type == type)
    return _counts(query.group_by(jobs_t.c.status))


def _counts(query: Select[tuple[object, ...]]) -> Plan[dict[JobStatus, int]]:
    rows = yield Step(query)
    counts = {JobStatus(r.status): int(r.n) for r in rows}
    return {s: counts.get(s, 0) for s in JobStatus}
